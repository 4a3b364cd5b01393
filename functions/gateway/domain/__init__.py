"""Pure payment rules (no I/O): phone numbers, amounts, statuses and result codes, Daraja messages, request bodies."""

from gateway.domain.amount import parse_amount
from gateway.domain.callback import (
    StkCallback,
    StkQueryOutcome,
    parse_query_result,
    parse_stk_callback,
)
from gateway.domain.daraja_password import nairobi_timestamp, stk_password
from gateway.domain.errors import ValidationError
from gateway.domain.payment import (
    PaymentOutcome,
    PaymentStatus,
    SettlementDecision,
    decide_settlement,
    is_legal_transition,
    normalize_result_code,
    status_for_result_code,
)
from gateway.domain.phone import mask_msisdn, normalize_msisdn
from gateway.domain.validation import (
    CredentialsRequest,
    StkPushRequest,
    canonical_fingerprint,
    key_hint,
    parse_credentials_request,
    parse_stk_push_request,
)

__all__ = [
    "CredentialsRequest",
    "PaymentOutcome",
    "PaymentStatus",
    "SettlementDecision",
    "StkCallback",
    "StkPushRequest",
    "StkQueryOutcome",
    "ValidationError",
    "canonical_fingerprint",
    "decide_settlement",
    "is_legal_transition",
    "key_hint",
    "mask_msisdn",
    "nairobi_timestamp",
    "normalize_msisdn",
    "normalize_result_code",
    "parse_amount",
    "parse_credentials_request",
    "parse_query_result",
    "parse_stk_callback",
    "parse_stk_push_request",
    "status_for_result_code",
    "stk_password",
]
