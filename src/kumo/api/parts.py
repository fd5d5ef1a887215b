"""Build one part's ASGI app: its routes, its error shape, the runtime on its state."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import BaseRoute

from kumo.api.errors import Flavor, handlers
from kumo.runtime import Runtime


def part_app(runtime: Runtime, routes: Sequence[BaseRoute], flavor: Flavor) -> Starlette:
    app = Starlette(routes=list(routes), exception_handlers=handlers(flavor))
    app.state.runtime = runtime
    return app


def runtime_from(request: Request) -> Runtime:
    """The runtime of the app serving `request` (each part app carries it)."""
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime
