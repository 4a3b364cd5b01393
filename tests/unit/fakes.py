"""In-memory stand-ins for the gateway's adapters, for unit tests of the use cases (gateway.services).

FakeClock            the `now=` of the use cases, moved by hand
FakeRepository       the PaymentStore port over dicts: documents with versions, atomic commits, nothing else.
                     It holds no business rule; tests/integration/test_repository_contract.py runs the same
                     suite against it and against Firestore so the two cannot drift.
MemorySecretBackend  the SecretBackend port over a dict, behind a real CredentialStore; counts reads and writes
FakeDaraja           DarajaClient's verify_credentials / stk_push / stk_query: records calls, answers as scripted
World                a Gateway built over the fakes above, with each fake at hand (test convenience, no rule)
MemoryApiKeyStore    the ApiKeyStore port over a dict, saves guarded by versions; counts reads
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway import errors
from gateway.daraja import DarajaApp, StkPushAccepted, StkPushOrder, StkQueryAnswer
from gateway.domain.daraja_setup import Setups, entries_of, setups_of
from gateway.domain.idempotency import IdempotencyRecord
from gateway.domain.limits import PushShard, SlidingWindow
from gateway.domain.payment import Payer, Payment, PaymentStatus
from gateway.firestore_client import decode_page_token, encode_page_token, usable_document_id
from gateway.http import Developer
from gateway.repository import (
    AddAudit,
    AddEvent,
    AddQuarantine,
    CallbackAudit,
    CallbackRoute,
    CreateCallbackRoute,
    DeleteIdempotency,
    PushContext,
    QuarantinedCallback,
    SaveIdempotency,
    SavePayer,
    SavePayment,
    SaveShard,
    SaveWindow,
    SettlementContext,
    Versioned,
    Write,
    WriteConflict,
    payment_from_document,
    payment_to_document,
)
from gateway.secrets import CredentialStore
from gateway.services import Gateway
from gateway.settings import Settings

T0 = datetime(2026, 11, 29, 6, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeRepository:
    """PaymentStore in memory: each document is (value, version); a commit checks every precondition first and
    then applies all writes, or raises WriteConflict and applies none. `calls` counts public calls by name;
    `fail_next_commit` makes the next commit matching a predicate raise, as a failing Firestore would."""

    def __init__(self, now: Callable[[], datetime] = lambda: T0) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._versions = itertools.count(1)
        self.calls: Counter[str] = Counter()
        self.developers: dict[str, dict[str, Any]] = {}
        self.payments: dict[tuple[str, str], tuple[Payment, int]] = {}
        self.payers: dict[tuple[str, str], tuple[Payer, int]] = {}
        self.idempotency: dict[tuple[str, str], IdempotencyRecord] = {}
        self.idempotency_versions: dict[tuple[str, str], int] = {}
        self.routes: dict[str, CallbackRoute] = {}
        self.audits: dict[tuple[str, str], list[CallbackAudit]] = {}
        self.quarantine: list[QuarantinedCallback] = []
        # The outbox: (uid, event id) -> the AddEvent as written, in commit order.
        self.events: dict[tuple[str, str], AddEvent] = {}
        self.fail_next_commit: Callable[[Sequence[Write]], bool] | None = None
        # Abuse-limit documents: (uid, shard index) -> (PushShard, version); (uid, name) -> (SlidingWindow, version).
        self.shards: dict[tuple[str, int], tuple[PushShard, int]] = {}
        self.windows: dict[tuple[str, str], tuple[SlidingWindow, int]] = {}

    # ------------------------------------------------------------------------------------------ developers
    def ensure_developer(self, uid: str, email: str | None) -> dict[str, Any]:
        self.calls["ensure_developer"] += 1
        with self._lock:
            if uid not in self.developers:
                now = self._now()
                self.developers[uid] = {
                    "uid": uid,
                    "email": email,
                    "created_at": now,
                    "updated_at": now,
                    "daraja": None,
                }
            return dict(self.developers[uid])

    def daraja_setups(self, uid: str) -> Setups:
        self.calls["daraja_setups"] += 1
        return setups_of(self.developers.get(uid, {}).get("daraja"))

    def update_daraja(self, uid: str, email: str | None, change: Callable[[Setups], Setups | None]) -> Setups | None:
        """Read, decide and write under one lock: the fake never loses a race, Firestore retries until it wins."""
        self.calls["update_daraja"] += 1
        with self._lock:
            record = self.developers.get(uid)
            changed = change(entries_of(record.get("daraja") if record else None))
            if changed is None:
                return None
            if record is None:
                record = self.developers[uid] = {"uid": uid, "email": email, "created_at": self._now()}
            record.update({"updated_at": self._now(), "daraja": {env: dict(entry) for env, entry in changed.items()}})
            if email is not None:
                record["email"] = email
            self.calls["update_daraja_written"] += 1
            return changed

    # ---------------------------------------------------------------------------------------------- loads
    def load_payment(self, uid: str, payment_id: str) -> Versioned[Payment] | None:
        self.calls["load_payment"] += 1
        found = self.payments.get((uid, payment_id))
        return Versioned(found[0], found[1]) if found else None

    def load_payer(self, uid: str, msisdn: str) -> Versioned[Payer] | None:
        self.calls["load_payer"] += 1
        found = self.payers.get((uid, msisdn))
        return Versioned(found[0], found[1]) if found else None

    def load_idempotency(self, uid: str, key_hash: str) -> Versioned[IdempotencyRecord] | None:
        self.calls["load_idempotency"] += 1
        record = self.idempotency.get((uid, key_hash))
        return Versioned(record, self.idempotency_versions[(uid, key_hash)]) if record is not None else None

    def load_callback_route(self, token_sha256: str) -> CallbackRoute | None:
        self.calls["load_callback_route"] += 1
        return self.routes.get(token_sha256)

    def load_push_context(self, uid: str, msisdn: str, shard_index: int) -> PushContext:
        self.calls["load_push_context"] += 1
        developer = self.developers.get(uid)
        payer = self.payers.get((uid, msisdn))
        shard = self.shards.get((uid, shard_index))
        return PushContext(
            developer=dict(developer) if developer is not None else None,
            payer=Versioned(payer[0], payer[1]) if payer else None,
            shard_index=shard_index,
            shard=Versioned(shard[0], shard[1]) if shard else None,
        )

    def load_settlement_context(self, uid: str, payment_id: str, msisdn: str | None) -> SettlementContext:
        self.calls["load_settlement_context"] += 1
        if not usable_document_id(payment_id):
            return SettlementContext(None, None)  # as Firestore: such an id names no document, and nothing is read
        payment = self.payments.get((uid, payment_id))
        payer = self.payers.get((uid, msisdn)) if msisdn is not None else None
        return SettlementContext(
            payment=Versioned(payment[0], payment[1]) if payment else None,
            payer=Versioned(payer[0], payer[1]) if payer else None,
        )

    def load_shard(self, uid: str, shard_index: int) -> Versioned[PushShard] | None:
        self.calls["load_shard"] += 1
        found = self.shards.get((uid, shard_index))
        return Versioned(found[0], found[1]) if found else None

    def load_window(self, uid: str, name: str) -> Versioned[SlidingWindow] | None:
        self.calls["load_window"] += 1
        found = self.windows.get((uid, name))
        return Versioned(found[0], found[1]) if found else None

    def find_payment_by_checkout(self, uid: str, checkout_request_id: str) -> Versioned[Payment] | None:
        self.calls["find_payment_by_checkout"] += 1
        for (owner, _), (payment, version) in self.payments.items():
            if owner == uid and payment.checkout_request_id == checkout_request_id:
                return Versioned(payment, version)
        return None

    def list_payments(
        self, uid: str, status: str | None, limit: int, page_token: str | None, environment: str | None = None
    ) -> tuple[list[Payment], str | None]:
        self.calls["list_payments"] += 1
        mine = [p for (owner, _), (p, _v) in self.payments.items() if owner == uid]
        if environment is not None:
            mine = [p for p in mine if p.environment == environment]
        if status is not None:
            mine = [p for p in mine if p.status.value == status]
        mine.sort(key=lambda p: (p.created_at, p.id), reverse=True)
        if page_token is not None:
            after_id = decode_page_token(page_token)
            cursor = self.payments.get((uid, after_id)) if usable_document_id(after_id) else None
            if cursor is None:
                raise errors.InvalidRequest("invalid_page_token", "page_token is not valid", "page_token")
            key = (cursor[0].created_at, cursor[0].id)
            mine = [p for p in mine if (p.created_at, p.id) < key]
        page = mine[:limit]
        next_token = encode_page_token(page[-1].id) if len(mine) > limit else None
        return page, next_token

    def due_payments(self, now: datetime, limit: int) -> list[tuple[str, Versioned[Payment]]]:
        self.calls["due_payments"] += 1
        due = [
            (uid, Versioned(p, v))
            for (uid, _), (p, v) in self.payments.items()
            if p.status is PaymentStatus.PENDING and p.next_check_at is not None and p.next_check_at <= now
        ]
        due.sort(key=lambda item: item[1].value.next_check_at or now)
        return due[:limit]

    # --------------------------------------------------------------------------------------------- commit
    def commit(self, writes: Sequence[Write]) -> list[Any]:
        self.calls["commit"] += 1
        with self._lock:
            if self.fail_next_commit is not None and self.fail_next_commit(writes):
                self.fail_next_commit = None
                raise RuntimeError("injected commit failure")
            for write in writes:
                self._check(write)
            return [self._apply(write) for write in writes]

    def _check(self, write: Write) -> None:
        if isinstance(write, SavePayment):
            self._check_version(self.payments.get((write.uid, write.payment.id)), write.version)
        elif isinstance(write, SavePayer):
            self._check_version(self.payers.get((write.uid, write.payer.msisdn)), write.version)
        elif isinstance(write, SaveShard):
            self._check_version(self.shards.get((write.uid, write.index)), write.version)
        elif isinstance(write, SaveWindow):
            self._check_version(self.windows.get((write.uid, write.name)), write.version)
        elif isinstance(write, CreateCallbackRoute):
            if write.token_sha256 in self.routes:
                raise WriteConflict("AlreadyExists")
        elif isinstance(write, SaveIdempotency) and write.create and (write.uid, write.key_hash) in self.idempotency:
            raise WriteConflict("AlreadyExists")
        elif isinstance(write, AddEvent) and (write.uid, write.event_id) in self.events:
            raise WriteConflict("AlreadyExists")
        elif isinstance(write, DeleteIdempotency) and write.version is not None:
            if self.idempotency_versions.get((write.uid, write.key_hash)) != write.version:
                raise WriteConflict("FailedPrecondition")

    @staticmethod
    def _check_version(stored: tuple[Any, int] | None, expected: Any) -> None:
        if expected is None:
            if stored is not None:
                raise WriteConflict("AlreadyExists")
        elif stored is None or stored[1] != expected:
            raise WriteConflict("FailedPrecondition")

    def _apply(self, write: Write) -> Any:
        version = next(self._versions)
        if isinstance(write, SavePayment):
            # Through the real document mapping, so the fake keeps exactly what Firestore would (no full number).
            stored = payment_from_document(payment_to_document(write.payment))
            earlier = self.payments.get((write.uid, write.payment.id))
            if write.version is not None and earlier is not None and earlier[0].msisdn is not None:
                # An update leaves the fields it does not write: a document from before the route kept the full
                # number still carries it.
                stored = replace(stored, msisdn=earlier[0].msisdn)
            self.payments[(write.uid, write.payment.id)] = (stored, version)
        elif isinstance(write, SavePayer):
            self.payers[(write.uid, write.payer.msisdn)] = (write.payer, version)
        elif isinstance(write, SaveShard):
            self.shards[(write.uid, write.index)] = (write.shard, version)
        elif isinstance(write, SaveWindow):
            self.windows[(write.uid, write.name)] = (write.window, version)
        elif isinstance(write, CreateCallbackRoute):
            self.routes[write.token_sha256] = write.route
        elif isinstance(write, SaveIdempotency):
            self.idempotency[(write.uid, write.key_hash)] = write.record
            self.idempotency_versions[(write.uid, write.key_hash)] = version
        elif isinstance(write, DeleteIdempotency):
            self.idempotency.pop((write.uid, write.key_hash), None)
            self.idempotency_versions.pop((write.uid, write.key_hash), None)
        elif isinstance(write, AddAudit):
            self.audits.setdefault((write.uid, write.payment_id), []).append(write.audit)
        elif isinstance(write, AddQuarantine):
            self.quarantine.append(write.record)
        elif isinstance(write, AddEvent):
            self.events[(write.uid, write.event_id)] = write
        return version

    # ------------------------------------------------------------------------------------------ for tests
    def payment(self, uid: str, payment_id: str) -> Payment:
        return self.payments[(uid, payment_id)][0]

    def only_payment(self, uid: str) -> Payment:
        mine = [p for (owner, _), (p, _v) in self.payments.items() if owner == uid]
        assert len(mine) == 1, f"expected one payment, found {len(mine)}"
        return mine[0]


class MemorySecretBackend:
    """The SecretBackend port over dicts: each secret's versions by number (None once destroyed), numbered as Secret
    Manager does (1, 2, ..., never reused). `secrets` shows each secret's newest usable payload."""

    def __init__(self) -> None:
        self.versions: dict[str, dict[int, bytes | None]] = {}
        self.reads = 0
        self.writes = 0
        self._lock = threading.Lock()

    @property
    def secrets(self) -> dict[str, bytes]:
        with self._lock:
            newest = {secret_id: versions[max(versions)] for secret_id, versions in self.versions.items() if versions}
        return {secret_id: data for secret_id, data in newest.items() if data is not None}

    def live_versions(self, secret_id: str) -> list[str]:
        with self._lock:
            return [str(n) for n, data in sorted(self.versions.get(secret_id, {}).items()) if data is not None]

    def access_latest(self, secret_id: str) -> bytes | None:
        with self._lock:
            self.reads += 1
            versions = self.versions.get(secret_id)
            return versions[max(versions)] if versions else None

    def access_version(self, secret_id: str, version: str) -> bytes | None:
        with self._lock:
            self.reads += 1
            return self.versions.get(secret_id, {}).get(int(version))

    def add_version(self, secret_id: str, data: bytes) -> str:
        with self._lock:
            self.writes += 1
            versions = self.versions.setdefault(secret_id, {})
            number = max(versions, default=0) + 1
            versions[number] = data
            return str(number)

    def latest_version(self, secret_id: str) -> str | None:
        with self._lock:
            versions = self.versions.get(secret_id)
            return str(max(versions)) if versions else None

    def destroy_versions(self, secret_id: str, before: str | None = None) -> bool:
        with self._lock:
            versions = self.versions.get(secret_id, {})
            doomed = [n for n, data in versions.items() if data is not None and (before is None or n < int(before))]
            for number in doomed:
                versions[number] = None
            return bool(doomed)

    def destroy_version(self, secret_id: str, version: str) -> None:
        with self._lock:
            versions = self.versions.get(secret_id, {})
            if int(version) in versions:
                versions[int(version)] = None


