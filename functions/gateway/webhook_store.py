"""Firestore adapter for webhooks: endpoints, the events the payment commits wrote, and the delivery log. No rule.

Layout (all server-only; firestore.rules denies clients by default):
    developers/{uid}/webhook_endpoints/{we_id}                 url, enabled_events, status, secret *versions*
    developers/{uid}/events/{evt_id}                           written by the payment commits (repository.AddEvent);
                                                               `fanned_out` set true with the event's deliveries
    developers/{uid}/events/{evt_id}/deliveries/{we_id}        one event to one endpoint: state and every attempt
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway import errors
from gateway.domain.fan_out import FANNED_OUT, FANNED_OUT_AT
from gateway.domain.webhooks import Attempt, Delivery, WebhookEndpoint
from gateway.firestore_client import (
    FirestoreAdapter,
    decode_page_token,
    encode_page_token,
    usable_document_id,
    utc,
    utc_or_none,
)
from gateway.repository import Versioned, WriteConflict


class EndpointLimitReached(Exception):
    pass


# ------------------------------------------------------------------------------------------------ mapping
def endpoint_to_document(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "enabled_events": list(endpoint.enabled_events),
        "status": endpoint.status,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
        "secret_version": endpoint.secret_version,
        "previous_secret_version": endpoint.previous_secret_version,
        "previous_secret_expires_at": endpoint.previous_secret_expires_at,
        "failing_since": endpoint.failing_since,
        "environment": endpoint.environment,
    }


def endpoint_from_document(data: Mapping[str, Any]) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=data["id"],
        url=data["url"],
        description=data.get("description") or "",
        enabled_events=tuple(data.get("enabled_events") or ("*",)),
        status="disabled" if data.get("status") == "disabled" else "enabled",
        disabled_reason=data.get("disabled_reason"),
        created_at=utc(data["created_at"]),
        updated_at=utc(data.get("updated_at") or data["created_at"]),
        secret_version=str(data["secret_version"]),
        previous_secret_version=data.get("previous_secret_version"),
        previous_secret_expires_at=utc_or_none(data.get("previous_secret_expires_at")),
        failing_since=utc_or_none(data.get("failing_since")),
        environment=data.get("environment") if data.get("environment") in ("sandbox", "production") else None,
    )


def delivery_to_document(delivery: Delivery) -> dict[str, Any]:
    return {
        "event_id": delivery.event_id,
        "endpoint_id": delivery.endpoint_id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "created_at": delivery.created_at,
        "updated_at": delivery.updated_at,
        "next_attempt_at": delivery.next_attempt_at,
        "failures": delivery.failures,
        "lease_until": delivery.lease_until,
        "trigger": delivery.trigger,
        "attempts": [
            {
                "at": a.at,
                "endpoint_id": a.endpoint_id,
                "url": a.url,
                "status_code": a.status_code,
                "latency_ms": a.latency_ms,
                "response_excerpt": a.response_excerpt,
                "error": a.error,
                "trigger": a.trigger,
                "signatures": a.signatures,
            }
            for a in delivery.attempts
        ],
    }


def delivery_from_document(data: Mapping[str, Any]) -> Delivery:
    return Delivery(
        event_id=data["event_id"],
        endpoint_id=data["endpoint_id"],
        event_type=data.get("event_type") or "",
        status=data["status"],
        created_at=utc(data["created_at"]),
        updated_at=utc(data.get("updated_at") or data["created_at"]),
        next_attempt_at=utc(data["next_attempt_at"]),
        failures=int(data.get("failures") or 0),
        lease_until=utc_or_none(data.get("lease_until")),
        trigger=data.get("trigger") or "automatic",
        attempts=tuple(
            Attempt(
                at=utc(a["at"]),
                endpoint_id=a.get("endpoint_id") or data["endpoint_id"],
                url=a.get("url") or "",
                status_code=a.get("status_code"),
                latency_ms=int(a.get("latency_ms") or 0),
                response_excerpt=a.get("response_excerpt") or "",
                error=a.get("error"),
                trigger=a.get("trigger") or "automatic",
                signatures=int(a.get("signatures") or 1),
            )
            for a in data.get("attempts") or ()
        ),
    )


# ------------------------------------------------------------------------------------------------ adapter
class WebhookStore(FirestoreAdapter):
    def _developer(self, uid: str) -> Any:
        return self.client.collection("developers").document(uid)

    def _endpoints(self, uid: str) -> Any:
        return self._developer(uid).collection("webhook_endpoints")

    def _event(self, uid: str, event_id: str) -> Any:
        return self._developer(uid).collection("events").document(event_id)

    def _delivery(self, uid: str, event_id: str, endpoint_id: str) -> Any:
        return self._event(uid, event_id).collection("deliveries").document(endpoint_id)

    # ------------------------------------------------------------------------------------------- endpoints
    def list_endpoints(self, uid: str) -> list[Versioned[WebhookEndpoint]]:
        docs = self._endpoints(uid).order_by("created_at").stream()
        return [Versioned(endpoint_from_document(doc.to_dict() or {}), doc.update_time) for doc in docs]

    def count_endpoints(self, uid: str) -> int:
        return len(list(self._endpoints(uid).select([]).stream()))

    def load_endpoint(self, uid: str, endpoint_id: str) -> Versioned[WebhookEndpoint] | None:
        if not usable_document_id(endpoint_id):
            return None
        snapshot = self._endpoints(uid).document(endpoint_id).get()
        if not snapshot.exists:
            return None
        return Versioned(endpoint_from_document(snapshot.to_dict() or {}), snapshot.update_time)

    def create_endpoint(self, uid: str, endpoint: WebhookEndpoint, max_endpoints: int) -> None:
        """Create it unless the developer already has `max_endpoints` (counted inside a transaction)."""
        from google.cloud import firestore

        collection = self._endpoints(uid)

        @firestore.transactional
        def create(transaction: Any) -> None:
            existing = list(transaction.get(collection.select([]).limit(max_endpoints)))
            if len(existing) >= max_endpoints:
                raise EndpointLimitReached()
            transaction.create(collection.document(endpoint.id), endpoint_to_document(endpoint))

        create(self.client.transaction())

    def save_endpoint(self, uid: str, endpoint: WebhookEndpoint, version: Any) -> Any:
        from google.api_core import exceptions as api_exceptions

        ref = self._endpoints(uid).document(endpoint.id)
        try:
            result = ref.update(
                endpoint_to_document(endpoint), option=self.client.write_option(last_update_time=version)
            )
        except (api_exceptions.FailedPrecondition, api_exceptions.NotFound, api_exceptions.Conflict) as lost:
            raise WriteConflict(type(lost).__name__) from None
        return result.update_time

    def delete_endpoint(self, uid: str, endpoint_id: str) -> None:
        self._endpoints(uid).document(endpoint_id).delete()

    # ---------------------------------------------------------------------------------------------- events
    def load_event(self, uid: str, event_id: str) -> dict[str, Any] | None:
        if not usable_document_id(event_id):
            return None
        snapshot = self._event(uid, event_id).get()
        return (snapshot.to_dict() or {}) if snapshot.exists else None

    def load_event_versioned(self, uid: str, event_id: str) -> Versioned[dict[str, Any]] | None:
        if not usable_document_id(event_id):
            return None
        snapshot = self._event(uid, event_id).get()
        return Versioned(snapshot.to_dict() or {}, snapshot.update_time) if snapshot.exists else None

    def commit_fan_out(self, uid: str, event_id: str, deliveries: list[Delivery], version: Any, now: Any) -> None:
        """Create the event's delivery documents and mark it fanned out, in one commit, only if the event is still
        as loaded at `version`. WriteConflict when another fan-out got there first (the event changed, or one of
        the deliveries already exists)."""
        from google.api_core import exceptions as api_exceptions

        batch = self.client.batch()
        for delivery in deliveries:
            batch.create(self._delivery(uid, event_id, delivery.endpoint_id), delivery_to_document(delivery))
        batch.update(
            self._event(uid, event_id),
            {FANNED_OUT: True, FANNED_OUT_AT: now},
            option=self.client.write_option(last_update_time=version),
        )
        try:
            batch.commit()
        except (api_exceptions.FailedPrecondition, api_exceptions.NotFound, api_exceptions.Conflict) as lost:
            raise WriteConflict(type(lost).__name__) from None

    def mark_fanned_out(self, uid: str, event_id: str, now: Any) -> bool:
        """Mark an event fanned out without reading it (nothing to deliver). False if it does not exist."""
        from google.api_core import exceptions as api_exceptions

        try:
            self._event(uid, event_id).update({FANNED_OUT: True, FANNED_OUT_AT: now})
        except api_exceptions.NotFound:
            return False
        return True

    def mark_all_fanned_out(self, events: list[tuple[str, str]], now: Any) -> None:
        """Mark many (uid, event id) fanned out, in batches of Firestore's 500 writes; all of a batch or none."""
        for start in range(0, len(events), 500):
            batch = self.client.batch()
            for uid, event_id in events[start : start + 500]:
                batch.update(self._event(uid, event_id), {FANNED_OUT: True, FANNED_OUT_AT: now})
            batch.commit()

    def events_to_sweep(
        self, cutoff: Any, limit: int, after: Any = None
    ) -> tuple[list[tuple[str, str, dict[str, Any]]], Any]:
        """One page, oldest first, of every developer's events not fanned out and created at or before `cutoff`
        (a collection-group query; firestore.indexes.json has its index). Returns (uid, event id, event) and the cursor
        for the next page (None after the last). Events without the flag (older than it) never match."""
        from google.cloud import firestore

        query = (
            self.client.collection_group("events")
            .where(filter=firestore.FieldFilter(FANNED_OUT, "==", False))
            .where(filter=firestore.FieldFilter("created_at", "<=", cutoff))
            .order_by("created_at")
        )
        if after is not None:
            query = query.start_after(after)
        documents = list(query.limit(limit).stream())
        # The uid comes from the path, developers/{uid}/events/{id}; a collection group spans every collection named
        # "events", so any other one is skipped rather than read as a tenant's (the cursor still moves past it).
        page = [
            (developer.id, doc.id, doc.to_dict() or {})
            for doc in documents
            if (developer := doc.reference.parent.parent) is not None
            and developer.parent.id == "developers"
            and developer.parent.parent is None
        ]
        return page, (documents[-1] if len(documents) == limit else None)

    def list_events(
        self, uid: str, event_type: str | None, environment: str | None, limit: int, page_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        from google.cloud import firestore

        query = self._developer(uid).collection("events")
        if environment is not None:
            query = query.where(filter=firestore.FieldFilter("environment", "==", environment))
        if event_type is not None:
            query = query.where(filter=firestore.FieldFilter("type", "==", event_type))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING).order_by(
            "__name__", direction=firestore.Query.DESCENDING
        )
        if page_token is not None:
            event_id = decode_page_token(page_token)
            snapshot = self._event(uid, event_id).get() if usable_document_id(event_id) else None
            if snapshot is None or not snapshot.exists:
                raise errors.InvalidRequest("invalid_page_token", "page_token is not valid", "page_token")
            query = query.start_after(snapshot)
        documents = list(query.limit(limit + 1).stream())
        page = [doc.to_dict() or {} for doc in documents[:limit]]
        next_token = encode_page_token(documents[limit - 1].id) if len(documents) > limit else None
        return page, next_token

    # ------------------------------------------------------------------------------------------ deliveries
    def load_delivery(self, uid: str, event_id: str, endpoint_id: str) -> Versioned[Delivery] | None:
        if not (usable_document_id(event_id) and usable_document_id(endpoint_id)):
            return None
        snapshot = self._delivery(uid, event_id, endpoint_id).get()
        if not snapshot.exists:
            return None
        return Versioned(delivery_from_document(snapshot.to_dict() or {}), snapshot.update_time)

    def save_delivery(self, uid: str, delivery: Delivery, version: Any) -> Any:
        """Save only if nobody wrote since `version` (None: create or overwrite); returns the new version."""
        from google.api_core import exceptions as api_exceptions

        ref = self._delivery(uid, delivery.event_id, delivery.endpoint_id)
        try:
            if version is None:
                result = ref.set(delivery_to_document(delivery))
            else:
                result = ref.update(
                    delivery_to_document(delivery), option=self.client.write_option(last_update_time=version)
                )
        except (api_exceptions.FailedPrecondition, api_exceptions.NotFound, api_exceptions.Conflict) as lost:
            raise WriteConflict(type(lost).__name__) from None
        return result.update_time

    def list_deliveries(self, uid: str, event_id: str) -> list[Delivery]:
        docs = self._event(uid, event_id).collection("deliveries").stream()
        return [delivery_from_document(doc.to_dict() or {}) for doc in docs]
