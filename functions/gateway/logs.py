"""Structured log lines: one JSON object per line with a severity and a fixed event name.

Cloud Logging parses `severity` and `message` from JSON written to stdout. Callers pass only safe fields; the
`_sensitive` guard drops anything that looks like a secret in case one slips through.
"""

from __future__ import annotations

import json
import sys
import time
from contextvars import ContextVar
from enum import StrEnum
from typing import Any, TextIO

# A field whose name contains any of these is never written, whatever the caller passed.
_REDACTED_NAME_PARTS = ("secret", "passkey", "password", "authorization", "token", "credential")


class Event(StrEnum):
    REQUEST_FAILED = "request_failed"
    UNHANDLED_EXCEPTION = "unhandled_exception"
    AUTH_REJECTED = "auth_rejected"
    UNSAFE_CONFIGURATION_REFUSED = "unsafe_configuration_refused"
    CREDENTIALS_STORED = "credentials_stored"
    CREDENTIALS_REJECTED = "credentials_rejected"
    CREDENTIALS_DELETED = "credentials_deleted"
    CREDENTIALS_SUPERSEDED = "credentials_superseded"
    SECRET_ACCESS_FAILED = "secret_access_failed"
    OAUTH_TOKEN_MINTED = "oauth_token_minted"
    OAUTH_TOKEN_REJECTED = "oauth_token_rejected"
    STK_PUSH_SENT = "stk_push_sent"
    STK_PUSH_REJECTED = "stk_push_rejected"
    STK_PUSH_UNCERTAIN = "stk_push_uncertain"
    PAYMENT_NOT_RECORDED = "payment_not_recorded"
    IDEMPOTENT_REPLAY = "idempotent_replay"
    CALLBACK_REJECTED = "callback_rejected"
    PAYMENT_SETTLED = "payment_settled"
    PAYMENT_FLAGGED = "payment_flagged"
    SETTLEMENT_IGNORED = "settlement_ignored"
    STK_QUERY_SENT = "stk_query_sent"
    RECONCILE_RUN = "reconcile_run"
    CALLBACK_QUARANTINED = "callback_quarantined"
    PAYMENT_UNCONFIRMED = "payment_unconfirmed"
    STK_QUERY_MISMATCH = "stk_query_mismatch"
    FAULT_INJECTED = "fault_injected"
    WEBHOOK_ENDPOINT_CHANGED = "webhook_endpoint_changed"
    WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint_disabled"
    WEBHOOK_FANNED_OUT = "webhook_fanned_out"
    WEBHOOK_SWEEP_RUN = "webhook_sweep_run"
    WEBHOOK_ATTEMPTED = "webhook_attempted"
    WEBHOOK_DELIVERY_ENDED = "webhook_delivery_ended"
    RATE_LIMITED = "rate_limited"
    API_KEY_CREATED = "api_key_created"
    API_KEY_REVOKED = "api_key_revoked"
    API_KEY_USE_MARK_FAILED = "api_key_use_mark_failed"


# Fields every log line of the current request carries (the API key id that authenticated it), set by the request
# boundary. A ContextVar, so concurrent requests on other threads never see each other's.
_request_fields: ContextVar[dict[str, Any] | None] = ContextVar("request_fields", default=None)


def bind_request_fields(**fields: Any) -> None:
    """Add fields to every later log line of this request (until `clear_request_fields`)."""
    _request_fields.set({**(_request_fields.get() or {}), **fields})


def clear_request_fields() -> None:
    _request_fields.set(None)


def _sensitive(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in _REDACTED_NAME_PARTS)


def log_event(event: Event, severity: str = "INFO", *, stream: TextIO | None = None, **fields: Any) -> None:
    record: dict[str, Any] = {"severity": severity, "event": event.value, "message": event.value}
    for key, value in {**(_request_fields.get() or {}), **fields}.items():
        if value is None:
            continue
        record[key] = "[redacted]" if _sensitive(key) else value
    record["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(json.dumps(record, default=str, ensure_ascii=False), file=stream or sys.stdout, flush=True)
