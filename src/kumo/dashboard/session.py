"""The dashboard's session: an encrypted, HttpOnly, SameSite cookie.

The cookie holds the Keystone token and the CSRF secret, encrypted and signed
with Fernet (AES-128-CBC + HMAC-SHA256, `cryptography`) under a key kept in
`DATA/dashboard.key` (0600), so a restart of kumo keeps people logged in and
nothing of the token is readable by the browser or by page scripts. The token
never appears in a URL. Every state-changing request must carry the session's
CSRF value (form field `csrf_token` or header `X-CSRF-Token`).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

COOKIE = "kumo_session"
MAX_AGE = 12 * 3600  # a Keystone token lives at most this long in kumo


@dataclass
class DashSession:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token: str | None = None
    user_id: str = ""
    user_name: str = ""
    project_id: str = ""
    project_name: str = ""
    roles: list[str] = field(default_factory=list)
    expires_at: str = ""
    flash: str = ""

    @property
    def logged_in(self) -> bool:
        return self.token is not None

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf, presented or "")


def load_key(path: Path) -> bytes:
    """The dashboard's Fernet key, made once (0600) on first use."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = Fernet.generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key + b"\n")
    try:
        os.link(tmp, path)  # another process may have made one first: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()


class SessionCodec:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def dumps(self, session: DashSession) -> str:
        return self._fernet.encrypt(json.dumps(asdict(session)).encode()).decode()

    def loads(self, value: str | None) -> DashSession | None:
        if not value:
            return None
        try:
            data = json.loads(self._fernet.decrypt(value.encode(), ttl=MAX_AGE))
            return DashSession(**data)
        except (InvalidToken, ValueError, TypeError):
            return None