# What a scripted Daraja call does: raise the exception, answer the value, or call the function and answer that.
Scripted = Any


def _play(step: Scripted, *args: Any) -> Any:
    if isinstance(step, BaseException):
        raise step
    if callable(step):
        return _play(step(*args), *args)
    return step


class FakeDaraja:
    """DarajaClient's public methods. Pushes are accepted with fresh ids unless `push_script` says otherwise; queries
    answer "processing" (None) unless `query_script` holds a step for that CheckoutRequestID (or for None: any)."""

    def __init__(self) -> None:
        self.verify_calls: list[tuple[str, str, str]] = []
        self.push_calls: list[tuple[DarajaApp, StkPushOrder]] = []
        self.query_calls: list[tuple[DarajaApp, str]] = []
        self.verify_script: list[Scripted] = []
        self.push_script: list[Scripted] = []
        self.query_script: dict[str | None, list[Scripted]] = {}
        self._ids = itertools.count(1)

    def verify_credentials(self, environment: str, consumer_key: str, consumer_secret: str) -> None:
        self.verify_calls.append((environment, consumer_key, consumer_secret))
        if self.verify_script:
            _play(self.verify_script.pop(0), environment, consumer_key, consumer_secret)

    def stk_push(self, app: DarajaApp, order: StkPushOrder) -> StkPushAccepted:
        self.push_calls.append((app, order))
        if self.push_script:
            answer: StkPushAccepted = _play(self.push_script.pop(0), app, order)
            return answer
        n = next(self._ids)
        return StkPushAccepted(
            merchant_request_id=f"29115-{n}",
            checkout_request_id=f"ws_CO_29112026060000{n:06d}",
            customer_message="Success. Request accepted for processing",
            response_description="Success. Request accepted for processing",
        )

    def stk_query(self, app: DarajaApp, checkout_request_id: str) -> StkQueryAnswer | None:
        self.query_calls.append((app, checkout_request_id))
        steps = self.query_script.get(checkout_request_id) or self.query_script.get(None)
        if not steps:
            return None
        answer: StkQueryAnswer | None = _play(steps.pop(0) if len(steps) > 1 else steps[0], app, checkout_request_id)
        return answer

    def script_query(self, checkout_request_id: str | None, *steps: Scripted) -> None:
        """Answer queries for one payment (None: any) with these steps in turn; the last one repeats."""
        self.query_script[checkout_request_id] = list(steps)


