"""The Origin check of nova's console proxy (nova/console/websocketproxy.py).

A browser always sends Origin on a websocket handshake; a page on another site
must not be able to open a console with a URL it got hold of. A missing Origin
means a non-browser client, which is allowed (as nova does). The Origin's host
must be the host the request was sent to, or one of `[console] allowed_origins`;
its scheme must match kumo's public URL (http/ws or https/wss), or the
X-Forwarded-Proto a TLS-terminating proxy set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from kumo.errors import Forbidden

_SECURE = {"http": "http", "ws": "http", "https": "https", "wss": "https"}


def host_only(host_header: str) -> str:
    """`example.org:8774` -> `example.org`; `[::1]:80` -> `::1`."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def check_origin(headers: Mapping[str, str], *, public_url: str,
                 allowed_origins: Sequence[str]) -> None:
    """Raise Forbidden unless the handshake's Origin may open a console here."""
    origin = headers.get("origin")
    if origin is None:
        return
    parts = urlsplit(origin)
    scheme = headers.get("x-forwarded-proto") or parts.scheme
    if not parts.hostname or not scheme:
        raise Forbidden("Origin header not valid.")
    expected_hosts = {host_only(headers.get("host", "")).lower(),
                      *(name.lower() for name in allowed_origins)}
    if parts.hostname.lower() not in expected_hosts:
        raise Forbidden("Origin header does not match this host.")
    expected_scheme = _SECURE.get(urlsplit(public_url).scheme, "http")
    if _SECURE.get(scheme.lower()) != expected_scheme:
        raise Forbidden("Origin header protocol does not match this host.")
