"""Firestore reads per authenticated call, for each kind of credential (issue 11), counted from outside the code.

The same developer calls stk_push and payment_status through the real HTTP edge (gateway.api, in process), once with
a Firebase ID token and once with a `mpg_test_` API key, interleaved. The composition root's instances
(gateway.container) are replaced by ones built on a Firestore client whose gRPC channel is counted
(bench/counting.py), as a fresh instance would build them; the API key cache gets a clock the bench moves, so a key
is seen both warm (within `api_key_cache_ttl_s` of its last read) and after its cache entry expired, without
sleeping for the TTL.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.common import PhoneNumbers, pending_payments, progress, remove_payments
from bench.counting import FirestoreRpcCounter, Trace, trace
from bench.paid_calls import settings
from bench.report import Figure, Run
from scripts.stack_admin import set_scenario

PHASE = "warm stk_push"
KINDS = ("ID token", "API key, cached", "API key, cache expired")


def count(result: Run, uid: str, id_token: str, api_key: str, rounds: int = 10) -> None:
    """`rounds` of each call with each credential kind, every Firestore RPC counted; figures appended to `result`."""
    import flask

    from gateway import api, container
    from gateway.api_key_store import FirestoreApiKeyStore
    from gateway.auth import FirebaseAuthenticator
    from gateway.daraja import DarajaClient
    from gateway.repository import PaymentRepository, utcnow
    from gateway.secrets import CredentialStore, SecretManagerBackend
    from gateway.services import Gateway
    from gateway.services.api_keys import ApiKeys

    current = settings()
    rpcs = FirestoreRpcCounter()
    client = rpcs.client_factory(current.project_id)()
    clock = [0.0]
    keys = ApiKeys(current, FirestoreApiKeyStore(current, client=lambda: client), utcnow, clock=lambda: clock[0])
    repository = PaymentRepository(current, client_factory=lambda: client)
    gateway = Gateway.build(
        current, repository, CredentialStore(current, SecretManagerBackend(current)), DarajaClient(current)
    )
    authenticator = FirebaseAuthenticator(current, api_keys=keys.authenticate)
    app = flask.Flask("bench-auth-reads")
    phones = PhoneNumbers()

    def call(endpoint: str, credential: str) -> tuple[Trace, int]:
        headers = {"Authorization": f"Bearer {credential}"}
        if endpoint == "stk_push":
            phone = phones.take()
            set_scenario(phone, callbacks=0)
            body = {"phone": phone, "amount": 10, "account_reference": "BENCH-1", "description": "Bench push"}
            headers["Idempotency-Key"] = f"bench-{uuid.uuid4().hex}"
            context = app.test_request_context("/", method="POST", json=body, headers=headers)
            handler: Callable[[Any], Any] = api.stk_push
        else:
            context = app.test_request_context("/", method="GET", query_string={"limit": "1"}, headers=headers)
            handler = api.payment_status
        with context, trace() as traced:
            answer = handler(flask.request)
        return traced, answer.status_code

    saved = (container._gateway, container._authenticator, container._api_keys)
    container._gateway, container._authenticator, container._api_keys = gateway, authenticator, keys
    traces: dict[tuple[str, str], list[tuple[Trace, int]]] = {}
    first_key_use: Trace | None = None
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # the gateway's JSON log lines
            call("stk_push", id_token)  # builds the clients, caches the secret, the token and the revocation check
            first_key_use, _ = call("payment_status", api_key)  # the key's first read, and its last_used_at mark
            for _ in range(rounds):
                for endpoint in ("stk_push", "payment_status"):
                    for kind in KINDS:
                        if kind == "API key, cache expired":
                            clock[0] += current.api_key_cache_ttl_s + 0.1
                        credential = id_token if kind == "ID token" else api_key
                        traces.setdefault((endpoint, kind), []).append(call(endpoint, credential))
    finally:
        container._gateway, container._authenticator, container._api_keys = saved
        removed = remove_payments(client, pending_payments(client, [uid]))
    summary: dict[str, Any] = {"pushes_removed": removed}
    for (endpoint, kind), answers in traces.items():
        done = [traced for traced, _ in answers]
        summary[f"{endpoint} / {kind}"] = {
            "statuses": dict(Counter(status for _, status in answers)),
            "reads_per_call": sum(t.reads for t in done) / len(done),
            "documents_read_per_call": sum(t.documents_read for t in done) / len(done),
            "commits_per_call": sum(t.commits for t in done) / len(done),
            "documents": {d: n / len(done) for d, n in Counter(d for t in done for d in t.documents).items()},
        }
    if first_key_use is not None:
        summary["first use of the key (payment_status)"] = {
            "reads": first_key_use.reads,
            "commits": first_key_use.commits,
            "documents": first_key_use.documents,
        }
    result.details.setdefault("warm_push", {})["firestore_reads_per_authenticated_call"] = summary
    bad = {
        name: figures["statuses"]
        for name, figures in summary.items()
        if isinstance(figures, dict) and "statuses" in figures and set(figures["statuses"]) - {200, 201}
    }

    def key_reads(name: str) -> float:
        documents: dict[str, float] = summary[name]["documents"]
        return documents.get("read api_keys/*", 0.0)

    def cell(endpoint: str, kind: str) -> str:
        found = summary[f"{endpoint} / {kind}"]
        return f"{found['documents_read_per_call']:.0f} documents in {found['reads_per_call']:.0f} round trips"

    measured = "; ".join(
        f"{endpoint}: " + ", ".join(f"{kind} {cell(endpoint, kind)}" for kind in KINDS)
        for endpoint in ("stk_push", "payment_status")
    )
    auth_only = {kind: key_reads(f"stk_push / {kind}") for kind in KINDS}
    note = (
        f"documents read per call, counted on the wire by a gRPC interceptor, {rounds} calls of each through "
        f"gateway.api with a counted Firestore channel; the credential's own share: ID token "
        f"{auth_only['ID token']:.0f} (its revocation check goes to Firebase Auth, cached per uid), API key "
        f"{auth_only['API key, cached']:.0f} while cached and {auth_only['API key, cache expired']:.0f} "
        f"(api_keys/{{sha256}}) once its entry is older than API_KEY_CACHE_TTL_SECONDS "
        f"({current.api_key_cache_ttl_s:g} s): at most one read per key per {current.api_key_cache_ttl_s:g} s per "
        "instance"
    )
    if first_key_use is not None:
        note += (
            f"; the key's first call on this fresh instance committed {first_key_use.commits} last_used_at mark(s): "
            "written at most once a minute per key across instances (none when the Functions emulator's instance "
            "marked it less than a minute before)"
        )
    if bad:
        note = f"unexpected answers {bad}; " + note
    result.figures.append(
        Figure(
            PHASE,
            "Firestore document reads per authenticated call, by credential",
            measured,
            value=auth_only["API key, cache expired"],
            note=note,
        )
    )
    progress(PHASE, f"counted the Firestore reads of {rounds} calls per credential kind and function")