def query_answer(checkout_request_id: str, result_code: str, result_desc: str = "") -> StkQueryAnswer:
    raw = {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": "29115-1",
        "CheckoutRequestID": checkout_request_id,
        "ResultCode": result_code,
        "ResultDesc": result_desc,
    }
    return StkQueryAnswer(result_code, result_desc, "29115-1", checkout_request_id, raw)


# ------------------------------------------------------------------------------------------- use-case tests
CALLBACK_BASE = "https://example.test/mpesa_callback"
ALICE = Developer("dev_alice", "alice@example.com")
BOB = Developer("dev_bob", "bob@example.com")
PHONE_TYPED = "0712345678"
MSISDN = "254712345678"
MASKED = "2547******78"
PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
CREDENTIALS: dict[str, Any] = {
    "environment": "sandbox",
    "consumer_key": "ckeyALICE0000001234",
    "consumer_secret": "csecretALICEtopsecret99",
    "shortcode": "174379",
    "passkey": PASSKEY,
    "transaction_type": "CustomerPayBillOnline",
}
PRODUCTION_CREDENTIALS: dict[str, Any] = {
    **CREDENTIALS,
    "environment": "production",
    "consumer_key": "ckeyALICEPROD0005555",
    "consumer_secret": "csecretALICEprod55",
    "shortcode": "600555",
    "passkey": "prodpasskey" + "5" * 40,
}
BOB_CREDENTIALS: dict[str, Any] = {
    **CREDENTIALS,
    "consumer_key": "ckeyBOB000000005678",
    "consumer_secret": "csecretBOBtopsecret77",
    "shortcode": "600123",
    "passkey": "bobpasskey" + "7" * 40,
}
ORDER: dict[str, Any] = {"phone": PHONE_TYPED, "amount": 10, "account_reference": "INV-1", "description": "Order 1"}


