"""Cinder's microversions: `OpenStack-API-Version: volume 3.N`, from 3.0 to 3.71.

3.71 is Cinder's own maximum and the one openstacksdk's `Volume` is capped at; the
response-shape changes kumo serves are gated in `views` by the version that added them.
"""

from __future__ import annotations

from starlette.requests import Request

from kumo.api import microversion as generic
from kumo.api.microversion import Version

__all__ = ["CINDER", "MAX_VERSION", "MIN_VERSION", "Version", "version_of"]

MIN_VERSION: Version = (3, 0)
MAX_VERSION: Version = (3, 71)

CINDER = generic.Microversions("volume", MIN_VERSION, MAX_VERSION)


def version_of(request: Request) -> Version:
    return generic.version_of(request, MIN_VERSION)
