"""Counting paid calls from outside the production code, which keeps no benchmark counters of its own:

- Secret Manager accesses: `CountingBackend`, a SecretBackend around the real one, given to CredentialStore;
- Daraja requests (OAuth mints, STK pushes): `CountingSession`, the requests.Session DarajaClient is given through
  its `session_factory`; the simulator's own request log (GET /simulator/requests) is a second witness;
- Firestore RPCs: `FirestoreRpcCounter`, a gRPC client interceptor on the channel of the firestore.Client that
  PaymentRepository is given through its `client_factory`. It sees every RPC attempt on the wire (Commit with its
  number of writes, BatchGetDocuments, RunQuery, ...), retries included.

Every count goes to the process-wide total and, while a thread is inside `trace()`, to that thread's `Trace` too,
in order. A push runs on one thread from start to end, so its trace reads like
["BatchGetDocuments", "Commit:3", "daraja:stk_push", "Commit:2"]: what it cost, and in which order.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import grpc
import requests

READ_RPCS = frozenset({"GetDocument", "BatchGetDocuments", "RunQuery", "RunAggregationQuery", "ListDocuments"})
COMMIT_RPC = "Commit"
OAUTH_PATH = "/oauth/v1/generate"
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
_DARAJA_KINDS = {OAUTH_PATH: "oauth", STK_PUSH_PATH: "stk_push", STK_QUERY_PATH: "stk_query"}


@dataclass
class Trace:
    """The paid calls one thread made inside `trace()`, in order, and the Firestore documents they named (as
    "read developers/*/payers/*" or "write developers/*/payments/*": ids replaced by *)."""

    events: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)

    @property
    def documents_read(self) -> int:
        """Billed document reads of BatchGetDocuments (a query's results are not seen here: counted as 1)."""
        return sum(1 for d in self.documents if d.startswith("read ")) + self.count("RunQuery")

    def count(self, prefix: str) -> int:
        return sum(1 for event in self.events if event == prefix or event.startswith(prefix + ":"))

    @property
    def reads(self) -> int:
        return sum(1 for event in self.events if event in READ_RPCS)

    @property
    def commits(self) -> int:
        return self.count(COMMIT_RPC)

    @property
    def commit_sizes(self) -> list[int]:
        """The number of writes of each commit, in order."""
        return [int(event.split(":", 1)[1]) for event in self.events if event.startswith(COMMIT_RPC + ":")]

    def index(self, prefix: str) -> int | None:
        for i, event in enumerate(self.events):
            if event == prefix or event.startswith(prefix + ":"):
                return i
        return None


_local = threading.local()


@contextmanager
def trace() -> Iterator[Trace]:
    """Record every counted call this thread makes inside the block."""
    current = Trace()
    previous = getattr(_local, "trace", None)
    _local.trace = current
    try:
        yield current
    finally:
        _local.trace = previous


def _note(event: str) -> None:
    current: Trace | None = getattr(_local, "trace", None)
    if current is not None:
        current.events.append(event)


def _note_documents(kind: str, paths: list[str]) -> None:
    current: Trace | None = getattr(_local, "trace", None)
    if current is not None:
        current.documents.extend(f"{kind} {document_pattern(path)}" for path in paths)


def document_pattern(path: str) -> str:
    """projects/p/databases/(default)/documents/developers/u1/payers/2547... -> developers/*/payers/*"""
    parts = path.split("/documents/", 1)[-1].split("/")
    return "/".join(part if i % 2 == 0 else "*" for i, part in enumerate(parts))


class _Total:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, event: str) -> None:
        with self._lock:
            self._counts[event] += 1
        _note(event)

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)