@dataclass
class World:
    """A Gateway over the fakes, and the fakes themselves so a test can look inside or script them."""

    gateway: Gateway
    repo: FakeRepository
    backend: MemorySecretBackend
    daraja: FakeDaraja
    clock: FakeClock
    settings: Settings

    def token_for(self, payment_id: str) -> str:
        """The callback URL token handed to Daraja for this payment, found through the route stored for its hash."""
        for _app, order in self.daraja.push_calls:
            token = order.callback_url.rsplit("/", 1)[-1]
            route = self.repo.routes.get(hashlib.sha256(token.encode()).hexdigest())
            if route is not None and route.payment_id == payment_id:
                return token
        raise AssertionError(f"no push carried a token routed to {payment_id}")

    def payment(self, developer: Developer, payment_id: str) -> Payment:
        return self.repo.payment(developer.uid, payment_id)


# Most use-case tests push to one phone many times at one instant of a frozen clock: the phone's limits are off
# unless a test asks for them (a lock that holds for 0 s frees the phone at once), and so are the push budgets.
NO_PHONE_LIMITS: dict[str, Any] = {
    "phone_in_flight_s": 0.0,
    "phone_prompts_per_10_min": 1_000_000,
    "push_limits": (("production", 1e6, 10**9), ("sandbox", 1e6, 10**9)),
}


