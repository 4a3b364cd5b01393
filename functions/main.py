"""mpesa-gateway's Cloud Functions. This file only declares them; gateway/ does the work.

Deploy discovery imports this module, so nothing here touches the network or builds a client: those are created
lazily, once per instance, on the first request (gateway/container.py).
"""

from firebase_functions import https_fn, options, scheduler_fn

from gateway import api

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
