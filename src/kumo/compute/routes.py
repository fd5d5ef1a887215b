"""Nova v2.1 subset (placeholder until the compute part lands)."""

from starlette.applications import Starlette

from kumo.api.errors import Flavor
from kumo.api.parts import part_app
from kumo.runtime import Runtime


def build_app(runtime: Runtime) -> Starlette:
    return part_app(runtime, [], Flavor.COMPUTE)
