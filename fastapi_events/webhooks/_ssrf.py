"""The SSRF guard: resolve the endpoint's host when connecting, refuse non-public addresses, connect to the
address that was checked.

Checking a URL's host before the request and letting the HTTP client resolve it again would leave a window for
DNS rebinding (the second answer may be 127.0.0.1). So the check lives in the network backend httpcore calls to
open a TCP connection: it resolves the name once, checks every address, and connects to one of those addresses.
TLS still verifies the certificate against, and sends SNI for, the URL's host name (httpcore passes that
separately to ``start_tls``), and the ``Host`` header comes from the URL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PrivateAddressError(Exception):
    """The endpoint's host is, or resolves to, an address webhooks must not reach."""

    def __init__(self, host: str, address: str, kind: str) -> None:
        self.host, self.address, self.kind = host, address, kind
        shown = host if host == address else f"{host} (resolves to {address})"
        super().__init__(
            f"refused to connect to {shown}: a {kind} address, not a public one - private networks are off "
            "(WebhookForwardHandler(allow_private_networks=True) allows them)"
        )


def refusal(address: IPAddress) -> str | None:
    """What kind of non-public address this is, or ``None`` when a webhook may go there."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if not address.is_global:  # shared (100.64/10), reserved, documentation, benchmarking ranges...
        return "reserved"
    return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that only connects to public addresses."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()

    async def resolve(self, host: str, port: int, timeout: float | None) -> list[str]:
        """Every address of ``host``, refusing the lot when any of them is not public."""
        try:
            addresses: Iterable[str] = [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await asyncio.wait_for(
                    loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), timeout
                )
            except asyncio.TimeoutError:
                raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
            addresses = dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos)
        checked = list(addresses)
        for address in checked:
            kind = refusal(ipaddress.ip_address(address))
            if kind is not None:
                # One bad answer refuses the host: a name mixing public and internal addresses is an attack or
                # a misconfiguration, and either way not a customer's webhook endpoint.
                raise PrivateAddressError(host, address, kind)
        if not checked:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        return checked

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for address in await self.resolve(host, port, timeout):
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc  # try the host's next address, as a resolver-driven connect would
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise PrivateAddressError(path, path, "unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


__all__ = ["GuardedBackend", "PrivateAddressError", "refusal"]
