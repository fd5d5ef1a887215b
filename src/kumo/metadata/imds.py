"""IMDSv2 session tokens, bound to one server's channel.

A token is `expiry || HMAC(secret, server_id || expiry)`: nothing is stored per
token, so a guest flooding `PUT /latest/api/token` costs no memory, and a token
minted on server B's channel never validates on server A's (the server id is in
the MAC, and the id comes from the channel, never from the request).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from collections.abc import Callable

from sqlalchemy.orm import Session

from kumo.errors import BadRequest
from kumo.identity.keys import shared_key

TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "x-aws-ec2-metadata-token"
TOKEN_PATH = "/latest/api/token"
SECRET_NAME = "imds_token_key"
MAX_TTL = 21600
_MAC_BYTES = 32


def parse_ttl(value: str | None) -> int:
    """The TTL a token PUT asks for; BadRequest when missing or outside 1..21600."""
    if value is None:
        raise BadRequest(f"Missing header {TTL_HEADER} (1-{MAX_TTL} seconds)")
    try:
        ttl = int(value.strip())
    except ValueError:
        raise BadRequest(f"{TTL_HEADER} must be a whole number of seconds") from None
    if not 1 <= ttl <= MAX_TTL:
        raise BadRequest(f"{TTL_HEADER} must be between 1 and {MAX_TTL}, got {ttl}")
    return ttl


def shared_secret(session: Session) -> bytes:
    """The IMDSv2 key every process signs with, created once and kept in the database."""
    return bytes.fromhex(shared_key(session, SECRET_NAME, lambda: secrets.token_hex(32)))


class TokenIssuer:
    """Mints and checks tokens with `secret` (kumo passes the one kept in the database)."""

    def __init__(
        self, secret: bytes | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._clock = clock

    def _mac(self, server_id: str, expires: int) -> bytes:
        message = server_id.encode() + b"\0" + struct.pack(">Q", expires)
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def issue(self, server_id: str, ttl: int) -> str:
        """A token for `server_id` valid `ttl` seconds from now."""
        expires = int(self._clock()) + ttl
        raw = struct.pack(">Q", expires) + self._mac(server_id, expires)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def valid(self, server_id: str, token: str) -> bool:
        """Whether `token` was minted for `server_id` and has not expired."""
        try:
            padded = token.strip() + "=" * (-len(token.strip()) % 4)
            raw = base64.urlsafe_b64decode(padded.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return False
        if len(raw) != 8 + _MAC_BYTES:
            return False
        (expires,) = struct.unpack(">Q", raw[:8])
        if not hmac.compare_digest(raw[8:], self._mac(server_id, expires)):
            return False
        return bool(self._clock() < expires)
