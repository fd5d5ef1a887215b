"""Which host routes a guest subnet must leave alone."""

from __future__ import annotations

import ipaddress

import pytest

from kumo.network import hostroutes, uplink

EXTERNAL = [ipaddress.IPv4Network("172.24.4.0/24")]


def test_kumos_own_uplink_is_not_a_conflict() -> None:
    assert hostroutes.overlapping(ipaddress.IPv4Network("192.168.0.0/16"), EXTERNAL) == \
        "192.168.77.0/24 dev eth0"
    assert hostroutes.overlapping(ipaddress.IPv4Network("172.24.0.0/16"), EXTERNAL) is None
    assert hostroutes.overlapping(ipaddress.IPv4Network("10.0.0.0/24"), EXTERNAL) is None
    # Without kumo's external subnets, its uplink route is an ordinary route.
    assert hostroutes.overlapping(ipaddress.IPv4Network("172.24.0.0/16"), []) == \
        "172.24.4.0/24 dev kumo-12345678"


def test_this_hosts_real_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the conftest's fixed routes: read this machine's own
    assert hostroutes.routes([]) == [(d, dev) for d, dev in uplink.host_routes() if d.version == 4]
    for destination, device in hostroutes.routes([]):
        assert destination.prefixlen > 0 and device
