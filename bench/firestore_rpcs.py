"""Counts the Firestore RPCs this process really makes (not what the repository says it makes): every call of the
generated FirestoreClient, and for commits how many document writes each carried.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from typing import Any

_METHODS = ("batch_get_documents", "commit", "begin_transaction", "rollback", "run_query", "run_aggregation_query")


class FirestoreRpcs:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.writes_per_commit: Counter[int] = Counter()
        self._installed = False

    def install(self) -> FirestoreRpcs:
        if self._installed:
            return self
        from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

        for name in _METHODS:
            setattr(FirestoreClient, name, self._counting(name, getattr(FirestoreClient, name)))
        self._installed = True
        return self

    def _counting(self, name: str, method: Any) -> Any:
        counter = self

        @functools.wraps(method)
        def counted(client: Any, *args: Any, **kwargs: Any) -> Any:
            with counter._lock:
                counter.calls[name] += 1
                if name == "commit":
                    request = kwargs.get("request") or (args[0] if args else None) or {}
                    writes = request.get("writes") if isinstance(request, dict) else getattr(request, "writes", [])
                    counter.writes_per_commit[len(writes or [])] += 1
            return method(client, *args, **kwargs)

        return counted

    def snapshot(self) -> tuple[Counter[str], Counter[int]]:
        with self._lock:
            return Counter(self.calls), Counter(self.writes_per_commit)


RPCS = FirestoreRpcs()
