"""mpesa-gateway's Cloud Functions. This file only declares them; gateway/ does the work.

Deploy discovery imports this module, so nothing here touches the network or builds a client: those are created
lazily, once per instance, on the first request (gateway/container.py).
"""

from typing import TYPE_CHECKING, Any

from firebase_functions import https_fn, options, scheduler_fn, tasks_fn

from gateway import api
from gateway.triggers import on_document_created

if TYPE_CHECKING:
    from firebase_functions import firestore_fn

options.set_global_options(region="us-central1", max_instances=20)

# Bearer tokens, not cookies, carry identity, so any origin may call these from a browser.
_CORS = options.CorsOptions(cors_origins="*", cors_methods=["get", "post", "put", "delete", "options"])


@https_fn.on_request(cors=_CORS)
def developer_credentials(req: https_fn.Request) -> https_fn.Response:
    """GET / PUT / DELETE the calling developer's Daraja credentials."""
    return api.developer_credentials(req)


@https_fn.on_request(cors=_CORS)
def stk_push(req: https_fn.Request) -> https_fn.Response:
    """POST: prompt a payer with an M-Pesa STK push and record the pending payment."""
    return api.stk_push(req)


@https_fn.on_request(cors=_CORS)
def payment_status(req: https_fn.Request) -> https_fn.Response:
    """GET one payment (?id= or ?checkout_request_id=) or a page of the caller's payments."""
    return api.payment_status(req)


@https_fn.on_request(cors=_CORS)
def api_keys(req: https_fn.Request) -> https_fn.Response:
    """POST / GET / DELETE /{id}: the caller's secret API keys for servers (Firebase ID token only)."""
    return api.api_keys(req)


@https_fn.on_request()
def mpesa_callback(req: https_fn.Request) -> https_fn.Response:
    """POST from Safaricom: settle a payment exactly once."""
    return api.mpesa_callback(req)


@scheduler_fn.on_schedule(schedule="every 5 minutes")
def reconcile_payments(event: scheduler_fn.ScheduledEvent) -> None:
    """Settle payments whose callback never came, through STK Push Query."""
    api.reconcile_payments()


# A run fans out up to webhook_sweep_max_events (2,000), each a read, a task per endpoint and a commit: more than the
# 60 s default allows in production; 240 s still ends before the next run starts.
@scheduler_fn.on_schedule(schedule="every 5 minutes", timeout_sec=240)
def sweep_webhook_events(event: scheduler_fn.ScheduledEvent) -> None:
    """Fan out events whose Firestore trigger failed or never ran (the platform does not retry triggers)."""
    api.sweep_webhook_events()


_CORS_WITH_PATCH = options.CorsOptions(cors_origins="*", cors_methods=["get", "post", "patch", "delete", "options"])


@https_fn.on_request(cors=_CORS_WITH_PATCH)
def webhook_endpoints(req: https_fn.Request) -> https_fn.Response:
    """Register, list, change, delete webhook endpoints and rotate their signing secrets."""
    return api.webhook_endpoints(req)


@https_fn.on_request(cors=_CORS)
def events(req: https_fn.Request) -> https_fn.Response:
    """GET the caller's events, one event, its delivery log; POST /events/{id}/redeliver."""
    return api.events(req)


# Declared like firestore_fn.on_document_created, which would import gRPC into every function's cold start.
@on_document_created(document="developers/{uid}/events/{eventId}")
def on_event_created(event: "firestore_fn.Event[firestore_fn.DocumentSnapshot | None]") -> None:
    """A payment commit wrote an event: queue its delivery to each of the developer's endpoints."""
    api.fan_out_event(event.params["uid"], event.params["eventId"])


# One task per delivery attempt. A failed attempt enqueues its own next one on the Standard Webhooks schedule; the
# queue's retries only cover an instance that died mid-attempt or a task that arrived before its time (the Tasks
# emulator ignores schedule times: there an early task is retried at most a minute apart until it is due).
@tasks_fn.on_task_dispatched(
    retry_config=options.RetryConfig(max_attempts=100, min_backoff_seconds=1, max_backoff_seconds=60, max_doublings=6),
    rate_limits=options.RateLimits(max_concurrent_dispatches=100),
)
def webhookdelivery(req: tasks_fn.CallableRequest[Any]) -> None:
    """Attempt one webhook delivery (an event to one endpoint). The name has no "_": task queue ids cannot."""
    api.deliver_webhook(req.data)
