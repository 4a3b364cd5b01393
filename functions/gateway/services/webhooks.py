"""Webhooks: the endpoints a developer registers, the events API, and delivery of each event to each endpoint.

    payment commit ──(same commit)──> developers/{uid}/events/{evt}        (services.common.save_payment)
        └─ Firestore trigger (on_event_created) ── fan_out: one delivery document + one task per endpoint
           (or, if that trigger failed or never ran, sweep_webhook_events ── sweep ── the same fan_out)
              └─ Cloud Tasks (webhookdelivery) ── attempt: claim (lease), sign, POST, record, schedule the next

Nothing here runs in the instance that settled the payment: the trigger and the queue are the platform's, so a
delivery survives that instance dying right after its commit. Every attempt is recorded in the delivery document
(the delivery log); an attempt that fails schedules the next one on the Standard Webhooks schedule
(gateway.domain.webhooks), as a new task, and a task that arrives early is retried by the queue.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from gateway import errors
from gateway.delivery_queue import DeliveryQueue
from gateway.domain.errors import ValidationError
from gateway.domain.events import EVENT_TYPES, parse_event_types, subscribed
from gateway.domain.fan_out import first_attempt_task_id, is_fanned_out, needs_sweep, sweep_cutoff
from gateway.domain.validation import parse_environment
from gateway.domain.webhooks import (
    Attempt,
    Delivery,
    WebhookEndpoint,
    parse_description,
    parse_endpoint_url,
    requested_wait,
    verdict_for,
)
from gateway.http import Developer
from gateway.logs import Event, log_event
from gateway.repository import Versioned, WriteConflict, retry_on_conflict, utcnow
from gateway.services.common import resolve_environment
from gateway.services.payments import parse_limit
from gateway.settings import Settings
from gateway.views import iso
from gateway.webhook_secrets import WebhookSecrets
from gateway.webhook_store import EndpointLimitReached, WebhookStore
from gateway.webhook_transport import AttemptResult, WebhookTransport

_LEASE_MARGIN_S = 30.0
# A first-attempt task is queued just before the commit that creates its delivery; one that arrives first waits up
# to this long for that commit before the queue retries it.
_FAN_OUT_COMMIT_WAIT_S = 2.0
USER_AGENT = "mpesa-gateway-webhooks/1"


@dataclass(frozen=True)
class FanOut:
    outcome: str  # "fanned_out" by this run, "already" by another, or "missing" (no such event)
    queued: int


class NotDue(Exception):
    """The delivery's next attempt is not due yet (or another worker holds it): the queue should retry later."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"not due for {wait_s:.1f}s")
        self.wait_s = wait_s


