"""Writes sdk/webhook-vectors.json: the shared test vectors both SDKs' webhook verifiers must pass, so that Python's
`verify_webhook` and JavaScript's `verifyWebhook` cannot drift apart.

    .venv/bin/python scripts/webhook_vectors.py   # rewrite the file

Each vector is a delivery (secret, headers, body, the receiver's clock `now`) and what the SDKs must answer:
`expected` is `{"ok": true, "event": {...}}` or `{"error": "<code>"}` with the codes both SDKs use
(missing_headers, invalid_timestamp, timestamp_too_old, timestamp_too_new, no_matching_signature, invalid_payload,
invalid_secret). Signatures come from the `standardwebhooks` reference library (the one the gateway signs with),
except for a body that is not UTF-8, which it cannot sign (there the HMAC is computed as the spec says).

Every vector is also verified by the reference library at the same `now`; its answer is recorded in `reference`.
Where the SDKs answer differently (they are stricter about the secret, the timestamp's form and the event's shape,
accept Svix's header spelling, and never crash where the reference raises an unrelated exception), the vector says
why in `divergence`; a vector whose outcome differs from the reference's without one stops this script. The SDK
tests also regenerate the file in memory and compare, so the committed file cannot drift from this script.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from standardwebhooks import webhooks as reference

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "sdk" / "webhook-vectors.json"

NOW = 1764590400  # 2025-12-01T12:00:00Z, the receiver's clock in every vector
TOLERANCE = 300
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OLD_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
MSG_ID = "evt_2Xq9Lr8Vn3Tm6Kp1Ws4Yz7Bc"
EVENT_DATA = {
    "object": "payment",
    "id": "pay_7Hc2Nw5Qk9Rv3Lx8",
    "status": "succeeded",
    "amount": 1500,
    "phone": "2547*****678",
    "reference": "INV-204",
    "description": "Kahawa ya Wanjikũ",  # non-ASCII: the signature is over the UTF-8 bytes
    "environment": "sandbox",
    "flags": [],
}
BODY = json.dumps(
    {"type": "payment.succeeded", "timestamp": "2025-12-01T11:59:58.000Z", "data": EVENT_DATA},
    ensure_ascii=False,
    separators=(",", ":"),
)
EVENT = {"id": MSG_ID, "type": "payment.succeeded", "timestamp": "2025-12-01T11:59:58.000Z", "data": EVENT_DATA}


def ref_sign(secret: str, msg_id: str, stamp: int, body: str) -> str:
    return reference.Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, tz=UTC), body)


def raw_sign(secret: str, msg_id: str, stamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return (
        "v1," + base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()).decode()
    )


def headers(stamp: int | str = NOW, signature: str | None = None) -> dict[str, str]:
    signed = signature if signature is not None else ref_sign(SECRET, MSG_ID, int(stamp), BODY)
    return {"webhook-id": MSG_ID, "webhook-timestamp": str(stamp), "webhook-signature": signed}


@contextmanager
def reference_clock(now: int) -> Iterator[None]:
    """The reference library reads datetime.now() itself: give it the vector's clock."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Frozen:
            return cls.fromtimestamp(now, tz=tz)

    saved = reference.datetime
    reference.datetime = Frozen  # type: ignore[misc]
    try:
        yield
    finally:
        reference.datetime = saved  # type: ignore[misc]


def reference_outcome(vector: dict[str, Any]) -> dict[str, str]:
    body: str | bytes = base64.b64decode(vector["body_base64"]) if "body_base64" in vector else vector["body"]
    with reference_clock(vector["now"]):
        try:
            reference.Webhook(vector["secret"]).verify(body, vector["headers"])
        except (reference.WebhookVerificationError, reference.EmptyWebhookSecretError) as refused:
            return {"outcome": "refused", "exception": type(refused).__name__}
        except Exception as crash:  # noqa: BLE001 - recording what the reference does with this input
            return {"outcome": "crashed", "exception": f"{type(crash).__module__}.{type(crash).__qualname__}"}
    return {"outcome": "ok"}


