"""Resolving an outbound target and pinning the call to the address that was checked.

`resolve(url, allow)` applies the rules of `schemas/outbound.py` and resolves the host (with a
timeout); `pinned_request(...)` then sends to the first checked address, keeping the URL's host for
the `Host` header, TLS SNI and certificate checks. Between the check and the connection nothing is
resolved again, so a name that changes its answer (DNS rebinding) cannot slip a private address in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from schemas.outbound import (
    IPAddress,
    OutboundAllow,
    OutboundRefused,
    OutboundUrl,
    check_addresses,
    check_url,
)

RESOLVE_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    url: OutboundUrl
    address: IPAddress

    @property
    def pinned_url(self) -> httpx.URL:
        """The URL with the checked address in place of the host name."""
        host = self.address.compressed
        return httpx.URL(self.url.url).copy_with(host=host)

    @property
    def host_header(self) -> str:
        default = 443 if self.url.scheme == "https" else 80
        name = f"[{self.url.host}]" if ":" in self.url.host else self.url.host
        return name if self.url.port == default else f"{name}:{self.url.port}"


async def _lookup(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise OutboundRefused(f"host {host} could not be resolved in {RESOLVE_TIMEOUT_S:g}s") from None
    except (OSError, UnicodeError) as exc:
        raise OutboundRefused(f"host {host} could not be resolved ({exc})") from None
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


async def resolve(url: str, allow: OutboundAllow) -> ResolvedTarget:
    """The checked target of `url`; OutboundRefused (a sentence) when it may not be called."""
    checked = check_url(url, allow)
    literal = checked.literal
    addresses = [literal] if literal is not None else await _lookup(checked.host, checked.port)
    check_addresses(checked.host, addresses, allow)
    return ResolvedTarget(checked, addresses[0])


def pinned_request(
    client: httpx.AsyncClient,
    target: ResolvedTarget,
    *,
    content: bytes,
    headers: dict[str, str],
    timeout_s: float,
) -> httpx.Request:
    """A POST of `content` to the target's checked address (Host and SNI keep the URL's name)."""
    return client.build_request(
        "POST",
        target.pinned_url,
        content=content,
        headers={**headers, "Host": target.host_header},
        timeout=timeout_s,
        extensions={"sni_hostname": target.url.host},
    )
