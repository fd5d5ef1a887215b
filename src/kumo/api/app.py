"""Assemble the one HTTP app `kumo up` serves: every API under its own prefix.

Prefixes follow devstack's: /identity (Keystone v3), /image (Glance v2),
/compute (Nova v2.1), /network (Neutron v2.0, the few routes the CLI needs).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from kumo.runtime import Runtime

PREFIXES = {
    "identity": "/identity",
    "image": "/image",
    "compute": "/compute",
    "network": "/network",
}


async def healthcheck(_request: Request) -> Response:
    return PlainTextResponse("OK")


def create_app(runtime: Runtime) -> Starlette:
    """The whole API as one ASGI app, with `runtime` on `app.state`."""
    from kumo.api.request_id import RequestIdMiddleware
    from kumo.compute.routes import build_app as compute_app
    from kumo.identity.middleware import TokenMiddleware
    from kumo.identity.routes import build_app as identity_app
    from kumo.image.routes import build_app as image_app
    from kumo.network.routes import build_app as network_app

    app = Starlette(
        routes=[
            Route("/healthcheck", healthcheck, methods=["GET", "HEAD"]),
            Mount(PREFIXES["identity"], app=identity_app(runtime)),
            Mount(PREFIXES["image"], app=image_app(runtime)),
            Mount(PREFIXES["compute"], app=compute_app(runtime)),
            Mount(PREFIXES["network"], app=network_app(runtime)),
        ],
        middleware=[Middleware(RequestIdMiddleware), Middleware(TokenMiddleware, runtime=runtime)],
    )
    app.state.runtime = runtime
    return app


def endpoint(runtime: Runtime, service: str) -> str:
    """The public URL of a service, as the catalog lists it."""
    base = runtime.settings.base_url
    return {
        "identity": f"{base}/identity/v3",
        "image": f"{base}/image",
        "compute": f"{base}/compute/v2.1",
        "network": f"{base}/network",
    }[service]