def case(name: str, expected: str | None = None, *, divergence: str | None = None, **delivery: Any) -> dict[str, Any]:
    """A vector: `expected` None means the delivery verifies and reads as EVENT, else the error code."""
    vector: dict[str, Any] = {"name": name, "secret": SECRET, "headers": headers(), "body": BODY, "now": NOW}
    vector.update(delivery)
    vector["expected"] = {"ok": True, "event": EVENT} if expected is None else {"error": expected}
    vector["reference"] = reference_outcome(vector)
    if divergence is not None:
        vector["divergence"] = divergence
    return vector


def vectors() -> list[dict[str, Any]]:
    sig = ref_sign(SECRET, MSG_ID, NOW, BODY)
    old_sig = ref_sign(OLD_SECRET, MSG_ID, NOW, BODY)
    unpadded = SECRET.rstrip("=")
    short = "whsec_" + base64.b64encode(bytes(16)).decode()
    not_utf8 = b'{"type":"payment.succeeded","timestamp":"2025-12-01T11:59:58.000Z","data":{"description":"\xff"}}'
    bom = "\ufeff" + BODY
    no_data = json.dumps({"type": "payment.succeeded", "timestamp": "2025-12-01T11:59:58.000Z"})
    array_data = json.dumps({"type": "payment.succeeded", "timestamp": "2025-12-01T11:59:58.000Z", "data": []})
    nan_body = '{"type":"payment.succeeded","timestamp":"2025-12-01T11:59:58.000Z","data":{"amount":NaN}}'

    def signed(body: str) -> dict[str, str]:
        return headers(signature=ref_sign(SECRET, MSG_ID, NOW, body))

    shape = "the SDKs return an event {type, timestamp, data}; the reference returns whatever JSON it parsed"
    ref_crash = "the reference raises an unrelated exception; the SDKs refuse with a typed error"
    return [
        # Deliveries that verify.
        case("a delivery signed by the reference library"),
        case("header names in any case", headers={k.title(): v for k, v in headers().items()}),
        case("the clock exactly the tolerance after the timestamp", now=NOW + TOLERANCE),
        case("the clock exactly the tolerance before the timestamp", now=NOW - TOLERANCE),
        case(
            "rotation: the old secret's signature first, then the current one",
            headers=headers(signature=f"{old_sig} {sig}"),
        ),
        case(
            "rotation: verified with the old secret", secret=OLD_SECRET, headers=headers(signature=f"{sig} {old_sig}")
        ),
        case("a signature of another version is skipped", headers=headers(signature=f"v2,{sig[3:]} {sig}")),
        case(
            "an unparseable signature entry is skipped",
            headers=headers(signature=f"garbage {sig}"),
            divergence=ref_crash + " (it unpacks every entry as version,signature)",
        ),
        case(
            "two spaces between signatures",
            headers=headers(signature=f"{old_sig}  {sig}"),
            divergence=ref_crash + " (an empty entry)",
        ),
        case(
            "Svix's header spelling",
            headers={k.replace("webhook-", "svix-"): v for k, v in headers().items()},
            divergence="the SDKs accept svix-* headers as Svix's libraries do; the reference reads webhook-* only",
        ),
        case("a secret without base64 padding", secret=unpadded),
        # Missing headers.
        case("no webhook-signature", "missing_headers", headers={k: v for k, v in headers().items() if "sig" not in k}),
        case("no webhook-id", "missing_headers", headers={k: v for k, v in headers().items() if "id" not in k}),
        case(
            "no webhook-timestamp", "missing_headers", headers={k: v for k, v in headers().items() if "time" not in k}
        ),
        case("an empty webhook-signature", "missing_headers", headers=headers(signature="")),
        case("no headers at all", "missing_headers", headers={}),
        # Timestamps.
        case("the clock one second past the tolerance", "timestamp_too_old", now=NOW + TOLERANCE + 1),
        case("a timestamp a day old", "timestamp_too_old", now=NOW + 86400),
        case("a timestamp one second too far in the future", "timestamp_too_new", now=NOW - TOLERANCE - 1),
        case("a timestamp that is not a number", "invalid_timestamp", headers=headers(stamp="soon", signature=sig)),
        case("a negative timestamp", "invalid_timestamp", headers=headers(stamp=f"-{NOW}", signature=sig)),
        case(
            "a fractional timestamp",
            "invalid_timestamp",
            headers=headers(stamp=f"{NOW}.0", signature=sig),
            divergence="the reference parses any float and signs its floor; the SDKs take canonical integer seconds",
        ),
        case(
            "a timestamp with a leading zero",
            "invalid_timestamp",
            headers=headers(stamp=f"0{NOW}", signature=sig),
            divergence="the reference parses any float and signs its floor; the SDKs take canonical integer seconds",
        ),
        case(
            "whitespace around header values",
            headers={k: f" {v}\t" for k, v in headers().items()},
            divergence=ref_crash + " (a leading space is an empty signature entry); HTTP servers drop it anyway",
        ),
        case("a header that is only whitespace", "missing_headers", headers={**headers(), "webhook-id": "  "}),
        # Signatures that do not match.
        case("a tampered body", "no_matching_signature", body=BODY.replace("1500", "15000")),
        case("a body with a trailing newline", "no_matching_signature", body=BODY + "\n"),
        case("another message id", "no_matching_signature", headers={**headers(), "webhook-id": "evt_other"}),
        case(
            "another timestamp than the signed one",
            "no_matching_signature",
            headers=headers(stamp=NOW - 1, signature=sig),
        ),
        case("the wrong secret", "no_matching_signature", secret=OLD_SECRET),
        case(
            "rotation: neither signature matches",
            "no_matching_signature",
            secret=OLD_SECRET,
            headers=headers(signature=f"{ref_sign(SECRET, MSG_ID, NOW, BODY + ' ')} {sig}"),
        ),
        case("a short signature", "no_matching_signature", headers=headers(signature="v1,AAAA")),
        case("only a v2 signature", "no_matching_signature", headers=headers(signature="v2," + sig[3:])),
        case("a signature that is not base64", "no_matching_signature", headers=headers(signature="v1,!!!!")),
        case(
            "the signature as hex, Stripe-style",
            "no_matching_signature",
            headers=headers(signature="v1," + base64.b64decode(sig[3:]).hex()),
        ),
        case(
            "the right signature without its base64 padding",
            "no_matching_signature",
            headers=headers(signature=sig.rstrip("=")),
            divergence=ref_crash + " (binascii.Error); the SDKs compare the base64 text, as the reference's JS does",
        ),
        case(
            "a non-ASCII signature",
            "no_matching_signature",
            headers=headers(signature="v1,é" + sig[4:]),
            divergence=ref_crash + " (ValueError from base64)",
        ),
        # Secrets that are not whsec_ secrets: the developer's configuration, not an attack.
        case("no secret (an unset environment variable)", "invalid_secret", secret=None),
        case("an empty secret", "invalid_secret", secret=""),
        case("only the prefix", "invalid_secret", secret="whsec_"),  # noqa: S106 - a test vector
        case(
            "the secret without its whsec_ prefix",
            "invalid_secret",
            secret=SECRET.removeprefix("whsec_"),
            divergence="the reference accepts bare base64; the SDKs want the secret whole, as the gateway shows it",
        ),
        case(
            "a secret with a trailing newline",
            "invalid_secret",
            secret=SECRET + "\n",
            divergence="the reference ignores characters outside base64; the SDKs refuse them",
        ),
        case(
            "a secret with a character outside base64",
            "invalid_secret",
            secret=SECRET[:20] + "!" + SECRET[20:],
            divergence="the reference ignores characters outside base64 (and verifies with the rest); the SDKs refuse",
        ),
        case(
            "a truncated secret",
            "invalid_secret",
            secret=SECRET[:26],
            divergence="the reference verifies with the 15 bytes left (no_matching_signature); the SDKs want 24-64",
        ),
        case(
            "a secret of 16 bytes",
            "invalid_secret",
            secret=short,
            headers=headers(signature=ref_sign(short, MSG_ID, NOW, BODY)),
            divergence="Standard Webhooks secrets hold 24 to 64 bytes; the reference accepts any length",
        ),
        case(
            "a base64url secret",
            "invalid_secret",
            secret="whsec_" + base64.urlsafe_b64encode(bytes(range(200, 232))).decode(),
            divergence=ref_crash.replace("typed error", "WebhookSecretError") + " (binascii.Error)",
        ),
        case("a bad secret is reported before missing headers", "invalid_secret", secret="whsec_", headers={}),  # noqa: S106
        # Authentic deliveries whose body is not an event.
        case(
            "a signed body that is not JSON",
            "invalid_payload",
            body="hello",
            headers=signed("hello"),
            divergence=ref_crash + " (JSONDecodeError)",
        ),
        case(
            "a signed body that is a JSON array", "invalid_payload", body="[]", headers=signed("[]"), divergence=shape
        ),
        case("a signed event without data", "invalid_payload", body=no_data, headers=signed(no_data), divergence=shape),
        case(
            "a signed event whose data is an array",
            "invalid_payload",
            body=array_data,
            headers=signed(array_data),
            divergence=shape,
        ),
        case(
            "a signed body with NaN",
            "invalid_payload",
            body=nan_body,
            headers=signed(nan_body),
            divergence="the reference's Python json accepts NaN, which is not JSON (JavaScript's JSON.parse refuses)",
        ),
        case(
            "a signed body with a byte-order mark",
            "invalid_payload",
            body=bom,
            headers=signed(bom),
            divergence=ref_crash + " (JSONDecodeError)",
        ),
        case(
            "a signed body that is not UTF-8",
            "invalid_payload",
            body_base64=base64.b64encode(not_utf8).decode(),
            headers=headers(signature=raw_sign(SECRET, MSG_ID, str(NOW), not_utf8)),
            divergence=ref_crash + " (UnicodeDecodeError)",
        ),
    ]


