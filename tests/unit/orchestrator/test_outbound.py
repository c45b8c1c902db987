"""Resolving an outbound target: a name that resolves to a loopback address is refused unless
allowed, and the call is pinned to the checked address while keeping the name for Host and TLS."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.outbound import pinned_request, resolve
from schemas.outbound import OutboundAllow, OutboundRefused, parse_allow


async def test_a_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(OutboundRefused, match="private, loopback or reserved"):
        await resolve("https://localhost/hook", OutboundAllow())


async def test_an_allowed_name_is_pinned_to_its_checked_address() -> None:
    target = await resolve("https://localhost:8443/hook?x=1", parse_allow("localhost"))
    assert target.address.is_loopback
    assert target.pinned_url.host == target.address.compressed
    assert target.pinned_url.path == "/hook"
    assert target.host_header == "localhost:8443"
    async with httpx.AsyncClient() as client:
        request = pinned_request(client, target, content=b"{}", headers={"X-A": "1"}, timeout_s=1.0)
    assert request.headers["Host"] == "localhost:8443"
    assert request.extensions["sni_hostname"] == "localhost"
    assert request.url.params["x"] == "1"


async def test_an_address_literal_is_not_resolved_and_keeps_the_default_port_out_of_host() -> None:
    target = await resolve("http://127.0.0.1/hook", parse_allow("127.0.0.1"))
    assert target.host_header == "127.0.0.1"
    assert str(target.pinned_url) == "http://127.0.0.1/hook"