def _object(body: object, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.InvalidRequest("invalid_body", "request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise errors.InvalidRequest("unknown_parameter", f"unknown parameter {unknown[0]!r}", str(unknown[0])[:64])
    return body


class WebhookEndpoints:
    def __init__(
        self, settings: Settings, store: WebhookStore, secrets_: WebhookSecrets, now: Callable[[], datetime]
    ) -> None:
        self._settings = settings
        self._store = store
        self._secrets = secrets_
        self._now = now

    def _url(self, raw: object) -> str:
        return parse_endpoint_url(raw, allow_local=self._settings.local_stack_trusted).url

    def create(self, developer: Developer, body: object) -> tuple[WebhookEndpoint, str]:
        fields = _object(body, {"url", "enabled_events", "description", "environment"})
        url = self._url(fields.get("url"))
        # A key's endpoint is bound to the key's environment; an ID token may pick one or take both (None).
        environment = resolve_environment(parse_environment(fields.get("environment")), developer)
        enabled = parse_event_types(fields.get("enabled_events", ["*"]), "enabled_events")
        description = parse_description(fields.get("description"))
        limit = self._settings.webhook_max_endpoints
        if self._store.count_endpoints(developer.uid) >= limit:
            raise _limit_reached(limit)
        endpoint_id = "we_" + secrets.token_hex(12)
        version, secret = self._secrets.create(developer.uid, endpoint_id)
        now = self._now()
        endpoint = WebhookEndpoint(
            id=endpoint_id,
            url=url,
            description=description,
            enabled_events=enabled,
            status="enabled",
            created_at=now,
            updated_at=now,
            secret_version=version,
            environment=environment,
        )
        try:
            self._store.create_endpoint(developer.uid, endpoint, limit)
        except EndpointLimitReached:
            self._secrets.destroy(developer.uid, endpoint_id)
            raise _limit_reached(limit) from None
        log_event(Event.WEBHOOK_ENDPOINT_CHANGED, uid=developer.uid, endpoint_id=endpoint_id, change="created")
        return endpoint, secret

    def all(self, developer: Developer) -> list[WebhookEndpoint]:
        endpoints = [loaded.value for loaded in self._store.list_endpoints(developer.uid)]
        return [endpoint for endpoint in endpoints if endpoint.visible_to(developer.environment)]

    def get(self, developer: Developer, endpoint_id: str) -> WebhookEndpoint:
        return self._load(developer, endpoint_id).value

    def _load(self, developer: Developer, endpoint_id: str) -> Versioned[WebhookEndpoint]:
        loaded = self._store.load_endpoint(developer.uid, endpoint_id)
        if loaded is None or not loaded.value.visible_to(developer.environment):
            raise errors.NotFound("webhook_endpoint_not_found", "no such webhook endpoint", "id")
        return loaded

    def update(self, developer: Developer, endpoint_id: str, body: object) -> WebhookEndpoint:
        fields = _object(body, {"url", "enabled_events", "description", "status"})
        changes: dict[str, Any] = {}
        if "url" in fields:
            changes["url"] = self._url(fields["url"])
        if "enabled_events" in fields:
            changes["enabled_events"] = parse_event_types(fields["enabled_events"], "enabled_events")
        if "description" in fields:
            changes["description"] = parse_description(fields["description"])
        if "status" in fields:
            if fields["status"] not in ("enabled", "disabled"):
                raise errors.InvalidRequest("invalid_status", "status must be enabled or disabled", "status")
            changes["status"] = fields["status"]

        def attempt() -> WebhookEndpoint:
            loaded = self._load(developer, endpoint_id)
            current = loaded.value
            after = replace(current, **changes, updated_at=self._now())
            if changes.get("status") == "enabled" and current.status == "disabled":
                after = replace(after, disabled_reason=None, failing_since=None)
            elif changes.get("status") == "disabled" and current.status == "enabled":
                after = replace(after, disabled_reason="developer")
            self._store.save_endpoint(developer.uid, after, loaded.version)
            return after

        updated = retry_on_conflict(attempt)
        log_event(Event.WEBHOOK_ENDPOINT_CHANGED, uid=developer.uid, endpoint_id=endpoint_id, change="updated")
        return updated

    def delete(self, developer: Developer, endpoint_id: str) -> None:
        self._load(developer, endpoint_id)
        # The document first: deliveries in flight find no endpoint and stop; then the secret cannot sign again.
        self._store.delete_endpoint(developer.uid, endpoint_id)
        self._secrets.destroy(developer.uid, endpoint_id)
        log_event(Event.WEBHOOK_ENDPOINT_CHANGED, uid=developer.uid, endpoint_id=endpoint_id, change="deleted")

    def rotate(self, developer: Developer, endpoint_id: str) -> tuple[WebhookEndpoint, str]:
        """A new secret signs from now on; the old one keeps signing too for the overlap, then its version goes."""
        loaded = self._load(developer, endpoint_id)
        version, secret = self._secrets.create(developer.uid, endpoint_id)
        now = self._now()
        dropped = loaded.value.previous_secret_version
        rotated = loaded.value.rotated(version, now, self._settings.webhook_rotation_overlap_s)
        try:
            self._store.save_endpoint(developer.uid, rotated, loaded.version)
        except WriteConflict:
            self._secrets.destroy_version(developer.uid, endpoint_id, version)
            raise errors.IdempotencyConflict(
                "endpoint_changed", "the endpoint changed meanwhile; retry the rotation", retry_after_s=1
            ) from None
        if dropped is not None:
            # Only two versions ever sign: a rotation during an overlap ends the oldest one at once.
            self._secrets.destroy_version(developer.uid, endpoint_id, dropped)
        log_event(Event.WEBHOOK_ENDPOINT_CHANGED, uid=developer.uid, endpoint_id=endpoint_id, change="rotated")
        return rotated, secret


def _environment_of(event: dict[str, Any]) -> str | None:
    environment = event.get("environment") or (event.get("data") or {}).get("environment")
    return environment if isinstance(environment, str) else None


def _limit_reached(limit: int) -> errors.GatewayError:
    return errors.Unprocessable(
        "webhook_endpoint_limit", f"a developer may have at most {limit} webhook endpoints", "url"
    )


class Events:
    def __init__(self, store: WebhookStore, queue: DeliveryQueue, now: Callable[[], datetime]) -> None:
        self._store = store
        self._queue = queue
        self._now = now

    def page(
        self, developer: Developer, event_type: str | None, limit_raw: str | None, page_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        if event_type is not None and event_type not in EVENT_TYPES:
            raise errors.InvalidRequest("invalid_type", f"type must be one of {', '.join(sorted(EVENT_TYPES))}", "type")
        # An API key acts in one environment: it sees that environment's events only, as with payments.
        return self._store.list_events(
            developer.uid, event_type, developer.environment, parse_limit(limit_raw), page_token or None
        )

    def get(self, developer: Developer, event_id: str) -> dict[str, Any]:
        event = self._store.load_event(developer.uid, event_id)
        if event is None or (developer.environment is not None and _environment_of(event) != developer.environment):
            raise errors.NotFound("event_not_found", "no such event", "id")
        return event

    def deliveries(self, developer: Developer, event_id: str) -> list[Delivery]:
        self.get(developer, event_id)
        return self._store.list_deliveries(developer.uid, event_id)

    def redeliver(self, developer: Developer, event_id: str, endpoint_id: str | None) -> list[str]:
        """Send the event again, to one endpoint or to every enabled endpoint subscribed to its type."""
        event = self.get(developer, event_id)
        if endpoint_id is not None:
            loaded = self._store.load_endpoint(developer.uid, endpoint_id)
            if loaded is None or not loaded.value.visible_to(developer.environment):
                raise errors.NotFound("webhook_endpoint_not_found", "no such webhook endpoint", "endpoint_id")
            if loaded.value.status != "enabled":
                raise errors.Unprocessable(
                    "webhook_endpoint_disabled", "enable the endpoint before sending events to it", "endpoint_id"
                )
            if not loaded.value.receives(event["type"], _environment_of(event)):
                raise errors.Unprocessable(
                    "webhook_endpoint_not_subscribed",
                    "this endpoint does not receive events of this type or environment",
                    "endpoint_id",
                )
            targets = [loaded.value]
        else:
            targets = [
                loaded.value
                for loaded in self._store.list_endpoints(developer.uid)
                if loaded.value.receives(event["type"], _environment_of(event))
            ]
        for endpoint in targets:
            self._reset(developer.uid, event, endpoint.id)
            self._queue.enqueue(developer.uid, event_id, endpoint.id, 0)
        return [endpoint.id for endpoint in targets]

    def _reset(self, uid: str, event: dict[str, Any], endpoint_id: str) -> None:
        def attempt() -> None:
            now = self._now()
            loaded = self._store.load_delivery(uid, event["id"], endpoint_id)
            if loaded is None:
                fresh = replace(Delivery.first(event["id"], endpoint_id, event["type"], now), trigger="manual")
                self._store.save_delivery(uid, fresh, None)
            else:
                self._store.save_delivery(uid, loaded.value.resent(now), loaded.version)

        retry_on_conflict(attempt)


class Deliveries:
    def __init__(
        self,
        settings: Settings,
        store: WebhookStore,
        secrets_: WebhookSecrets,
        transport: WebhookTransport,
        queue: DeliveryQueue,
        now: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._store = store
        self._secrets = secrets_
        self._transport = transport
        self._queue = queue
        self._now = now
        self._sleep = sleep

    # ------------------------------------------------------------------------------------------------ fan out
    def fan_out(self, uid: str, event_id: str) -> int:
        """One delivery per enabled, subscribed endpoint, each with its first task; returns how many were queued.
        Run by the Firestore trigger, and by the sweep for an event the trigger never finished."""
        return self._fan_out(uid, event_id, "trigger").queued

    def _enabled_endpoints(self, uid: str) -> list[WebhookEndpoint]:
        return [loaded.value for loaded in self._store.list_endpoints(uid) if loaded.value.status == "enabled"]

    def _fan_out(self, uid: str, event_id: str, source: str, endpoints: list[WebhookEndpoint] | None = None) -> FanOut:
        """Safe to run twice for one event, even at once (a trigger and the sweep may race):

        - the deliveries are created and the event marked `fanned_out` in one commit, conditional on the event being
          unchanged since it was read, so of two runs one commits and the other, reloading, finds it marked;
        - each endpoint's first task is named after the event and the endpoint, so the queue keeps one of two;
        - the tasks are queued *before* that commit: if this run dies or its queueing fails, the event stays
          unmarked and the sweep runs it again (the reverse order could mark an event whose tasks never got queued).
          A task that arrives before its delivery exists waits for the commit (`attempt`).
        """
        if endpoints is None:
            endpoints = self._enabled_endpoints(uid)
        if not endpoints:
            # Most developers have no endpoint: one read, and one write that keeps the event out of the sweep.
            marked = self._store.mark_fanned_out(uid, event_id, self._now())
            return FanOut("fanned_out" if marked else "missing", 0)
        lost_once: list[bool] = []

        def attempt() -> FanOut:
            loaded = self._store.load_event_versioned(uid, event_id)
            if loaded is None:
                return FanOut("missing", 0)
            event = loaded.value
            if is_fanned_out(event):
                return FanOut("already", 0)
            targets = [e for e in endpoints if e.receives(event["type"], _environment_of(event))]
            # A delivery can already exist only if a redelivery or an earlier fan-out made it: read them only after
            # a lost commit, never on the usual path.
            existing = {d.endpoint_id: d for d in self._store.list_deliveries(uid, event_id)} if lost_once else {}
            now = self._now()
            created_at = event.get("created_at")
            for endpoint in targets:
                started = existing.get(endpoint.id)
                if started is None or not (started.attempts or started.finished):
                    task_id = first_attempt_task_id(
                        event_id, endpoint.id, created_at if isinstance(created_at, datetime) else None, now
                    )
                    self._queue.enqueue(uid, event_id, endpoint.id, 0, task_id=task_id)
            fresh = [Delivery.first(event_id, e.id, event["type"], now) for e in targets if e.id not in existing]
            try:
                self._store.commit_fan_out(uid, event_id, fresh, loaded.version, now)
            except WriteConflict:
                lost_once.append(True)
                raise
            return FanOut("fanned_out", len(targets))

        result = retry_on_conflict(attempt)
        if result.outcome == "fanned_out":
            log_event(Event.WEBHOOK_FANNED_OUT, uid=uid, event_id=event_id, endpoints=result.queued, source=source)
        return result

    def sweep(self) -> dict[str, int]:
        """Fan out, across developers, the events still not fanned out a grace period after they were written: their
        trigger failed or was dropped (Firestore triggers are not retried). Pages of the oldest first, at most
        `webhook_sweep_max_events` per run; one event that fails is counted and left for the next run.

        A developer's endpoints are read once per run. Events of developers with no enabled endpoint (most of them)
        only need their mark: a page's worth goes in one batched write instead of one fan-out each."""
        settings = self._settings
        now = self._now()
        grace_s = settings.webhook_fan_out_grace_s
        summary = {"examined": 0, "fanned_out": 0, "deliveries": 0, "already": 0, "missing": 0, "errors": 0}
        endpoints_of: dict[str, list[WebhookEndpoint]] = {}
        cursor: Any = None
        pages = 0
        while summary["examined"] < settings.webhook_sweep_max_events:
            limit = min(settings.webhook_sweep_page_size, settings.webhook_sweep_max_events - summary["examined"])
            page, cursor = self._store.events_to_sweep(sweep_cutoff(now, grace_s), limit, cursor)
            pages += 1
            nothing_to_deliver: list[tuple[str, str]] = []
            for uid, event_id, event in page:
                summary["examined"] += 1
                if not needs_sweep(event, now, grace_s):
                    summary["already"] += 1  # the query's answer is re-checked by the rule itself
                    continue
                try:
                    if uid not in endpoints_of:
                        endpoints_of[uid] = self._enabled_endpoints(uid)
                    if not endpoints_of[uid]:
                        nothing_to_deliver.append((uid, event_id))
                        continue
                    result = self._fan_out(uid, event_id, "sweep", endpoints_of[uid])
                except Exception as failure:  # noqa: BLE001 - one bad event must not stop the sweep
                    self._sweep_failed(summary, uid, event_id, failure)
                    continue
                summary[result.outcome] += 1
                summary["deliveries"] += result.queued
            self._mark_all(nothing_to_deliver, summary)
            if cursor is None:
                break
        more = int(cursor is not None)
        severity = "WARNING" if summary["fanned_out"] or summary["errors"] else "INFO"
        log_event(Event.WEBHOOK_SWEEP_RUN, severity, **dict[str, Any](summary), pages=pages, more=more, grace_s=grace_s)
        return {**summary, "pages": pages, "more": more}

    def _mark_all(self, events: list[tuple[str, str]], summary: dict[str, int]) -> None:
        if not events:
            return
        try:
            self._store.mark_all_fanned_out(events, self._now())
        except Exception:  # noqa: BLE001 - the batch failed as a whole: mark them one by one instead
            for uid, event_id in events:
                try:
                    marked = self._store.mark_fanned_out(uid, event_id, self._now())
                except Exception as failure:  # noqa: BLE001 - one bad event must not stop the sweep
                    self._sweep_failed(summary, uid, event_id, failure)
                    continue
                summary["fanned_out" if marked else "missing"] += 1
            return
        summary["fanned_out"] += len(events)

    @staticmethod
    def _sweep_failed(summary: dict[str, int], uid: str, event_id: str, failure: Exception) -> None:
        summary["errors"] += 1
        log_event(Event.WEBHOOK_SWEEP_RUN, "ERROR", uid=uid, event_id=event_id, exception=type(failure).__name__)

    # ------------------------------------------------------------------------------------------------ attempt
    def attempt(self, uid: str, event_id: str, endpoint_id: str) -> str:
        """Run the delivery's next attempt if it is due; returns the delivery's status afterwards. Raises NotDue
        when it is not due (or held by another worker) so the queue tries again later."""
        loaded = self._store.load_delivery(uid, event_id, endpoint_id)
        if loaded is None:
            loaded = self._await_fan_out(uid, event_id, endpoint_id)
        while loaded is not None and not loaded.value.finished:
            wait = self._wait_s(loaded.value)
            if wait <= 0:
                break
            if wait > self._settings.webhook_early_task_wait_s:
                raise NotDue(wait)
            self._sleep(wait)
            loaded = self._store.load_delivery(uid, event_id, endpoint_id)
        if loaded is None:
            return "missing"
        if loaded.value.finished:
            return loaded.value.status
        now = self._now()
        claimed = loaded.value.claim(now, self._settings.webhook_timeout_s + _LEASE_MARGIN_S)
        try:
            version = self._store.save_delivery(uid, claimed, loaded.version)
        except WriteConflict:
            raise NotDue(1.0) from None
        endpoint = self._store.load_endpoint(uid, endpoint_id)
        event = self._store.load_event(uid, event_id)
        if (
            endpoint is None
            or event is None
            or endpoint.value.status != "enabled"
            or (claimed.trigger == "automatic" and not subscribed(endpoint.value.enabled_events, event["type"]))
        ):
            self._store.save_delivery(uid, claimed.cancelled(self._now()), version)
            log_event(
                Event.WEBHOOK_DELIVERY_ENDED, uid=uid, event_id=event_id, endpoint_id=endpoint_id, status="cancelled"
            )
            return "cancelled"
        return self._send(uid, event, endpoint.value, claimed, version)

    def _await_fan_out(self, uid: str, event_id: str, endpoint_id: str) -> Versioned[Delivery] | None:
        """The delivery of a first-attempt task that arrived before its fan-out's commit: wait briefly for it. While
        the event is still not marked fanned out, NotDue makes the queue retry (a fan-out that died after queueing
        is finished by the sweep); once it is marked (or gone), a delivery still missing was never meant to be."""
        # Short pauses: the commit usually lands within milliseconds of the queueing, and a delivery found late by a
        # long pause is latency (the polls are reads of one document, at most ~25 in the whole wait).
        waited, pause = 0.0, 0.02
        while True:
            event = self._store.load_event(uid, event_id)
            if event is None or is_fanned_out(event):
                return self._store.load_delivery(uid, event_id, endpoint_id)
            if waited >= _FAN_OUT_COMMIT_WAIT_S:
                raise NotDue(1.0)
            self._sleep(pause)
            waited, pause = waited + pause, min(pause * 2, 0.1)
            loaded = self._store.load_delivery(uid, event_id, endpoint_id)
            if loaded is not None:
                return loaded

    def _wait_s(self, delivery: Delivery) -> float:
        now = self._now()
        wait = (delivery.next_attempt_at - now).total_seconds()
        if delivery.leased(now) and delivery.lease_until is not None:
            wait = max(wait, (delivery.lease_until - now).total_seconds())
        return wait

    def _send(self, uid: str, event: dict[str, Any], endpoint: WebhookEndpoint, claimed: Delivery, version: Any) -> str:
        started = self._now()
        body = json.dumps(
            {"type": event["type"], "timestamp": iso(event["created_at"]), "data": event["data"]},
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )
        signatures = [
            Webhook(self._secrets.get(uid, endpoint.id, version_id)).sign(event["id"], started, body)
            for version_id in endpoint.signing_versions(started)
        ]
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": event["id"],
            "webhook-timestamp": str(int(started.timestamp())),
            "webhook-signature": " ".join(signatures),
        }
        try:
            url = parse_endpoint_url(endpoint.url, allow_local=self._settings.local_stack_trusted)
        except ValidationError:
            # The rules tightened since it was registered (e.g. an http:// URL outside the local stack).
            result = AttemptResult(None, 0, error="url_not_allowed")
        else:
            result = self._transport.post(url, body.encode("utf-8"), headers)
        result_status, latency, excerpt, error = result.status, result.latency_ms, result.body_excerpt, result.error
        now = self._now()
        verdict = verdict_for(result_status)
        attempt = Attempt(
            at=started,
            endpoint_id=endpoint.id,
            url=endpoint.url,
            status_code=result_status,
            latency_ms=latency,
            response_excerpt=excerpt,
            error=error,
            trigger=claimed.trigger,
            signatures=len(signatures),
        )
        after = claimed.recorded(
            attempt,
            verdict,
            now,
            self._settings.webhook_retry_scale,
            requested_wait(result_status, result.retry_after, now),
        )
        try:
            self._store.save_delivery(uid, after, version)
        except WriteConflict:
            # A redelivery reset it while we were sending: its own task carries on from there.
            return "superseded"
        self._update_endpoint(uid, endpoint.id, verdict, now)
        log_event(
            Event.WEBHOOK_ATTEMPTED,
            "INFO" if verdict == "delivered" else "WARNING",
            uid=uid,
            event_id=event["id"],
            endpoint_id=endpoint.id,
            status_code=result_status,
            error=error,
            latency_ms=latency,
            attempt=len(after.attempts),
            outcome=after.status,
        )
        if after.status == "pending":
            delay = (after.next_attempt_at - now).total_seconds()
            self._queue.enqueue(uid, event["id"], endpoint.id, max(delay, 0.0))
        elif after.finished:
            log_event(
                Event.WEBHOOK_DELIVERY_ENDED,
                uid=uid,
                event_id=event["id"],
                endpoint_id=endpoint.id,
                status=after.status,
            )
        return after.status

    def _update_endpoint(self, uid: str, endpoint_id: str, verdict: str, now: datetime) -> None:
        disabled: list[str] = []

        def attempt() -> None:
            loaded = self._store.load_endpoint(uid, endpoint_id)
            if loaded is None:
                return
            current = loaded.value
            if verdict == "delivered":
                after = current.succeeded(now)
            elif verdict == "gone":
                after = current.gone(now)
            else:
                after = current.failed(now, self._settings.webhook_disable_after_s)
            if after == current:
                return
            self._store.save_endpoint(uid, after, loaded.version)
            if current.status == "enabled" and after.status == "disabled":
                disabled[:] = [after.disabled_reason or ""]

        retry_on_conflict(attempt)
        if disabled:
            log_event(Event.WEBHOOK_ENDPOINT_DISABLED, "WARNING", uid=uid, endpoint_id=endpoint_id, reason=disabled[0])


@dataclass(frozen=True)
class Webhooks:
    endpoints: WebhookEndpoints
    events: Events
    deliveries: Deliveries

    @classmethod
    def build(
        cls,
        settings: Settings,
        store: WebhookStore,
        secrets_: WebhookSecrets,
        transport: WebhookTransport,
        queue: DeliveryQueue,
        now: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Webhooks:
        return cls(
            endpoints=WebhookEndpoints(settings, store, secrets_, now),
            events=Events(store, queue, now),
            deliveries=Deliveries(settings, store, secrets_, transport, queue, now, sleep),
        )
