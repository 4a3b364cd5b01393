"""mpesa_gateway.webhooks.verify_webhook: deliveries signed by the `standardwebhooks` reference library (what the
gateway signs with) verify; tampered, stale, unsigned and wrongly keyed ones do not. No network, no stack."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook

from mpesa_gateway.webhooks import WebhookVerificationError, sign, verify_webhook

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 32).decode()
BODY = json.dumps(
    {
        "type": "payment.succeeded",
        "timestamp": "2026-12-01T12:00:00.000Z",
        "data": {"object": "payment", "id": "pay_1", "status": "succeeded", "amount": 10, "flags": []},
    },
    separators=(",", ":"),
)


def delivery(secret: str = SECRET, at: float | None = None, msg_id: str = "evt_1") -> dict[str, str]:
    stamp = datetime.fromtimestamp(time.time() if at is None else at, tz=timezone.utc)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, stamp, BODY),
    }


def test_a_reference_signed_delivery_verifies_and_reads_as_an_event() -> None:
    event = verify_webhook(BODY.encode(), delivery(), SECRET)
    assert (event.id, event.type) == ("evt_1", "payment.succeeded")
    assert event.payment.id == "pay_1" and event.payment.status == "succeeded"
    # Header names are case-insensitive, and Svix's svix-* spelling works too.
    headers = {name.replace("webhook-", "Svix-").title(): value for name, value in delivery().items()}
    assert verify_webhook(BODY, headers, SECRET).id == "evt_1"


def test_our_signature_is_the_reference_one() -> None:
    headers = delivery()
    assert sign(SECRET, "evt_1", int(headers["webhook-timestamp"]), BODY.encode()) == headers["webhook-signature"]
    # ...so the reference library accepts what our helper signs.
    stamp = int(time.time())
    ours = {
        "webhook-id": "evt_2",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(SECRET, "evt_2", stamp, BODY.encode()),
    }
    assert Webhook(SECRET).verify(BODY, ours)["type"] == "payment.succeeded"


def test_during_a_rotation_any_matching_signature_is_enough() -> None:
    old, new = delivery(OTHER), delivery(SECRET)
    both = {**new, "webhook-signature": f"{old['webhook-signature']} {new['webhook-signature']}"}
    assert verify_webhook(BODY, both, SECRET).id == "evt_1"
    assert verify_webhook(BODY, both, OTHER).id == "evt_1"


@pytest.mark.parametrize(
    "change",
    [
        lambda h, b: (h, b.replace("pay_1", "pay_2")),  # tampered body
        lambda h, b: ({**h, "webhook-id": "evt_other"}, b),  # another message id
        lambda h, b: ({**h, "webhook-signature": "v1,AAAA"}, b),
        lambda h, b: ({**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
        lambda h, b: ({**h, "webhook-timestamp": "soon"}, b),
    ],
)
def test_tampered_or_incomplete_deliveries_are_refused(change: object) -> None:
    headers, body = change(delivery(), BODY)  # type: ignore[operator]
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, SECRET)


def test_wrong_secret_and_stale_deliveries_are_refused() -> None:
    with pytest.raises(WebhookVerificationError):
        verify_webhook(BODY, delivery(), OTHER)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(BODY, delivery(at=time.time() - 301), SECRET)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(BODY, delivery(at=time.time() + 301), SECRET)
    assert verify_webhook(BODY, delivery(at=time.time() - 3000), SECRET, tolerance_s=3600).id == "evt_1"
