"""Request ids, as oslo.middleware's RequestId gives every OpenStack API response.

Each HTTP request gets `req-<uuid4>`: it goes back in `x-openstack-request-id` (and
`x-compute-request-id` under /compute, as nova sends both), handlers find it on
`RequestContext.request_id` (instance actions record it), and one log line per request
names method, path, status, duration and the id.

A pure ASGI middleware on purpose: it wraps `send` only and hands `receive` through
untouched, so the image upload's direct socket read still finds uvicorn's request cycle
behind it (a BaseHTTPMiddleware would wrap the body in its own stream).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("kumo.api.access")

HEADER = b"x-openstack-request-id"
COMPUTE_HEADER = b"x-compute-request-id"
COMPUTE_PREFIX = "/compute"
# oslo.middleware accepts an inbound global request id only in this shape.
_GLOBAL_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


def request_id_of(scope: Scope) -> str | None:
    """The id the middleware gave this request (None outside an HTTP request)."""
    state = scope.get("state") or {}
    value = state.get("request_id")
    return value if isinstance(value, str) else None


class RequestIdMiddleware:
    """Adds the request id headers to every response and logs one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope.get("path", "")
        headers = [(HEADER, request_id.encode())]
        if path == COMPUTE_PREFIX or path.startswith(COMPUTE_PREFIX + "/"):
            headers.append((COMPUTE_HEADER, request_id.encode()))
        inbound = _inbound_global_id(scope)
        started = time.monotonic()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.monotonic() - started
            method = scope.get("method", "")
            query = scope.get("query_string", b"").decode("latin-1")
            target = f"{path}?{query}" if query else path
            extra = f" global_request_id={inbound}" if inbound else ""
            log.info('[%s] "%s %s" status: %s time: %.4f%s', request_id, method, target,
                     status or 500, elapsed, extra)


def _inbound_global_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == HEADER:
            text = value.decode("latin-1").strip()
            return text if _GLOBAL_ID.match(text) else None
    return None
