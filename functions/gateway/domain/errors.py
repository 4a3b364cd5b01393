"""The one error the pure domain raises: a caller's input broke a rule.

It deliberately does not inherit from ``gateway.errors.GatewayError`` so the domain stays free of the HTTP layer;
the request boundary maps it to a 400 ``invalid_request_error`` envelope.
"""

from __future__ import annotations


class ValidationError(Exception):
    """Input that breaks a domain rule. ``code`` is machine-readable, ``message`` is safe to show to the caller."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param

    def __repr__(self) -> str:
        return f"ValidationError(code={self.code!r}, message={self.message!r}, param={self.param!r})"