def make_world(**settings_changes: Any) -> World:
    changes = {**NO_PHONE_LIMITS, "credential_puts_per_minute": 1_000, **settings_changes}
    settings = Settings(project_id="demo-unit", callback_base_url=CALLBACK_BASE, **changes)
    clock = FakeClock()
    repo = FakeRepository(clock)
    backend = MemorySecretBackend()
    daraja = FakeDaraja()
    gateway = Gateway.build(settings, repo, CredentialStore(settings, backend), daraja, clock)  # type: ignore[arg-type]
    return World(gateway, repo, backend, daraja, clock, settings)


def stk_callback(
    checkout_request_id: str,
    result_code: Any = 0,
    *,
    amount: Any = 10,
    receipt: str = "QKT1ABC2DE",
    phone: Any = 254712345678,
    desc: str = "The service request is processed successfully.",
) -> dict[str, Any]:
    """A callback body as Daraja sends it; success codes carry CallbackMetadata, failures do not."""
    inner: dict[str, Any] = {
        "MerchantRequestID": "29115-1",
        "CheckoutRequestID": checkout_request_id,
        "ResultCode": result_code,
        "ResultDesc": desc,
    }
    if result_code in (0, "0"):
        inner["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": amount},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": 20261129060102},
                {"Name": "PhoneNumber", "Value": phone},
            ]
        }
    return {"Body": {"stkCallback": inner}}


