"""OpenStack microversions for any service: which one a request asked for, and the
headers that answer it.

Clients send `OpenStack-API-Version: <service> X.Y` (nova also reads the older
`X-OpenStack-Nova-API-Version: X.Y`); no header means the minimum, `latest` the
maximum, anything else outside the range is 406. `Microversions` holds one
service's range; its middleware puts the resolved version on the request and
states it on every response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kumo.api.errors import Flavor, render
from kumo.errors import BadRequest, KumoError

Version = tuple[int, int]

_PATTERN = re.compile(r"^([1-9]\d{0,3})\.([1-9]\d{0,3}|0)$")


class NotAcceptable(KumoError):
    status = 406
    title = "Not Acceptable"
    nova_key = "computeFault"


def text(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


@dataclass(frozen=True)
class Microversions:
    """One service's microversion range and header names."""

    service: str  # "compute", "volume"
    minimum: Version
    maximum: Version
    legacy_header: str | None = None  # e.g. "X-OpenStack-Nova-API-Version"
    flavor: Flavor = Flavor.COMPUTE

    def parse(self, value: str | None) -> Version:
        """The version a header value asks for; BadRequest or NotAcceptable if unservable."""
        if value is None or not value.strip():
            return self.minimum
        value = value.strip()
        if value.lower() == "latest":
            return self.maximum
        match = _PATTERN.match(value)
        if not match:
            raise BadRequest(f"Invalid API version request: {value!r}; expected e.g. "
                             f"{text(self.minimum)}")
        version = (int(match.group(1)), int(match.group(2)))
        if not self.minimum <= version <= self.maximum:
            raise NotAcceptable(
                f"Version {value} is not supported by the API. Minimum is "
                f"{text(self.minimum)} and maximum is {text(self.maximum)}."
            )
        return version

    def requested(self, headers: dict[str, str]) -> str | None:
        """The raw version string from the headers (the new header wins)."""
        new = headers.get("openstack-api-version")
        if new:
            for part in new.split(","):
                service, _, value = part.strip().partition(" ")
                if service.lower() == self.service and value.strip():
                    return value.strip()
        if self.legacy_header:
            return headers.get(self.legacy_header.lower())
        return None

    def middleware(self, app: ASGIApp) -> ASGIApp:
        return _Middleware(app, self)


def version_of(request: Request, default: Version) -> Version:
    """The microversion the middleware resolved for this request."""
    version = request.scope.get("state", {}).get("microversion", default)
    assert isinstance(version, tuple)
    return version


class _Middleware:
    def __init__(self, app: ASGIApp, versions: Microversions) -> None:
        self.app = app
        self.versions = versions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        versions = self.versions
        try:
            version = versions.parse(versions.requested(headers))
        except KumoError as exc:
            response = render(versions.flavor, exc.status, exc.title, exc.message, exc.nova_key)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["microversion"] = version
        vary = ", ".join(h for h in ("OpenStack-API-Version", versions.legacy_header) if h)

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["OpenStack-API-Version"] = f"{versions.service} {text(version)}"
                if versions.legacy_header:
                    out[versions.legacy_header] = text(version)
                out["Vary"] = vary
            await send(message)

        await self.app(scope, receive, send_with_version)
