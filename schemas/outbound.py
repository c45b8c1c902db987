"""Where Comet's outbound calls (notifications) may go (pure): `https` to public addresses, and to
private or loopback ones only when `COMET_OUTBOUND_ALLOW` names them (CONTRACT §2).

The rules, in the order they are applied:

- the URL is absolute, without user info, with a host and a valid port;
- its scheme is `https`; `http` only for a host the allow-list names (by name, or an address
  inside one of its networks) — a local receiver in tests, an internal relay;
- every address the host resolves to is global (not private, loopback, link-local, shared,
  reserved, multicast or unspecified; an IPv4-mapped IPv6 address is judged as its IPv4 one),
  unless the allow-list names the host or the address.

A refusal is a sentence saying why (`OutboundRefused`), shown to the person who set the URL (a
422 naming `body.url`) and recorded on the delivery attempt when it happens at send time.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundRefused(ValueError):
    """An outbound target this installation may not call; the message says why. Not retriable
    as such (a send-time refusal is retried with backoff only because DNS may change)."""

    retriable = False


@dataclass(frozen=True, slots=True)
class OutboundAllow:
    """The parsed `COMET_OUTBOUND_ALLOW`: host names (lowercase) and networks."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    def names(self, host: str) -> bool:
        """Whether the allow-list names `host` itself: its name, or (an address) a network of it."""
        address = _address(host)
        if address is None:
            return host.lower().rstrip(".") in self.hosts
        return self.covers(address)

    def covers(self, address: IPAddress) -> bool:
        judged = _unmapped(address)
        return any(judged.version == n.version and judged in n for n in self.networks)


def parse_allow(value: str) -> OutboundAllow:
    """`"hooks.internal, 127.0.0.1, 10.0.0.0/8, ::1"` → OutboundAllow; ValueError naming a bad entry."""
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if any(c.isdigit() for c in entry[:1]) or ":" in entry or "/" in entry:
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                if "/" in entry or ":" in entry:
                    raise ValueError(f"{entry!r} is neither a host name nor an address or CIDR") from None
        if not _HOSTNAME_CHARS.issuperset(entry.lower()) or entry.startswith((".", "-")):
            raise ValueError(f"{entry!r} is neither a host name nor an address or CIDR")
        hosts.add(entry.lower().rstrip("."))
    return OutboundAllow(frozenset(hosts), tuple(networks))


_HOSTNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")


def _address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: IPAddress) -> bool:
    """Whether `address` is on the public internet (what an outbound call may reach by default)."""
    judged = _unmapped(address)
    return judged.is_global and not judged.is_multicast


@dataclass(frozen=True, slots=True)
class OutboundUrl:
    """A URL that passed the static rules: its parts, for resolving and pinning."""

    url: str
    scheme: str
    host: str  # without brackets, lowercase
    port: int
    parts: SplitResult

    @property
    def literal(self) -> IPAddress | None:
        return _address(self.host)


def check_url(url: str, allow: OutboundAllow) -> OutboundUrl:
    """The static rules (scheme, form, an address literal's range); OutboundRefused says why."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"is not a valid URL ({exc})") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise OutboundRefused("must be an absolute https:// URL")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused("must not carry a user name or password")
    if parts.scheme == "http" and not allow.names(host):
        raise OutboundRefused(
            f"must use https (http is allowed only for hosts COMET_OUTBOUND_ALLOW names; {host} is not one)"
        )
    checked = OutboundUrl(url, parts.scheme, host, port or (443 if parts.scheme == "https" else 80), parts)
    literal = checked.literal
    if literal is not None:
        check_addresses(host, [literal], allow)
    return checked


def check_addresses(host: str, addresses: Iterable[IPAddress], allow: OutboundAllow) -> None:
    """Refuse when `host` resolves to an address that is not public and not allowed."""
    found = list(addresses)
    if not found:
        raise OutboundRefused(f"host {host} does not resolve to any address")
    if allow.names(host):
        return
    for address in found:
        if not is_public(address) and not allow.covers(address):
            raise OutboundRefused(
                f"resolves to {address}, a private, loopback or reserved address "
                "(COMET_OUTBOUND_ALLOW does not name it)"
            )
