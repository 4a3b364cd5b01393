"""Warm stk_push overhead: the gateway served by functions-framework against the same push sent straight to Daraja.

Two rows, each measured side by side and interleaved (gateway push, direct push, gateway push, ...):
  - against the simulator as it is (answers in about a millisecond), which shows the gateway's absolute overhead;
  - against a second simulator with --latency-ms (Daraja's sandbox takes 1-3 s), which shows what a caller feels.
Each gateway push carries an Idempotency-Key, as the SDKs send one. Callbacks go to the functions emulator's
mpesa_callback, so they land on a real receiver; the direct pushes' callbacks go to a port nobody listens on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import requests

from bench.common import (
    DARAJA_URL,
    FUNCTIONS_URL,
    Child,
    DirectDaraja,
    PhoneNumbers,
    SimulatorApp,
    daraja_simulator,
    dead_url,
    firestore_client,
    free_port,
    functions_framework,
    ms,
    percentile,
    progress,
    session,
    settle_or_remove,
    sign_up,
    stop_all,
)
from bench.report import Figure, Run

PHASE = "warm stk_push"
TARGET_RATIO_INSTANT = 1.5  # against a stub answering in ~1 ms; missed by design, see the README
TARGET_RATIO_DARAJA_LIKE = 1.1  # against a simulator with Daraja-like latency: what a caller feels


class GatewayPusher:
    def __init__(self, http: requests.Session, url: str, id_token: str) -> None:
        self._http = http
        self._url = url
        self._headers = {"Authorization": f"Bearer {id_token}"}

    def push(self, phone: str) -> None:
        body = {"phone": phone, "amount": 10, "account_reference": "BENCH-1", "description": "Bench push"}
        headers = {**self._headers, "Idempotency-Key": f"bench-{uuid.uuid4().hex}"}
        answer = self._http.post(self._url, json=body, headers=headers, timeout=60)
        if answer.status_code != 201:
            raise RuntimeError(f"gateway push failed: {answer.status_code} {answer.text[:300]}")


def _interleaved(
    label: str, count: int, warmup: int, gateway: Callable[[str], None], direct: Callable[[str], None]
) -> tuple[list[float], list[float]]:
    phones = PhoneNumbers()
    for _ in range(warmup):
        gateway(phones.take())
        direct(phones.take())
    gateway_s: list[float] = []
    direct_s: list[float] = []
    for i in range(count):
        pairs = ((gateway, gateway_s), (direct, direct_s))
        for push, sink in pairs if i % 2 == 0 else tuple(reversed(pairs)):
            phone = phones.take()
            started = time.perf_counter()
            push(phone)
            sink.append(time.perf_counter() - started)
        if (i + 1) % max(1, count // 4) == 0:
            progress(PHASE, f"{label}: {i + 1}/{count} pairs, gateway p50 so far {ms(percentile(gateway_s, 50))}")
    return gateway_s, direct_s


def _figures(
    result: Run, label: str, gateway_s: list[float], direct_s: list[float], note: str, target_ratio: float
) -> None:
    g50, g95 = percentile(gateway_s, 50), percentile(gateway_s, 95)
    d50, d95 = percentile(direct_s, 50), percentile(direct_s, 95)
    ratio = g50 / d50
    result.details.setdefault("warm_push", {})[label] = {
        "pushes": len(gateway_s),
        "gateway_p50_s": g50,
        "gateway_p95_s": g95,
        "direct_p50_s": d50,
        "direct_p95_s": d95,
    }
    result.figures.append(
        Figure.against(
            PHASE,
            f"stk_push p50 / direct p50, {label} ({len(gateway_s)} each)",
            ratio,
            f"{ratio:.2f}x ({ms(g50)} vs {ms(d50)})",
            f"<= {target_ratio}x",
            ratio <= target_ratio,
            note,
        )
    )
    result.figures.append(
        Figure(
            PHASE, f"stk_push p95 / direct p95, {label}", f"{g95 / d95:.2f}x ({ms(g95)} vs {ms(d95)})", value=g95 / d95
        )
    )
    result.figures.append(Figure(PHASE, f"gateway overhead at p50, {label}", ms(g50 - d50), value=g50 - d50))


def _breakdown(result: Run, uid: str, id_token: str, direct: DirectDaraja, shortcode: str, rounds: int = 40) -> None:
    """Where a push's time goes: each of its round trips timed alone, in process, against the same services. The
    two commits are a keyed push's own (built by the domain, stored by PaymentRepository) and are deleted after."""
    import contextlib
    import dataclasses
    import os
    import secrets

    from bench.paid_calls import settings
    from gateway.auth import FirebaseAuthenticator
    from gateway.domain.idempotency import IdempotencyRecord
    from gateway.domain.payment import Payment
    from gateway.repository import (
        CALLBACK_TOKENS,
        CallbackRoute,
        CreateCallbackRoute,
        PaymentRepository,
        SaveIdempotency,
        SavePayment,
        utcnow,
    )
    from gateway.services.common import policy, sha256_hex

    current = settings()
    rules = policy(current)
    parts: dict[str, Callable[[], object]] = {}
    verify_revoked = FirebaseAuthenticator(current)
    verify_plain = FirebaseAuthenticator(dataclasses.replace(current, check_revoked_tokens=False))
    repository = PaymentRepository(current)
    phones = PhoneNumbers()
    made: list[tuple[str, str, str]] = []  # (payment id, route id, key hash) of every intent, deleted afterwards
    awaiting: list[tuple[Payment, object, str, IdempotencyRecord]] = []

    def intent() -> object:
        now = utcnow()
        payment = Payment.initiate(
            payment_id="pay_" + secrets.token_hex(12),
            msisdn=phones.take(),
            amount=10,
            account_reference="BENCH-1",
            description="Bench push",
            metadata={},
            environment="sandbox",
            shortcode=shortcode,
            now=now,
            policy=rules,
        )
        route_id, key_hash = sha256_hex(secrets.token_urlsafe(24)), sha256_hex(uuid.uuid4().hex)
        claim = IdempotencyRecord.claim("bench", payment.id, now, current.push_lease_s, current.idempotency_ttl_s)
        made.append((payment.id, route_id, key_hash))
        versions = repository.commit(
            [
                SavePayment(uid, payment),
                CreateCallbackRoute(route_id, CallbackRoute(uid, payment.id), now),
                SaveIdempotency(uid, key_hash, claim, create=True),
            ]
        )
        awaiting.append((payment, versions[0], key_hash, claim))
        return versions

    def answer() -> object:
        payment, version, key_hash, claim = awaiting.pop()
        accepted = payment.accept(f"ws_CO_BENCH{secrets.token_hex(8)}", "bench-breakdown", utcnow(), rules)
        answered = claim.answered(201)
        return repository.commit([SavePayment(uid, accepted, version), SaveIdempotency(uid, key_hash, answered)])

    parts["ID token check, with revocation lookup"] = lambda: verify_revoked(f"Bearer {id_token}")
    parts["ID token check, signature only"] = lambda: verify_plain(f"Bearer {id_token}")
    parts["Firestore read (developer set-up)"] = lambda: repository.ensure_developer(uid, None)
    parts["Firestore commit 1 (intent: 3 writes)"] = intent
    parts["Firestore commit 2 (answer: 2 writes)"] = answer  # runs right after intent(), on the payment it stored
    parts["Daraja push (direct)"] = lambda: direct.push(phones.take())
    timings: dict[str, list[float]] = {name: [] for name in parts}
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            for call in parts.values():
                call()  # the first call builds the client
            for _ in range(rounds):
                for name, call in parts.items():
                    started = time.perf_counter()
                    call()
                    timings[name].append(time.perf_counter() - started)
    finally:
        # Accepted payments that no callback will ever settle: gone, with their routes and keys.
        client = repository.client
        developer = client.collection("developers").document(uid)
        for start in range(0, len(made), 150):
            batch = client.batch()
            for payment_id, route_id, key_hash in made[start : start + 150]:
                batch.delete(developer.collection("payments").document(payment_id))
                batch.delete(client.collection(CALLBACK_TOKENS).document(route_id))
                batch.delete(developer.collection("idempotency_keys").document(key_hash))
            batch.commit()
    medians = {name: percentile(values, 50) for name, values in timings.items()}
    result.details.setdefault("warm_push", {})["breakdown_p50_s"] = medians
    measured = ", ".join(f"{name} {ms(value)}" for name, value in medians.items())
    result.figures.append(
        Figure(
            PHASE,
            f"parts of a keyed push, p50 of {rounds} each",
            measured,
            note="a keyed push = 1 ID token check + 1 Firestore read + commit 1 (payment, callback route, key claim) "
            "+ 1 Daraja push + commit 2 (payment with Daraja's answer, key's stored answer)",
        )
    )