def checked(all_vectors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for vector in all_vectors:
        error = vector["expected"].get("error")
        # The reference's counterpart of each SDK outcome: its own secret error, or its verification error.
        counterpart = {None: "ok", "invalid_secret": "EmptyWebhookSecretError"}.get(error, "WebhookVerificationError")
        agrees = counterpart == vector["reference"].get("exception", vector["reference"]["outcome"])
        if agrees == ("divergence" in vector):
            problem = "says why it differs from" if agrees else "differs without saying why from"
            raise SystemExit(f"vector {vector['name']!r} {problem} the reference: {vector['reference']}")
    names = [vector["name"] for vector in all_vectors]
    if len(set(names)) != len(names):
        raise SystemExit("two vectors share a name")
    return all_vectors


def document() -> str:
    content = {
        "description": (
            "Webhook verification vectors shared by sdk/python (verify_webhook) and sdk/js (verifyWebhook); written "
            "by scripts/webhook_vectors.py with the standardwebhooks reference library. `now` is the receiver's clock "
            "in Unix seconds; `body` is a UTF-8 string (`body_base64` when it is not UTF-8); `expected` is what both "
            "SDKs answer (an event, or an error code); `reference` is what standardwebhooks answers at that `now`, "
            "and `divergence` says why the SDKs answer differently."
        ),
        "tolerance_seconds": TOLERANCE,
        "vectors": checked(vectors()),
    }
    return json.dumps(content, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    text = document()
    VECTORS.write_text(text, encoding="utf-8")
    print(f"wrote {len(json.loads(text)['vectors'])} vectors to {VECTORS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
