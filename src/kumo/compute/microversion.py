"""Nova microversions: which one a request asked for, and the headers that answer it.

Clients send `OpenStack-API-Version: compute 2.N` (or the older
`X-OpenStack-Nova-API-Version: 2.N`); no header means 2.1, `latest` means the
maximum. kumo implements every response-shape change between 2.1 and MAX_VERSION
for the APIs it serves (views.py gates each field by the version that added it).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp

from kumo.api import microversion as generic
from kumo.api.microversion import NotAcceptable, Version, text

__all__ = ["MAX_VERSION", "MIN_VERSION", "MicroversionMiddleware", "NotAcceptable", "Version",
           "parse", "requested", "text", "version_of"]

MIN_VERSION: Version = (2, 1)
# 2.96 adds `pinned_availability_zone` to servers; 2.97+ (shares, image
# properties in server show, scheduler hints) are not implemented.
MAX_VERSION: Version = (2, 96)

NOVA = generic.Microversions("compute", MIN_VERSION, MAX_VERSION,
                             legacy_header="X-OpenStack-Nova-API-Version")


def parse(value: str | None) -> Version:
    """The version a header value asks for; BadRequest or NotAcceptable when it cannot be served."""
    return NOVA.parse(value)


def requested(headers: dict[str, str]) -> str | None:
    """The raw version string from either header (the new one wins)."""
    return NOVA.requested(headers)


def version_of(request: Request) -> Version:
    """The microversion the middleware resolved for this request."""
    return generic.version_of(request, MIN_VERSION)


def MicroversionMiddleware(app: ASGIApp) -> ASGIApp:
    """Resolves the request's microversion and states it on every response."""
    return NOVA.middleware(app)
