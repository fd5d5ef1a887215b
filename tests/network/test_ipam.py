"""Address rules: CIDR parsing, default and requested pools."""

from __future__ import annotations

import ipaddress

import pytest

from kumo.errors import BadRequest, Conflict
from kumo.network import ipam


def test_parse_cidr() -> None:
    assert str(ipam.parse_cidr("10.0.0.0/24")) == "10.0.0.0/24"
    with pytest.raises(BadRequest, match="is recommended"):
        ipam.parse_cidr("10.0.0.1/24")
    with pytest.raises(BadRequest, match="IPv4 only"):
        ipam.parse_cidr("2001:db8::/64")
    with pytest.raises(BadRequest, match="prefix length"):
        ipam.parse_cidr("0.0.0.0/0")


def test_default_pools_around_the_gateway() -> None:
    cidr = ipaddress.IPv4Network("10.0.0.0/24")
    assert ipam.default_pools(cidr, "10.0.0.1") == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert ipam.default_pools(cidr, "10.0.0.100") == [
        {"start": "10.0.0.1", "end": "10.0.0.99"}, {"start": "10.0.0.101", "end": "10.0.0.254"}]
    assert ipam.default_pools(cidr, None) == [{"start": "10.0.0.1", "end": "10.0.0.254"}]
    assert ipam.default_pools(ipaddress.IPv4Network("10.0.0.0/31"), None) == [
        {"start": "10.0.0.0", "end": "10.0.0.1"}]


def test_check_pools() -> None:
    cidr = ipaddress.IPv4Network("10.0.0.0/24")
    pools = [{"start": "10.0.0.50", "end": "10.0.0.60"}, {"start": "10.0.0.10", "end": "10.0.0.20"}]
    assert ipam.check_pools(pools, cidr, "10.0.0.1")[0]["start"] == "10.0.0.10"
    with pytest.raises(BadRequest, match="spans beyond"):
        ipam.check_pools([{"start": "10.0.0.0", "end": "10.0.0.5"}], cidr, None)
    with pytest.raises(Conflict, match="conflicts with allocation pool"):
        ipam.check_pools([{"start": "10.0.0.1", "end": "10.0.0.5"}], cidr, "10.0.0.3")
    with pytest.raises(BadRequest, match="Invalid data format"):
        ipam.check_pools([{"start": "10.0.0.1"}], cidr, None)
    assert [str(a) for a in ipam.pool_addresses([{"start": "10.0.0.1", "end": "10.0.0.3"}])] == [
        "10.0.0.1", "10.0.0.2", "10.0.0.3"]
