"""Nova microversions: which one a request asked for, and the headers that answer it.

Clients send `OpenStack-API-Version: compute 2.N` (or the older
`X-OpenStack-Nova-API-Version: 2.N`); no header means 2.1, `latest` means the
maximum. kumo implements every response-shape change between 2.1 and MAX_VERSION
for the APIs it serves (views.py gates each field by the version that added it).
"""

from __future__ import annotations

import re
from typing import ClassVar

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kumo.api.errors import Flavor, render
from kumo.errors import BadRequest, KumoError

Version = tuple[int, int]

MIN_VERSION: Version = (2, 1)
# 2.96 adds `pinned_availability_zone` to servers; 2.97+ (shares, image
# properties in server show, scheduler hints) are not implemented.
MAX_VERSION: Version = (2, 96)

_PATTERN = re.compile(r"^([1-9]\d{0,3})\.([1-9]\d{0,3}|0)$")


class NotAcceptable(KumoError):
    status = 406
    title = "Not Acceptable"
    nova_key = "computeFault"


def text(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def parse(value: str | None) -> Version:
    """The version a header value asks for; BadRequest or NotAcceptable when it cannot be served."""
    if value is None or not value.strip():
        return MIN_VERSION
    value = value.strip()
    if value.lower() == "latest":
        return MAX_VERSION
    match = _PATTERN.match(value)
    if not match:
        raise BadRequest(f"Invalid API version request: {value!r}; expected e.g. 2.1")
    version = (int(match.group(1)), int(match.group(2)))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise NotAcceptable(
            f"Version {value} is not supported by the API. Minimum is {text(MIN_VERSION)} "
            f"and maximum is {text(MAX_VERSION)}."
        )
    return version


def requested(headers: dict[str, str]) -> str | None:
    """The raw version string from either header (the new one wins)."""
    new = headers.get("openstack-api-version")
    if new:
        for part in new.split(","):
            service, _, value = part.strip().partition(" ")
            if service.lower() == "compute" and value.strip():
                return value.strip()
    return headers.get("x-openstack-nova-api-version")


def version_of(request: Request) -> Version:
    """The microversion the middleware resolved for this request."""
    version = request.scope.get("state", {}).get("microversion", MIN_VERSION)
    assert isinstance(version, tuple)
    return version


class MicroversionMiddleware:
    """Resolves the request's microversion and states it on every response."""

    HEADERS: ClassVar[tuple[str, ...]] = ("OpenStack-API-Version", "X-OpenStack-Nova-API-Version")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            version = parse(requested(headers))
        except KumoError as exc:
            response = render(Flavor.COMPUTE, exc.status, exc.title, exc.message, exc.nova_key)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["microversion"] = version

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["OpenStack-API-Version"] = f"compute {text(version)}"
                out["X-OpenStack-Nova-API-Version"] = text(version)
                out["Vary"] = ", ".join(self.HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_version)
