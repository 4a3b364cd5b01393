"""The HTTP handlers behind each Cloud Function: they translate a request into one use case call and its result
into an answer. This is the only layer that picks status codes and headers.

Each handler goes in the same order: method, authentication, input, use case, answer. Errors become the one
envelope in gateway.http.
"""

from __future__ import annotations

from collections.abc import Callable

import flask

from gateway import container, errors
from gateway.http import ApiResponse, Call, serve
from gateway.services.settlement import ACCEPTED_ANSWER
from gateway.services.webhooks import NotDue
from gateway.views import (
    api_key_view,
    credentials_list_view,
    credentials_view,
    delivery_view,
    event_view,
    payment_view,
    webhook_endpoint_view,
)


def developer_credentials(request: flask.Request) -> flask.Response:
    def handle(call: Call) -> ApiResponse:
        credentials = container.gateway().credentials
        developer = call.developer
        if call.method == "PUT":
            return ApiResponse(200, credentials_view(credentials.put(developer, call.json())))
        environment = call.query("environment") or None
        if call.method == "DELETE":
            deleted = credentials.delete(developer, environment)
            return ApiResponse(200, {"object": "developer_credentials", "deleted": deleted})
        if environment is None:
            return ApiResponse(200, credentials_list_view(credentials.list(developer)))
        return ApiResponse(200, credentials_view(credentials.get(developer, environment)))

    return _serve(request, ("GET", "PUT", "DELETE"), handle)


def stk_push(request: flask.Request) -> flask.Response:
    def handle(call: Call) -> ApiResponse:
        developer = call.developer
        body = call.json()
        result = container.gateway().payments.push(developer, body, call.header("Idempotency-Key"))
        # 201: Daraja accepted the push. 202: the payment exists but Daraja's answer never came; its callback or
        # the reconciler settles it, so wait on it like any other payment and never push it again with a new key.
        status = 201 if result.accepted else 202
        headers = {"Idempotent-Replayed": "true"} if result.outcome == "replayed" else {}
        return ApiResponse(status, payment_view(result.payment), headers)

    return _serve(request, ("POST",), handle)


def payment_status(request: flask.Request) -> flask.Response:
    def handle(call: Call) -> ApiResponse:
        developer = call.developer
        payments = container.gateway().payments
        payment_id = call.query("id")
        checkout_request_id = call.query("checkout_request_id")
        if payment_id is not None or checkout_request_id is not None:
            return ApiResponse(
                200,
                payment_view(
                    payments.get(developer, payment_id or None, checkout_request_id or None, call.query("environment"))
                ),
            )
        page = payments.list(
            developer,
            call.query("status") or None,
            call.query("limit"),
            call.query("page_token"),
            call.query("environment"),
        )
        return ApiResponse(
            200,
            {
                "object": "list",
                "data": [payment_view(payment) for payment in page.payments],
                "has_more": page.next_page_token is not None,
                "next_page_token": page.next_page_token,
            },
        )

    return _serve(request, ("GET",), handle)


def mpesa_callback(request: flask.Request) -> flask.Response:
    def handle(call: Call) -> ApiResponse:
        token = request.path.rstrip("/").rsplit("/", 1)[-1]
        if not token:
            raise errors.NotFound("missing_callback_token", "the callback URL has no token")
        settlement = container.gateway().settlement
        source_ip = client_ip(request, container.settings().trusted_proxy_hops)
        settlement.check_callback_source(token, source_ip)
        raw = call.raw_body()
        try:
            body = call.json()
        except errors.InvalidRequest as unreadable:
            settlement.quarantine_unreadable(token, raw, source_ip, unreadable.code)
            raise
        settlement.handle_callback(token, body, raw, source_ip)
        return ApiResponse(200, ACCEPTED_ANSWER)

    # Safaricom sends no credentials: the per-payment URL token is checked by the use case instead.
    return _serve(request, ("POST",), handle, authenticated=False)


def api_keys(request: flask.Request) -> flask.Response:
    def handle(call: Call) -> ApiResponse:
        keys = container.api_keys()
        developer = call.developer
        keys.check_may_manage(developer)  # before the body or the path is read: a key gets 403, whatever it sent
        key_id = path_id(request.path, "api_keys")
        if call.method == "POST":
            if key_id is not None:
                raise errors.MethodNotAllowed(("GET", "DELETE"))
            created = keys.create(developer, call.json())
            return ApiResponse(201, api_key_view(created.record, created.key))
        if call.method == "DELETE":
            if key_id is None:
                raise errors.MethodNotAllowed(("GET", "POST"))  # DELETE /api_keys/{id} revokes one key
            return ApiResponse(200, api_key_view(keys.revoke(developer, key_id)))
        if key_id is not None:
            return ApiResponse(200, api_key_view(keys.get(developer, key_id)))
        listed = keys.list(developer)
        return ApiResponse(
            200, {"object": "list", "data": [api_key_view(record) for record in listed], "has_more": False}
        )

    return _serve(request, ("GET", "POST", "DELETE"), handle)


def path_id(path: str, function_name: str) -> str | None:
    """The one path segment after the function's own name (`/api_keys/key_…` under the emulator, `/key_…` when
    deployed, where the function sees only what follows it), or None. Deeper paths name nothing: 404."""
    segments = path_segments(path, function_name, 1)
    return segments[0] if segments else None


def reconcile_payments() -> dict[str, int]:
    return container.gateway().settlement.reconcile()


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


