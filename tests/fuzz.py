"""The tally of the HTTP fuzz run (tests/e2e/test_fuzz_boundary.py): how many generated requests each endpoint got
and how it answered them. Its lines are printed in pytest's terminal summary (tests/conftest.py), so `make test`
shows the count of requests and of 5xx answers per endpoint, like the ledger line.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

# Every fuzz run's lines, printed by tests/conftest.py.
LINES: list[str] = []

# How many failing requests each endpoint keeps for the failure message; the counts stay exact.
_KEPT_FAILURES = 5


@dataclass
class EndpointTally:
    """What one endpoint answered. Thread-safe: the run's sender threads record into it concurrently."""

    endpoint: str
    statuses: Counter[int] = field(default_factory=Counter)
    # Requests that got no answer at all (connection reset, timeout): as bad as a 5xx.
    no_answer: int = 0
    # Requests sent twice because the first answer came from the emulator, not the gateway (a worker restarting).
    retried: int = 0
    wall_s: float = 0.0
    # Sum of the answers' latencies, for the mean in the line.
    latency_s: float = 0.0
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.no_answer

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def record(self, status: int, describe: str, latency_s: float = 0.0) -> None:
        with self._lock:
            self.statuses[status] += 1
            self.latency_s += latency_s
            if status >= 500 and len(self.failures) < _KEPT_FAILURES:
                self.failures.append(describe)

    def record_retry(self) -> None:
        with self._lock:
            self.retried += 1

    def record_no_answer(self, describe: str) -> None:
        with self._lock:
            self.no_answer += 1
            if len(self.failures) < _KEPT_FAILURES:
                self.failures.append(describe)

    def line(self) -> str:
        answers = ", ".join(f"{status}x{count}" for status, count in sorted(self.statuses.items()))
        unanswered = f", {self.no_answer} unanswered" if self.no_answer else ""
        retried = f", {self.retried} resent after an emulator hiccup" if self.retried else ""
        answered = sum(self.statuses.values())
        mean_ms = 1000 * self.latency_s / answered if answered else 0.0
        return (
            f"fuzz {self.endpoint}: {self.requests} requests, {self.server_errors} 5xx{unanswered} "
            f"in {self.wall_s:.1f} s, {mean_ms:.0f} ms mean ({answers}){retried}"
        )


@dataclass
class FuzzRun:
    """One run over every endpoint; `finish` appends its lines to LINES."""

    concurrency: int
    endpoints: dict[str, EndpointTally] = field(default_factory=dict)
    wall_s: float = 0.0

    def tally(self, endpoint: str) -> EndpointTally:
        if endpoint not in self.endpoints:
            self.endpoints[endpoint] = EndpointTally(endpoint)
        return self.endpoints[endpoint]

    @property
    def requests(self) -> int:
        return sum(t.requests for t in self.endpoints.values())

    @property
    def server_errors(self) -> int:
        return sum(t.server_errors + t.no_answer for t in self.endpoints.values())

    def summary(self) -> str:
        rate = self.requests / self.wall_s if self.wall_s else 0.0
        return (
            f"fuzz: {self.requests} requests to {len(self.endpoints)} endpoints in {self.wall_s:.1f} s "
            f"({rate:.0f}/s, {self.concurrency} concurrent), {self.server_errors} 5xx or unanswered"
        )

    def finish(self, wall_s: float) -> None:
        self.wall_s = wall_s
        LINES.append(self.summary())
        LINES.extend(tally.line() for tally in self.endpoints.values())
