"""Which events a payment's change produces: the one rule behind the outbox (no state change without its event, no
event without its change). Pure: the caller stores the events in the same commit as the payment.

    before        after                                events
    (none)        pending                              payment.created
    pending       succeeded|failed|cancelled|timed_out payment.<status>
    pending       unconfirmed                          payment.unconfirmed
    unconfirmed   succeeded (late money)               payment.succeeded (+ payment.flagged: success_after_terminal)
    any           any, a flag that needs a human added payment.flagged

`unconfirmed` gets its own type rather than being folded into `failed` or `timed_out`: the payer may still have
paid (a late success turns it into `succeeded`), so a receiver must neither ship goods nor treat it as a refusal.
Changes that are only bookkeeping (Daraja accepted the push, a query was claimed, the outcome became unknown) and
flags that only describe how a payment settled (`settled_by_query`, `outcome_unknown`) produce no event.
"""

from __future__ import annotations

from enum import StrEnum

from gateway.domain.errors import ValidationError
from gateway.domain.payment import FLAGS_NEEDING_A_HUMAN, Payment, PaymentStatus


class EventType(StrEnum):
    PAYMENT_CREATED = "payment.created"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_CANCELLED = "payment.cancelled"
    PAYMENT_TIMED_OUT = "payment.timed_out"
    PAYMENT_UNCONFIRMED = "payment.unconfirmed"
    PAYMENT_FLAGGED = "payment.flagged"


EVENT_TYPES: frozenset[str] = frozenset(event.value for event in EventType)

_BY_STATUS: dict[PaymentStatus, EventType] = {
    PaymentStatus.SUCCEEDED: EventType.PAYMENT_SUCCEEDED,
    PaymentStatus.FAILED: EventType.PAYMENT_FAILED,
    PaymentStatus.CANCELLED: EventType.PAYMENT_CANCELLED,
    PaymentStatus.TIMED_OUT: EventType.PAYMENT_TIMED_OUT,
    PaymentStatus.UNCONFIRMED: EventType.PAYMENT_UNCONFIRMED,
}


def events_for(before: Payment | None, after: Payment) -> list[EventType]:
    """The events that `before` -> `after` means, in the order a receiver should read them."""
    events: list[EventType] = []
    if before is None:
        events.append(EventType.PAYMENT_CREATED)
    before_status = PaymentStatus.PENDING if before is None else before.status
    if after.status is not before_status and after.status in _BY_STATUS:
        events.append(_BY_STATUS[after.status])
    added = set(after.flags) - set(() if before is None else before.flags)
    if added & FLAGS_NEEDING_A_HUMAN:
        events.append(EventType.PAYMENT_FLAGGED)
    return events


def parse_event_types(raw: object, param: str) -> tuple[str, ...]:
    """A list of event type names (or ["*"] for all), as a webhook endpoint subscribes to them."""
    if not isinstance(raw, list) or not raw or len(raw) > len(EVENT_TYPES) + 1:
        raise ValidationError("invalid_enabled_events", f"{param} must be a non-empty list of event types", param)
    chosen: set[str] = set()
    for item in raw:
        if not isinstance(item, str) or (item != "*" and item not in EVENT_TYPES):
            raise ValidationError(
                "invalid_enabled_events",
                f'{param} items must be "*" or one of {", ".join(sorted(EVENT_TYPES))}',
                param,
            )
        chosen.add(item)
    if "*" in chosen:
        return ("*",)
    return tuple(sorted(chosen))


def subscribed(enabled_events: tuple[str, ...] | list[str], event_type: str) -> bool:
    return "*" in enabled_events or event_type in enabled_events
