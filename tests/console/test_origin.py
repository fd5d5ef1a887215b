"""nova's Origin rules for console websockets."""

from __future__ import annotations

import pytest

from kumo.console.origin import check_origin, host_only
from kumo.errors import Forbidden

URL = "http://cloud.example:8774"


def check(origin: str | None, host: str = "cloud.example:8774", url: str = URL,
          allowed: tuple[str, ...] = (), **extra: str) -> None:
    headers = {"host": host, **extra}
    if origin is not None:
        headers["origin"] = origin
    check_origin(headers, public_url=url, allowed_origins=allowed)


def test_same_host_and_non_browser_clients_pass() -> None:
    check("http://cloud.example:8774")
    check("http://cloud.example")  # the port is not part of nova's check
    check(None)  # no Origin: not a browser


@pytest.mark.parametrize(("origin", "message"), [
    ("http://evil.example", "does not match this host"),
    ("https://cloud.example", "protocol does not match"),
    ("null", "not valid"),
    ("cloud.example", "not valid"),
])
def test_foreign_or_malformed_origins_are_refused(origin: str, message: str) -> None:
    with pytest.raises(Forbidden, match=message):
        check(origin)


def test_allowed_origins_and_forwarded_proto() -> None:
    check("http://dashboard.example", allowed=("dashboard.example",))
    check("https://cloud.example", url="https://cloud.example", host="cloud.example")
    check("http://cloud.example", url="https://cloud.example", host="cloud.example",
          **{"x-forwarded-proto": "https"})


def test_host_only() -> None:
    assert host_only("a.example:80") == "a.example"
    assert host_only("[::1]:8774") == "::1"
    assert host_only("a.example") == "a.example"
