"""The calls a developer makes: `gateway.credentials` (developer_credentials), `gateway.payments` (stk_push,
payment_status) and `gateway.api_keys` (api_keys). Each builds one request for `Gateway.request` and turns the
answer into a model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from mpesa_gateway import errors
from mpesa_gateway.models import ApiKey, Credentials, Page, Payment

if TYPE_CHECKING:
    from mpesa_gateway.client import Gateway

Environment = Literal["sandbox", "production"]
TransactionType = Literal["CustomerPayBillOnline", "CustomerBuyGoodsOnline"]

DEFAULT_WAIT_TIMEOUT = 60.0
DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_MAX_POLL_INTERVAL = 5.0
POLL_BACKOFF_FACTOR = 1.5


def _require_text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


class CredentialsResource:
    """The developer's Daraja apps, one per environment (a sandbox set and a production set side by side). The
    gateway stores each secret and passkey in Secret Manager and only ever answers a masked view."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def set(
        self,
        *,
        environment: Environment,
        consumer_key: str,
        consumer_secret: str,
        shortcode: str,
        passkey: str,
        transaction_type: TransactionType = "CustomerPayBillOnline",
        party_b: str | None = None,
    ) -> Credentials:
        """Store (or replace) this environment's credentials; the other environment's set stays. The gateway first
        proves them by minting a Daraja token, so rejected keys raise InvalidRequestError (422,
        daraja_credentials_rejected). Every instance of the gateway uses the new keys from the next push on."""
        body: dict[str, Any] = {
            "environment": environment,
            "consumer_key": consumer_key,
            "consumer_secret": consumer_secret,
            "shortcode": shortcode,
            "passkey": passkey,
            "transaction_type": transaction_type,
        }
        if party_b is not None:
            body["party_b"] = party_b
        answer = self._gateway.request("PUT", "developer_credentials", json_body=body)
        return Credentials.from_api(answer.body)

    def get(self, environment: Environment | None = None) -> Credentials:
        """One environment's masked view. Without `environment`: the set a push that names none uses (the only one
        stored, or sandbox when both are). NotFoundError (credentials_not_configured) when there is none."""
        if environment is not None:
            answer = self._gateway.request("GET", "developer_credentials", params={"environment": environment})
            return Credentials.from_api(answer.body)
        stored = self.list()
        if not stored:
            # None stored: the gateway's own 404 (credentials_not_configured, with its request id) is the answer.
            return self.get("sandbox")
        return next((c for c in stored if c.environment == "sandbox"), stored[0])

    def list(self) -> list[Credentials]:
        """Every environment's masked view, sandbox first; an empty list when none are stored."""
        body = self._gateway.request("GET", "developer_credentials").body
        if body.get("object") != "list":
            return [Credentials.from_api(body)]  # a gateway from before per-environment sets answers one object
        return _credential_sets(body)

    def delete(self, environment: Environment | None = None) -> bool:
        """Forget one environment's credentials, or both when `environment` is None (an API key: its own
        environment's); True when there were some to delete."""
        params: dict[str, str | int | None] = {"environment": environment}
        return bool(self._gateway.request("DELETE", "developer_credentials", params=params).body.get("deleted"))


def _credential_sets(body: Mapping[str, Any]) -> list[Credentials]:
    data = body.get("data")
    return [Credentials.from_api(item) for item in data if isinstance(item, Mapping)] if isinstance(data, list) else []


