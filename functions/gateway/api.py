"""The HTTP handlers behind each Cloud Function: they translate a request into one use case call.

Each handler goes in the same order: method, authentication, input, use case, answer. Errors become the one
envelope in gateway.http.
"""

from __future__ import annotations

from collections.abc import Callable

import flask

from gateway import container, errors
from gateway.http import ApiResponse, Call, serve


def developer_credentials(request: flask.Request) -> flask.Response:
    def handle(call: Call) -> ApiResponse:
        gateway = container.gateway()
        developer = call.developer
        if call.method == "PUT":
            return gateway.put_credentials(developer, call.json())
        if call.method == "DELETE":
            return gateway.delete_credentials(developer)
        return gateway.get_credentials(developer)

    return _serve(request, ("GET", "PUT", "DELETE"), handle)


def stk_push(request: flask.Request) -> flask.Response:
    def handle(call: Call) -> ApiResponse:
        developer = call.developer
        body = call.json()
        return container.gateway().create_payment(developer, body, call.header("Idempotency-Key"), call.request_id)

    return _serve(request, ("POST",), handle)


def payment_status(request: flask.Request) -> flask.Response:
    def handle(call: Call) -> ApiResponse:
        developer = call.developer
        gateway = container.gateway()
        payment_id = call.query("id")
        checkout_request_id = call.query("checkout_request_id")
        if payment_id is not None or checkout_request_id is not None:
            return gateway.get_payment(developer, payment_id or None, checkout_request_id or None)
        return gateway.list_payments(
            developer, call.query("status") or None, call.query("limit"), call.query("page_token")
        )

    return _serve(request, ("GET",), handle)


def mpesa_callback(request: flask.Request) -> flask.Response:
    def handle(call: Call) -> ApiResponse:
        token = request.path.rstrip("/").rsplit("/", 1)[-1]
        if not token:
            raise errors.NotFound("missing_callback_token", "the callback URL has no token")
        source_ip = client_ip(request, container.settings().trusted_proxy_hops)
        return container.gateway().handle_callback(token, call.json(), source_ip)

    # Safaricom sends no credentials: the per-payment URL token is checked by the use case instead.
    return _serve(request, ("POST",), handle, authenticated=False)


def reconcile_payments() -> dict[str, int]:
    return container.gateway().reconcile()


def client_ip(request: flask.Request, trusted_proxy_hops: int) -> str | None:
    """The caller's address as seen by the last trusted proxy.

    Clients can write anything into X-Forwarded-For; only the entries appended by our own proxies (Google's
    front end appends exactly one) are trustworthy, so we count from the right, never take the left-most.
    """
    forwarded = request.headers.get("X-Forwarded-For", "")
    hops = [part.strip() for part in forwarded.split(",") if part.strip()]
    if trusted_proxy_hops > 0 and len(hops) >= trusted_proxy_hops:
        return hops[-trusted_proxy_hops]
    return request.remote_addr


def _serve(
    request: flask.Request,
    methods: tuple[str, ...],
    handle: Callable[[Call], ApiResponse],
    *,
    authenticated: bool = True,
) -> flask.Response:
    return serve(
        request,
        methods=methods,
        handler=handle,
        max_body_bytes=container.settings().max_body_bytes,
        authenticate=container.authenticator() if authenticated else None,
    )
