"""Where outbound calls may go: https to public addresses; private, loopback and plain http only
for what COMET_OUTBOUND_ALLOW names."""

from __future__ import annotations

import ipaddress
import re

import pytest

from config.settings import CommonSettings, SettingsError, load
from schemas.outbound import (
    OutboundAllow,
    OutboundRefused,
    check_addresses,
    check_url,
    is_public,
    parse_allow,
)

NOTHING = OutboundAllow()


def test_an_https_url_on_a_public_address_passes() -> None:
    checked = check_url("https://93.184.215.14/hooks/comet?x=1", NOTHING)
    assert (checked.scheme, checked.host, checked.port) == ("https", "93.184.215.14", 443)


def test_a_host_name_passes_the_static_rules_until_it_is_resolved() -> None:
    assert check_url("https://hooks.example.com:8443/x", NOTHING).port == 8443


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://hooks.example.com/x", "must use https"),
        ("ftp://hooks.example.com/x", "absolute https:// URL"),
        ("hooks.example.com/x", "absolute https:// URL"),
        ("https://user:pw@hooks.example.com/x", "user name or password"),
        ("https://hooks.example.com:99999/x", "not a valid URL"),
        ("https://127.0.0.1/x", "resolves to 127.0.0.1"),
        ("https://10.1.2.3/x", "resolves to 10.1.2.3"),
        ("https://169.254.169.254/latest/meta-data", "resolves to 169.254.169.254"),
        ("https://[::1]/x", "resolves to ::1"),
        ("https://[::ffff:192.168.1.1]/x", "private, loopback or reserved"),
        ("https://0.0.0.0/x", "resolves to 0.0.0.0"),
        ("https://100.64.0.1/x", "resolves to 100.64.0.1"),
    ],
)
def test_urls_outside_the_rules_are_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(OutboundRefused, match=re.escape(says)):
        check_url(url, NOTHING)


def test_the_allow_list_lets_its_hosts_use_http_and_private_addresses() -> None:
    allow = parse_allow("127.0.0.1, receiver.internal, 10.0.0.0/8")
    assert check_url("http://127.0.0.1:8080/hook", allow).port == 8080
    assert check_url("http://receiver.internal/hook", allow).host == "receiver.internal"
    assert check_url("https://10.9.8.7/hook", allow).host == "10.9.8.7"
    with pytest.raises(OutboundRefused, match="must use https"):
        check_url("http://other.internal/hook", allow)
    with pytest.raises(OutboundRefused, match=re.escape("192.168.0.1")):
        check_url("https://192.168.0.1/hook", allow)


def test_a_resolved_private_address_is_refused_unless_its_host_or_network_is_allowed() -> None:
    private = [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("192.168.1.5")]
    with pytest.raises(OutboundRefused, match=re.escape("resolves to 192.168.1.5")):
        check_addresses("hooks.example.com", private, NOTHING)
    check_addresses("hooks.example.com", private, parse_allow("hooks.example.com"))
    check_addresses("hooks.example.com", private, parse_allow("192.168.0.0/16"))
    with pytest.raises(OutboundRefused, match="does not resolve"):
        check_addresses("hooks.example.com", [], NOTHING)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not a host", "fe80::1/200", "-bad.example"])
def test_a_bad_allow_list_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a host name nor an address or CIDR"):
        parse_allow(f"127.0.0.1, {entry}")


def test_an_empty_allow_list_names_nothing() -> None:
    assert parse_allow(" , ") == OutboundAllow()


def test_only_global_addresses_are_public() -> None:
    assert is_public(ipaddress.ip_address("1.1.1.1"))
    assert not is_public(ipaddress.ip_address("224.0.0.1"))
    assert not is_public(ipaddress.ip_address("::ffff:127.0.0.1"))


def test_a_malformed_allow_list_stops_start_up_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COMET_OUTBOUND_ALLOW", "127.0.0.1, 10.0.0.0/99")
    with pytest.raises(
        SettingsError, match=r"^COMET_OUTBOUND_ALLOW: '10\.0\.0\.0/99' is neither a host name"
    ):
        load(CommonSettings)
    monkeypatch.setenv("COMET_OUTBOUND_ALLOW", "127.0.0.1, hooks.internal")
    assert parse_allow(load(CommonSettings).outbound_allow).names("hooks.internal")
