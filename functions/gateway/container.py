"""Composition root: builds the real adapters from Settings, lazily, once per instance.

Emulator or real service is decided by Settings alone (the emulator host variables), never by the callers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gateway.api_key_store import FirestoreApiKeyStore
from gateway.auth import FirebaseAuthenticator
from gateway.daraja import DarajaClient
from gateway.delivery_queue import CloudTasksQueue
from gateway.repository import PaymentRepository, PaymentStore, utcnow
from gateway.secrets import CredentialStore, SecretManagerBackend
from gateway.services import Gateway
from gateway.services.api_keys import ApiKeys
from gateway.services.webhooks import Webhooks
from gateway.settings import Settings, get_settings
from gateway.webhook_secrets import SecretManagerVersions, WebhookSecrets
from gateway.webhook_store import WebhookStore
from gateway.webhook_transport import WebhookTransport

_lock = threading.Lock()
_gateway: Gateway | None = None
_authenticator: FirebaseAuthenticator | None = None
_api_keys: ApiKeys | None = None
_firestore_lock = threading.Lock()
_firestore: Any = None


def settings() -> Settings:
    return get_settings()


def gateway() -> Gateway:
    global _gateway
    if _gateway is None:
        with _lock:
            if _gateway is None:
                current = get_settings()
                current.assert_safe()
                store: PaymentStore = PaymentRepository(current, client_factory=firestore_client)
                if current.fault_injection:
                    from gateway.faults import FaultInjectingStore

                    store = FaultInjectingStore(store)
                _gateway = Gateway.build(
                    current,
                    store,
                    CredentialStore(current, SecretManagerBackend(current)),
                    DarajaClient(current),
                )
    return _gateway


def firestore_client() -> Any:
    """One Firestore client (one gRPC channel) per instance, shared by the payment, key and webhook stores."""
    global _firestore
    if _firestore is None:
        with _firestore_lock:
            if _firestore is None:
                from google.cloud import firestore

                _firestore = firestore.Client(project=get_settings().project_id)
    return _firestore


def api_keys() -> ApiKeys:
    global _api_keys
    if _api_keys is None:
        with _lock:
            if _api_keys is None:
                current = get_settings()
                _api_keys = ApiKeys(current, FirestoreApiKeyStore(current, client=firestore_client), utcnow)
    return _api_keys


def authenticator() -> FirebaseAuthenticator:
    global _authenticator
    if _authenticator is None:
        keys = api_keys()
        with _lock:
            if _authenticator is None:
                _authenticator = FirebaseAuthenticator(get_settings(), api_keys=keys.authenticate)
    return _authenticator


_webhooks: Webhooks | None = None


def webhooks() -> Webhooks:
    """Endpoints, events and deliveries (gateway.services.webhooks), built on first use like the gateway."""
    global _webhooks
    if _webhooks is None:
        with _lock:
            if _webhooks is None:
                current = get_settings()
                current.assert_safe()
                _webhooks = Webhooks.build(
                    current,
                    WebhookStore(current, client_factory=firestore_client),
                    WebhookSecrets(SecretManagerVersions(current)),
                    WebhookTransport(current.webhook_timeout_s, allow_loopback=current.local_stack_trusted),
                    CloudTasksQueue(current),
                )
    return _webhooks


def event_trigger() -> Callable[[str, str], int]:
    """What the Firestore trigger runs for a new event: the fan-out; on the local stack with fault injection on,
    behind the injector that can make it skip an event (gateway.faults), as a dropped trigger would."""
    deliveries = webhooks().deliveries
    if get_settings().fault_injection:
        from gateway.faults import skipping_trigger_fan_out

        events = WebhookStore(get_settings(), client_factory=firestore_client)
        return skipping_trigger_fan_out(deliveries.fan_out, events)
    return deliveries.fan_out
