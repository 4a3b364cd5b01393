"""Sends one webhook delivery over HTTP, refusing addresses that are not public (SSRF).

The host is resolved here, every address it resolves to is checked (gateway.domain.webhooks.is_public_address),
and the connection goes to the address that was checked, so a DNS answer that changes between the check and the
connect (rebinding) cannot reach an internal service. TLS still verifies the certificate for the host name.
Redirects are not followed: a 3xx is a failed attempt. At most the first 1 KB of the answer is read.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.domain.webhooks import EndpointUrl, is_loopback_address, is_public_address

EXCERPT_BYTES = 1024

Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class AttemptResult:
    status: int | None
    latency_ms: int
    body_excerpt: str = ""
    error: str | None = None
    retry_after: str | None = None


class AddressRefused(Exception):
    """The endpoint's host resolves to an address a delivery must not reach."""


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(host: str, port: int, *, allow_loopback: bool, resolver: Resolver = resolve) -> list[str]:
    """The addresses of `host` a delivery may connect to; AddressRefused when any of them is not public (a host
    that mixes public and private answers is refused whole). Loopback passes only with `allow_loopback`."""
    addresses = resolver(host, port)
    if not addresses:
        raise AddressRefused("no_address")
    for address in addresses:
        if is_public_address(address):
            continue
        if allow_loopback and is_loopback_address(address):
            continue
        raise AddressRefused("address_not_public")
    return addresses


class WebhookTransport:
    def __init__(
        self,
        timeout_s: float,
        *,
        allow_loopback: bool,
        resolver: Resolver = resolve,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._allow_loopback = allow_loopback
        self._resolver = resolver
        self._tls = tls_context or ssl.create_default_context()

    def post(self, url: EndpointUrl, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            addresses = checked_addresses(
                url.host, url.port, allow_loopback=self._allow_loopback, resolver=self._resolver
            )
        except AddressRefused as refused:
            return AttemptResult(None, elapsed(), error=str(refused))
        except (socket.gaierror, UnicodeError):
            return AttemptResult(None, elapsed(), error="dns_error")
        connection: http.client.HTTPConnection
        if url.scheme == "https":
            connection = _PinnedHTTPSConnection(url.host, url.port, addresses[0], self._timeout_s, self._tls)
        else:
            connection = _PinnedHTTPConnection(url.host, url.port, addresses[0], self._timeout_s)
        try:
            connection.request("POST", url.target, body=body, headers=dict(headers))
            response = connection.getresponse()
            excerpt = response.read(EXCERPT_BYTES)
            return AttemptResult(
                response.status,
                elapsed(),
                body_excerpt=excerpt.decode("utf-8", errors="replace"),
                retry_after=response.getheader("Retry-After"),
            )
        except TimeoutError:
            return AttemptResult(None, elapsed(), error="timeout")
        except ConnectionRefusedError:
            return AttemptResult(None, elapsed(), error="connection_refused")
        except ssl.SSLError:
            return AttemptResult(None, elapsed(), error="tls_error")
        except (OSError, http.client.HTTPException):
            return AttemptResult(None, elapsed(), error="connection_error")
        finally:
            connection.close()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address; the Host header still names the endpoint's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls_context = context

    def connect(self) -> None:
        raw: Any = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls_context.wrap_socket(raw, server_hostname=self.host)