# ------------------------------------------------------------------------------------------- Secret Manager
class CountingBackend:
    """A SecretBackend around the real one (or any other), counting every call on the way through; a read of a
    payload (the latest version or a named one) is a "secret:access", which is what Secret Manager bills."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._total = _Total()

    @property
    def accesses(self) -> int:
        return self._total.snapshot()["secret:access"]

    def access_latest(self, secret_id: str) -> bytes | None:
        self._total.add("secret:access")
        data: bytes | None = self._inner.access_latest(secret_id)
        return data

    def access_version(self, secret_id: str, version: str) -> bytes | None:
        self._total.add("secret:access")
        data: bytes | None = self._inner.access_version(secret_id, version)
        return data

    def add_version(self, secret_id: str, data: bytes) -> str | None:
        self._total.add("secret:add_version")
        added: str | None = self._inner.add_version(secret_id, data)
        return added

    def latest_version(self, secret_id: str) -> str | None:
        self._total.add("secret:latest_version")
        latest: str | None = self._inner.latest_version(secret_id)
        return latest

    def destroy_versions(self, secret_id: str, before: str | None = None) -> bool:
        self._total.add("secret:destroy")
        destroyed: bool = self._inner.destroy_versions(secret_id, before)
        return destroyed

    def destroy_version(self, secret_id: str, version: str) -> None:
        self._total.add("secret:destroy")
        self._inner.destroy_version(secret_id, version)


# ------------------------------------------------------------------------------------------- Daraja over HTTP
class DarajaRequests:
    """What one DarajaClient sent, counted by the sessions `session_factory()` hands it."""

    def __init__(self) -> None:
        self._total = _Total()

    @property
    def mints(self) -> int:
        return self._total.snapshot()["daraja:oauth"]

    @property
    def pushes(self) -> int:
        return self._total.snapshot()["daraja:stk_push"]

    def session_factory(self) -> Callable[[], requests.Session]:
        total = self._total

        class CountingSession(requests.Session):
            def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
                path = urlsplit(url.decode() if isinstance(url, bytes) else url).path
                total.add("daraja:" + _DARAJA_KINDS.get(path, "other"))
                return super().request(method, url, *args, **kwargs)

        return CountingSession


# ------------------------------------------------------------------------------------------- Firestore RPCs
class FirestoreRpcCounter(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Counts the RPCs sent on a channel: one event per attempt, "Commit:<writes>" for commits."""

    def __init__(self) -> None:
        self._total = _Total()

    def snapshot(self) -> Counter[str]:
        return self._total.snapshot()

    def _count(self, details: Any, request: Any) -> None:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        name = method.rsplit("/", 1)[-1]
        if name == COMMIT_RPC:
            writes = list(getattr(request, "writes", ()) or ())
            name = f"{COMMIT_RPC}:{len(writes)}"
            _note_documents("write", [str(w.update.name or w.delete) for w in writes if w.update.name or w.delete])
        elif name == "BatchGetDocuments" and request is not None:
            _note_documents("read", [str(d) for d in request.documents])
        self._total.add(name)

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        self._count(client_call_details, request)
        return continuation(client_call_details, request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        self._count(client_call_details, request)
        return continuation(client_call_details, request)

    def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        self._count(client_call_details, None)
        return continuation(client_call_details, request_iterator)

    def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        self._count(client_call_details, None)
        return continuation(client_call_details, request_iterator)

    def client_factory(self, project_id: str) -> Callable[[], Any]:
        """What PaymentRepository(settings, client_factory=...) builds its client with: a firestore.Client of the
        emulator whose channel goes through this counter."""
        from google.cloud import firestore

        if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
            raise RuntimeError("FirestoreRpcCounter counts the emulator's channel: set FIRESTORE_EMULATOR_HOST")
        if not callable(getattr(firestore.Client, "_emulator_channel", None)):
            raise RuntimeError("this google-cloud-firestore builds its emulator channel differently; update bench")
        counter = self

        class CountingClient(firestore.Client):
            def _emulator_channel(self, transport: Any) -> Any:
                return grpc.intercept_channel(super()._emulator_channel(transport), counter)

        def factory() -> Any:
            return CountingClient(project=project_id)

        return factory


def reads(counts: Counter[str]) -> int:
    return sum(n for name, n in counts.items() if name in READ_RPCS)


def commits(counts: Counter[str]) -> int:
    return sum(n for name, n in counts.items() if name.startswith(COMMIT_RPC + ":"))
