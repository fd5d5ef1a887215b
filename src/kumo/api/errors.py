"""Turn `kumo.errors` into each OpenStack service's error body, in one place."""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kumo.errors import KumoError

log = logging.getLogger(__name__)


class Flavor(Enum):
    """Which service's error shape a mounted app speaks."""

    IDENTITY = "identity"
    IMAGE = "image"
    COMPUTE = "compute"
    NETWORK = "network"
    PLAIN = "plain"


_NEUTRON_TYPES = {
    400: "BadRequest",
    401: "NotAuthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
}


def error_body(flavor: Flavor, status: int, title: str, message: str, nova_key: str,
               neutron_type: str | None = None) -> Any:
    if flavor is Flavor.IDENTITY:
        return {"error": {"code": status, "title": title, "message": message}}
    if flavor is Flavor.COMPUTE:
        return {nova_key: {"code": status, "message": message}}
    if flavor is Flavor.NETWORK:
        kind = neutron_type or _NEUTRON_TYPES.get(status, "NeutronError")
        return {"NeutronError": {"type": kind, "message": message, "detail": ""}}
    # Glance: glanceclient and the SDK take `message` from each top-level *object*
    # of a JSON error body (a flat {"message": ...} makes glanceclient crash).
    return {"error": {"code": status, "title": title, "message": message}}


def render(flavor: Flavor, status: int, title: str, message: str, nova_key: str,
           neutron_type: str | None = None) -> Response:
    headers = {}
    if status == 401 and flavor in (Flavor.IDENTITY, Flavor.IMAGE, Flavor.COMPUTE, Flavor.NETWORK):
        headers["WWW-Authenticate"] = 'Keystone uri="/identity"'
    return JSONResponse(
        error_body(flavor, status, title, message, nova_key, neutron_type), status_code=status,
        headers=headers,
    )


_HTTP_TITLES = {
    400: ("Bad Request", "badRequest"),
    401: ("Unauthorized", "unauthorized"),
    403: ("Forbidden", "forbidden"),
    404: ("Not Found", "itemNotFound"),
    405: ("Method Not Allowed", "badMethod"),
    409: ("Conflict", "conflictingRequest"),
    413: ("Request Entity Too Large", "overLimit"),
    415: ("Unsupported Media Type", "badMediaType"),
}


def handlers(flavor: Flavor) -> dict[Any, Callable[..., Any]]:
    """Exception handlers for a Starlette app that speaks `flavor`."""

    async def on_kumo_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KumoError)
        if exc.status >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
        # Neutron's clients read the error's class name (network/errors.py sets it).
        return render(flavor, exc.status, exc.title, exc.message, exc.nova_key,
                      getattr(exc, "neutron_type", None))

    async def on_http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        title, key = _HTTP_TITLES.get(exc.status_code, ("Error", "computeFault"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        return render(flavor, exc.status_code, title, detail, key)

    return {KumoError: on_kumo_error, HTTPException: on_http_error}


class UnexpectedErrors:
    """The last net under a part's handlers: a bug answers 500 in the API's own shape.

    Starlette's own error middleware re-raises after answering, so uvicorn logs a
    second traceback and drops the connection under a keep-alive client. Here the
    error is logged once and the connection stays usable. If the response had
    already started (a download failing midway) nothing can be sent any more:
    uvicorn then closes the connection, which is how the client learns of it.
    """

    def __init__(self, app: ASGIApp, flavor: Flavor | Callable[[Scope], Flavor]) -> None:
        self.app = app
        self.flavor = flavor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            log.error("unexpected error in %s %s", scope.get("method"), scope.get("path"),
                      exc_info=exc)
            if started:
                return
            flavor = self.flavor if isinstance(self.flavor, Flavor) else self.flavor(scope)
            response = render(flavor, 500, "Internal Server Error",
                              "kumo hit an unexpected error; see its log", "computeFault")
            await response(scope, receive, send)