# ------------------------------------------------------------------------------------------------ webhooks
def webhook_endpoints(request: flask.Request) -> flask.Response:
    """/webhook_endpoints[/{id}[/rotate_secret]]"""

    def handle(call: Call) -> ApiResponse:
        endpoints = container.webhooks().endpoints
        developer = call.developer
        segments = path_segments(request.path, "webhook_endpoints", 2)
        if not segments:
            if call.method == "POST":
                endpoint, secret = endpoints.create(developer, call.json())
                return ApiResponse(201, webhook_endpoint_view(endpoint, secret))
            _allow(call, ("GET", "POST"))
            listed = [webhook_endpoint_view(endpoint) for endpoint in endpoints.all(developer)]
            return ApiResponse(200, {"object": "list", "data": listed, "has_more": False, "next_page_token": None})
        endpoint_id = segments[0]
        if len(segments) == 2:
            if segments[1] != "rotate_secret":
                raise errors.NotFound("not_found", "no such resource")
            _allow(call, ("POST",))
            rotated, secret = endpoints.rotate(developer, endpoint_id)
            return ApiResponse(200, webhook_endpoint_view(rotated, secret))
        if call.method == "PATCH":
            return ApiResponse(200, webhook_endpoint_view(endpoints.update(developer, endpoint_id, call.json())))
        if call.method == "DELETE":
            endpoints.delete(developer, endpoint_id)
            return ApiResponse(200, {"object": "webhook_endpoint", "id": endpoint_id, "deleted": True})
        _allow(call, ("GET", "PATCH", "DELETE"))
        return ApiResponse(200, webhook_endpoint_view(endpoints.get(developer, endpoint_id)))

    return _serve(request, ("GET", "POST", "PATCH", "DELETE"), handle)


def events(request: flask.Request) -> flask.Response:
    """/events[/{id}[/deliveries | /redeliver]]"""

    def handle(call: Call) -> ApiResponse:
        service = container.webhooks().events
        developer = call.developer
        segments = path_segments(request.path, "events", 2)
        if not segments:
            _allow(call, ("GET",))
            found, next_token = service.page(
                developer, call.query("type") or None, call.query("limit"), call.query("page_token")
            )
            return ApiResponse(
                200,
                {
                    "object": "list",
                    "data": [event_view(event) for event in found],
                    "has_more": next_token is not None,
                    "next_page_token": next_token,
                },
            )
        event_id = segments[0]
        if len(segments) == 1:
            _allow(call, ("GET",))
            return ApiResponse(200, event_view(service.get(developer, event_id)))
        if segments[1] == "deliveries":
            _allow(call, ("GET",))
            listed = [delivery_view(delivery) for delivery in service.deliveries(developer, event_id)]
            return ApiResponse(200, {"object": "list", "data": listed, "has_more": False, "next_page_token": None})
        if segments[1] == "redeliver":
            _allow(call, ("POST",))
            body = call.json() if call.raw_body().strip() else {}
            if not isinstance(body, dict) or set(body) - {"endpoint_id"}:
                raise errors.InvalidRequest("invalid_body", "the body may only name an endpoint_id")
            endpoint_id = body.get("endpoint_id")
            if endpoint_id is not None and not isinstance(endpoint_id, str):
                raise errors.InvalidRequest("invalid_endpoint_id", "endpoint_id must be a string", "endpoint_id")
            queued = service.redeliver(developer, event_id, endpoint_id)
            return ApiResponse(202, {"object": "redelivery", "event_id": event_id, "endpoint_ids": queued})
        raise errors.NotFound("not_found", "no such resource")

    return _serve(request, ("GET", "POST"), handle)


def fan_out_event(uid: str, event_id: str) -> int:
    """The Firestore trigger on developers/{uid}/events/{event_id}: queue one delivery per endpoint."""
    return container.event_trigger()(uid, event_id)


def sweep_webhook_events() -> dict[str, int]:
    """The schedule behind the trigger: fan out the events whose trigger failed or never ran."""
    return container.webhooks().deliveries.sweep()


def deliver_webhook(data: object) -> str:
    """One task of the delivery queue. Raising makes the queue retry it (a failed attempt does not raise: it
    schedules its own next attempt; only an early task, a busy delivery or our own failure does)."""
    if not isinstance(data, dict) or not all(
        isinstance(data.get(name), str) and data.get(name) for name in ("uid", "event_id", "endpoint_id")
    ):
        return "malformed"  # retrying would never help
    try:
        return container.webhooks().deliveries.attempt(data["uid"], data["event_id"], data["endpoint_id"])
    except NotDue:
        # An answer of 503 makes the queue retry the task later, without logging it as an unhandled error.
        from firebase_functions.https_fn import FunctionsErrorCode, HttpsError

        raise HttpsError(FunctionsErrorCode.UNAVAILABLE, "the delivery's next attempt is not due yet") from None


def path_segments(path: str, function_name: str, max_depth: int) -> list[str]:
    """The path segments after the function's own name (all of them when deployed, where the function sees only
    what follows it); more than `max_depth` name nothing: 404."""
    segments = [segment for segment in path.split("/") if segment]
    if function_name in segments:
        segments = segments[len(segments) - segments[::-1].index(function_name) :]
    if len(segments) > max_depth:
        raise errors.NotFound("not_found", "no such resource")
    return segments


def _allow(call: Call, methods: tuple[str, ...]) -> None:
    if call.method not in methods:
        raise errors.MethodNotAllowed(methods)