def run(result: Run, count: int = 200, realistic_count: int = 30, latency_ms: int = 300) -> None:
    children: list[Child] = []
    http = session()
    uid = ""
    try:
        uid, id_token = sign_up(http)
        app = SimulatorApp.new()
        app.register(http)
        slow_port, fast_port, real_port = free_port(), free_port(), free_port()
        slow_url = f"http://127.0.0.1:{slow_port}"
        slow = daraja_simulator("daraja-latency", slow_port, latency_ms)
        children.append(slow)
        callback_base = f"{FUNCTIONS_URL}/mpesa_callback"
        for name, port, daraja in (
            ("ff-stk_push", fast_port, DARAJA_URL),
            ("ff-stk_push-latency", real_port, slow_url),
        ):
            children.append(functions_framework(name, "stk_push", port, daraja, callback_base))
        progress(
            PHASE,
            f"developer {uid}, shortcode {app.shortcode}; starting functions-framework x2 and a "
            f"{latency_ms} ms simulator",
        )
        slow.wait_http(f"{slow_url}/healthz")
        app.register(http, slow_url)
        put = http.put(
            f"{FUNCTIONS_URL}/developer_credentials",
            json=app.credentials_body(),
            headers={"Authorization": f"Bearer {id_token}"},
            timeout=120,
        )
        if put.status_code != 200:
            raise RuntimeError(f"PUT developer_credentials failed: {put.status_code} {put.text[:300]}")
        for child in children[1:]:
            child.wait_http(child.url)
        progress(PHASE, "functions-framework ready; credentials stored through the functions emulator")

        fast = GatewayPusher(http, f"http://127.0.0.1:{fast_port}/", id_token)
        direct = DirectDaraja(http, DARAJA_URL, app, dead_url())
        gateway_s, direct_s = _interleaved("simulator as is", count, 10, fast.push, direct.push)
        _figures(
            result,
            "simulator as is",
            gateway_s,
            direct_s,
            "the simulator answers in ~1 ms, so this ratio is the gateway's absolute overhead over almost nothing",
            TARGET_RATIO_INSTANT,
        )
        _breakdown(result, uid, id_token, direct, app.shortcode)

        realistic = GatewayPusher(http, f"http://127.0.0.1:{real_port}/", id_token)
        direct_slow = DirectDaraja(http, slow_url, app, dead_url())
        gateway_s, direct_s = _interleaved(
            f"Daraja-like {latency_ms} ms", realistic_count, 3, realistic.push, direct_slow.push
        )
        _figures(
            result,
            f"Daraja-like {latency_ms} ms",
            gateway_s,
            direct_s,
            f"a second simulator with --latency-ms {latency_ms}; real Daraja takes 1-3 s, so this is conservative",
            TARGET_RATIO_DARAJA_LIKE,
        )
        progress(PHASE, "waiting for the callbacks to settle every payment")
    finally:
        if uid:
            result.details.setdefault("warm_push", {})["cleanup"] = settle_or_remove(firestore_client(), [uid], PHASE)
        stop_all(children)
        http.close()
