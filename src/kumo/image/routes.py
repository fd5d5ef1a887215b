"""Glance v2 (placeholder until the image part lands)."""

from starlette.applications import Starlette

from kumo.api.errors import Flavor
from kumo.api.parts import part_app
from kumo.runtime import Runtime


def build_app(runtime: Runtime) -> Starlette:
    return part_app(runtime, [], Flavor.IMAGE)