class ApiKeysResource:
    """Secret API keys for servers (`mpg_test_…` for sandbox, `mpg_live_…` for production). Managing keys needs a
    Gateway signed in with a Firebase ID token: a Gateway built with an API key gets PermissionDeniedError
    (api_key_not_allowed)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def create(self, name: str, environment: Environment) -> ApiKey:
        """A new key; `key.key` holds the secret, shown this once (the gateway keeps only its SHA-256)."""
        _require_text(name, "name")
        answer = self._gateway.request("POST", "api_keys", json_body={"name": name, "environment": environment})
        return ApiKey.from_api(answer.body)

    def list(self) -> list[ApiKey]:
        """Every key of the developer, newest first, revoked ones included (never the secrets)."""
        items = self._gateway.request("GET", "api_keys").body.get("data")
        return [ApiKey.from_api(item) for item in items] if isinstance(items, list) else []

    def get(self, id: str) -> ApiKey:  # noqa: A002 - the API's parameter name
        return ApiKey.from_api(self._gateway.request("GET", f"api_keys/{_key_id(id)}").body)

    def revoke(self, id: str) -> ApiKey:  # noqa: A002 - the API's parameter name
        """Revoke a key: every gateway instance refuses it within 5 seconds. Revoking it again is harmless."""
        return ApiKey.from_api(self._gateway.request("DELETE", f"api_keys/{_key_id(id)}").body)


def _key_id(value: object) -> str:
    text = _require_text(value, "id")
    if not text.startswith("key_") or not text[4:].isalnum():
        raise ValueError("id must be an API key id such as key_0123456789ABCDEFabcdefgh")
    return text


class PaymentsResource:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def create(
        self,
        phone: str,
        amount: int,
        account_reference: str,
        description: str,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        environment: Environment | None = None,
    ) -> Payment:
        """Send an STK Push prompt to `phone`; returns the pending payment.

        `environment` picks the credential set to push with. Left out, the gateway uses an API key's own
        environment, else the only set stored, else sandbox: a push never moves real money unless it asks to. A
        test key asked for production (or a live key for sandbox) raises PermissionDeniedError
        (environment_mismatch).

        Daraja's acceptance answers 201. When Daraja's answer never came the gateway answers 202: the payment is
        returned all the same, `pending` with `payment.outcome_unknown` true and no `checkout_request_id` yet. The
        payer may have been prompted, so treat it as created and `wait()` for it: its callback settles it, or it ends
        `unconfirmed`.

        One Idempotency-Key (a uuid4 unless you pass your own, e.g. your order id) is made per call and sent on
        every retry, so a lost answer never prompts the payer twice. Whatever this raises carries that key in
        `error.idempotency_key`: to try again, pass it back as `idempotency_key`, never let a new one be made.
        """
        body: dict[str, Any] = {
            "phone": phone,
            "amount": amount,
            "account_reference": account_reference,
            "description": description,
        }
        if metadata is not None:
            body["metadata"] = dict(metadata)
        if environment is not None:
            body["environment"] = environment
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        try:
            answer = self._gateway.request("POST", "stk_push", json_body=body, idempotency_key=key)
        except errors.GatewayError as error:
            error.idempotency_key = key
            raise
        return Payment.from_api(answer.body)

    def get(self, id: str) -> Payment:  # noqa: A002 - the API's parameter name
        """One payment by its id. Reading a payment pending for a while makes the gateway ask Daraja about it."""
        _require_text(id, "id")
        return Payment.from_api(self._gateway.request("GET", "payment_status", params={"id": id}).body)

    def get_by_checkout_request_id(self, checkout_request_id: str) -> Payment:
        _require_text(checkout_request_id, "checkout_request_id")
        answer = self._gateway.request("GET", "payment_status", params={"checkout_request_id": checkout_request_id})
        return Payment.from_api(answer.body)

    def list_page(
        self,
        status: str | None = None,
        limit: int = 20,
        page_token: str | None = None,
        environment: Environment | None = None,
    ) -> Page:
        """One page, newest first. `limit` is the page size (1..100); `environment` keeps one environment's
        payments (an API key only ever sees its own)."""
        params: dict[str, str | int | None] = {
            "status": status,
            "limit": limit,
            "page_token": page_token,
            "environment": environment,
        }
        return Page.from_api(self._gateway.request("GET", "payment_status", params=params).body)

    def list(
        self, status: str | None = None, limit: int = 20, environment: Environment | None = None
    ) -> Iterator[Payment]:
        """Every payment, newest first, fetching the next page only when the loop needs it.

        `limit` is the page size, not a cap on the total: `break` to stop early.
        """
        page_token: str | None = None
        while True:
            page = self.list_page(status=status, limit=limit, page_token=page_token, environment=environment)
            yield from page.data
            if not page.has_more or not page.next_page_token:
                return
            page_token = page.next_page_token

    def wait(
        self,
        id: str,  # noqa: A002 - as in get()
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
    ) -> Payment:
        """Poll until the payment leaves `pending` (any terminal status, `unconfirmed` included); pauses grow 1.5x up
        to `max_poll_interval`. Works the same for a payment whose push outcome is unknown (a 202 from `create`).

        Raises WaitTimeout (with the last payment read) when `timeout` seconds pass first.
        """
        _require_text(id, "id")
        clock = self._gateway._clock
        sleep = self._gateway._sleep
        deadline = clock() + timeout
        interval = poll_interval
        while True:
            payment = self.get(id)
            # Every terminal status ends the wait, `unconfirmed` included (and any status newer than this SDK).
            if payment.status != "pending":
                return payment
            remaining = deadline - clock()
            if remaining <= 0:
                raise errors.WaitTimeout(f"payment {id} was still pending after {timeout:g} s", payment)
            sleep(min(interval, remaining))
            interval = min(max_poll_interval, interval * POLL_BACKOFF_FACTOR)
