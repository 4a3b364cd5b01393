"""Composition root: builds the real adapters from Settings, lazily, once per instance.

Emulator or real service is decided by Settings alone (the emulator host variables), never by the callers.
"""

from __future__ import annotations

import threading

from gateway.auth import FirebaseAuthenticator
from gateway.daraja import DarajaClient
from gateway.repository import PaymentRepository, PaymentStore
from gateway.secrets import CredentialStore, SecretManagerBackend
from gateway.services import Gateway
from gateway.settings import Settings, get_settings

_lock = threading.Lock()
_gateway: Gateway | None = None
_authenticator: FirebaseAuthenticator | None = None


def settings() -> Settings:
    return get_settings()


def gateway() -> Gateway:
    global _gateway
    if _gateway is None:
        with _lock:
            if _gateway is None:
                current = get_settings()
                current.assert_safe()
                store: PaymentStore = PaymentRepository(current)
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


def authenticator() -> FirebaseAuthenticator:
    global _authenticator
    if _authenticator is None:
        with _lock:
            if _authenticator is None:
                _authenticator = FirebaseAuthenticator(get_settings())
    return _authenticator
