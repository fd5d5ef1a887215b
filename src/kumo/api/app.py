"""Assemble the one HTTP app `kumo up` serves: every API under its own prefix.

Prefixes follow devstack's: /identity (Keystone v3), /image (Glance v2),
/compute (Nova v2.1), /network (Neutron v2.0, the few routes the CLI needs),
/volume (Cinder v3).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Mount, Route
from starlette.types import ASGIApp, Scope

from kumo.api.errors import Flavor, UnexpectedErrors
from kumo.runtime import Runtime

PREFIXES = {
    "identity": "/identity",
    "image": "/image",
    "compute": "/compute",
    "network": "/network",
    "volume": "/volume",
}


class PagesMount(Mount):
    """The dashboard at `/`, leaving the API prefixes alone: `/image` (no slash) must
    still reach Starlette's redirect to `/image/` (clients' version discovery)."""

    RESERVED = frozenset(p.strip("/") for p in (*PREFIXES.values(), "/console", "/healthcheck"))

    def __init__(self, app: ASGIApp) -> None:
        super().__init__("/", app=app)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        first = scope.get("path", "/").lstrip("/").split("/", 1)[0]
        if first in self.RESERVED:
            return Match.NONE, {}
        return super().matches(scope)


def flavor_of(scope: Scope) -> Flavor:
    """Which API's error shape a request outside any part's own handlers gets."""
    path = str(scope.get("path", ""))
    for service, prefix in PREFIXES.items():
        if path == prefix or path.startswith(prefix + "/"):
            # Cinder's error body is nova's
            return Flavor.COMPUTE if service == "volume" else Flavor(service)
    return Flavor.PLAIN


async def healthcheck(_request: Request) -> Response:
    return PlainTextResponse("OK")


def create_app(runtime: Runtime) -> Starlette:
    """The whole API as one ASGI app, with `runtime` on `app.state`."""
    from kumo.api.request_id import RequestIdMiddleware
    from kumo.compute.routes import build_app as compute_app
    from kumo.console.routes import build_app as console_app
    from kumo.dashboard.app import build_app as dashboard_app
    from kumo.identity.middleware import TokenMiddleware
    from kumo.identity.routes import build_app as identity_app
    from kumo.image.routes import build_app as image_app
    from kumo.network.routes import build_app as network_app
    from kumo.volume.routes import build_app as volume_app

    app = Starlette(
        routes=[
            Route("/healthcheck", healthcheck, methods=["GET", "HEAD"]),
            Mount(PREFIXES["identity"], app=identity_app(runtime)),
            Mount(PREFIXES["image"], app=image_app(runtime)),
            Mount(PREFIXES["compute"], app=compute_app(runtime)),
            Mount(PREFIXES["network"], app=network_app(runtime)),
            Mount(PREFIXES["volume"], app=volume_app(runtime)),
            Mount("/console", app=console_app(runtime)),
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(UnexpectedErrors, flavor=flavor_of),
            Middleware(TokenMiddleware, runtime=runtime),
        ],
    )
    app.state.runtime = runtime
    # Last: the web pages take every path the APIs above do not.
    app.router.routes.append(PagesMount(dashboard_app(runtime, app)))
    return app


def endpoint(runtime: Runtime, service: str) -> str:
    """The public URL of a service, as the catalog lists it."""
    base = runtime.settings.base_url
    return {
        "identity": f"{base}/identity/v3",
        "image": f"{base}/image",
        "compute": f"{base}/compute/v2.1",
        "network": f"{base}/network",
        "block-storage": f"{base}/volume/v3",
        "volumev3": f"{base}/volume/v3",
    }[service]