def accepted(checkout_request_id: str, merchant_request_id: str = "29115-1") -> StkPushAccepted:
    return StkPushAccepted(
        merchant_request_id=merchant_request_id,
        checkout_request_id=checkout_request_id,
        customer_message="Success. Request accepted for processing",
        response_description="Success. Request accepted for processing",
    )


class MemoryApiKeyStore:
    """The ApiKeyStore port over a dict: records and each developer's count of active keys, with versions; writes
    guarded by them, all or nothing, under a lock (threads race on it as on Firestore); counts reads from outside."""

    def __init__(self) -> None:
        from gateway.domain.api_key import ApiKeyRecord

        self.documents: dict[str, tuple[ApiKeyRecord, int]] = {}
        self.counts: dict[str, tuple[int, int]] = {}  # uid -> (active keys, version)
        self.reads = Counter[str]()
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    def _count_is_at(self, active: Any) -> bool:
        current = self.counts.get(active.uid)
        return (current is None) if active.version is None else (current is not None and current[1] == active.version)

    def create(self, key_sha256: str, record: Any, active: Any) -> bool:
        with self._lock:
            if key_sha256 in self.documents or not self._count_is_at(active):
                return False  # as FirestoreApiKeyStore: a record under that hash exists, or the count moved on
            self.documents[key_sha256] = (record, next(self._versions))
            self.counts[active.uid] = (active.count, next(self._versions))
            return True

    def load_active_count(self, uid: str) -> Any:
        from gateway.api_key_store import ActiveKeyCount

        self.reads["load_active_count"] += 1
        found = self.counts.get(uid)
        return None if found is None else ActiveKeyCount(uid, found[0], found[1])

    def find_by_id(self, uid: str, key_id: str) -> Any:
        from gateway.api_key_store import StoredKey

        self.reads["find_by_id"] += 1
        for sha, (record, version) in list(self.documents.items()):
            if record.uid == uid and record.key_id == key_id:
                return StoredKey(sha, record, version)
        return None

    def find(self, key_sha256: str) -> Any:
        from gateway.api_key_store import StoredKey

        self.reads["find"] += 1
        found = self.documents.get(key_sha256)
        return None if found is None else StoredKey(key_sha256, found[0], found[1])

    def list_for(self, uid: str) -> list[Any]:
        from gateway.api_key_store import StoredKey

        self.reads["list_for"] += 1
        return [
            StoredKey(sha, record, version) for sha, (record, version) in self.documents.items() if record.uid == uid
        ]

    def save(self, stored: Any, record: Any, active: Any = None) -> bool:
        with self._lock:
            current = self.documents.get(stored.key_sha256)
            if current is None or current[1] != stored.version:
                return False
            if active is not None and not self._count_is_at(active):
                return False
            self.documents[stored.key_sha256] = (record, next(self._versions))
            if active is not None:
                self.counts[active.uid] = (active.count, next(self._versions))
            return True
