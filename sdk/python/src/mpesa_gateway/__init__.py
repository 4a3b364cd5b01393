"""Python client for mpesa-gateway: store your Daraja credentials, send M-Pesa STK Push prompts, read payments.

from mpesa_gateway import Gateway, firebase_password_token_provider

gw = Gateway(base_url, api_key="mpg_test_…")  # a server; or id_token=firebase_password_token_provider(…)
payment = gw.payments.create("0712345678", 10, "INV-1", "Order 1")  # 201, or 202: payment.outcome_unknown
print(gw.payments.wait(payment.id).status)  # succeeded, failed, cancelled, timed_out or unconfirmed
"""

from mpesa_gateway._version import __version__
from mpesa_gateway.auth import (
    FirebasePasswordTokenProvider,
    FirebaseUser,
    firebase_password_token_provider,
    firebase_sign_in,
    firebase_sign_up,
)
from mpesa_gateway.client import USER_AGENT, ApiResponse, Gateway
from mpesa_gateway.errors import (
    AuthenticationError,
    ConnectionError,  # noqa: A004 - the SDK's own error, exported by name on purpose
    DarajaError,
    DarajaRateLimitError,
    GatewayError,
    IdempotencyError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    WaitTimeout,
    error_from_response,
)
from mpesa_gateway.models import (
    FLAG_OUTCOME_UNKNOWN,
    FLAG_SUCCESS_AFTER_TERMINAL,
    TERMINAL_STATUSES,
    ApiKey,
    Credentials,
    Page,
    Payment,
    PaymentFlag,
    PaymentStatus,
)
from mpesa_gateway.webhooks import (
    Event,
    WebhookEndpoint,
    WebhookEvent,
    WebhookSecretError,
    WebhookVerificationError,
    verify_webhook,
)

__all__ = [
    "FLAG_OUTCOME_UNKNOWN",
    "FLAG_SUCCESS_AFTER_TERMINAL",
    "TERMINAL_STATUSES",
    "USER_AGENT",
    "ApiKey",
    "ApiResponse",
    "AuthenticationError",
    "ConnectionError",
    "Credentials",
    "DarajaError",
    "DarajaRateLimitError",
    "Event",
    "FirebasePasswordTokenProvider",
    "FirebaseUser",
    "Gateway",
    "GatewayError",
    "IdempotencyError",
    "InvalidRequestError",
    "NotFoundError",
    "Page",
    "Payment",
    "PaymentFlag",
    "PaymentStatus",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "WaitTimeout",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookSecretError",
    "WebhookVerificationError",
    "__version__",
    "error_from_response",
    "firebase_password_token_provider",
    "firebase_sign_in",
    "firebase_sign_up",
    "verify_webhook",
]
