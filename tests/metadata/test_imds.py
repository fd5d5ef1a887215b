"""IMDSv2 tokens: bound to a server, expiring, forgery-proof."""

from __future__ import annotations

import pytest

from kumo.errors import BadRequest
from kumo.metadata.imds import MAX_TTL, TokenIssuer, parse_ttl


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_token_is_valid_for_its_server_until_it_expires() -> None:
    clock = Clock()
    issuer = TokenIssuer(clock=clock)
    token = issuer.issue("server-a", 60)
    assert issuer.valid("server-a", token)
    assert not issuer.valid("server-b", token)
    clock.now += 59
    assert issuer.valid("server-a", token)
    clock.now += 1
    assert not issuer.valid("server-a", token)


def test_tampered_or_foreign_tokens_are_refused() -> None:
    issuer = TokenIssuer()
    token = issuer.issue("server-a", 600)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad in (flipped, "", "garbage", token + "AAAA", "\u00e9" * 10):
        assert not issuer.valid("server-a", bad)
    assert not TokenIssuer().valid("server-a", token)  # another process's secret


@pytest.mark.parametrize("value", [None, "", "0", "-1", str(MAX_TTL + 1), "1.5", "ten"])
def test_bad_ttls_are_refused(value: str | None) -> None:
    with pytest.raises(BadRequest):
        parse_ttl(value)


def test_good_ttls() -> None:
    assert parse_ttl("1") == 1 and parse_ttl(" 21600 ") == 21600
