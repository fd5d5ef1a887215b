"""Attach the caller's RequestContext to every request that carries X-Auth-Token."""

from __future__ import annotations

from dataclasses import replace

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from kumo.api.context import RequestContext
from kumo.api.request_id import request_id_of
from kumo.db.engine import session_scope
from kumo.errors import Unauthorized
from kumo.identity.tokens import context_for
from kumo.runtime import Runtime


class TokenMiddleware:
    """Validates the token once; handlers call `kumo.api.context.context_of(request)`.

    A missing or bad token is not refused here: discovery documents are public.
    `context_of` raises 401 for handlers that need a caller, with the reason.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            token = None
            for name, value in scope["headers"]:
                if name == b"x-auth-token":
                    token = value.decode("latin-1").strip()
                    break
            if token:
                state = scope.setdefault("state", {})
                try:
                    context = await run_in_threadpool(self._validate, token)
                    state["context"] = replace(context, request_id=request_id_of(scope) or "")
                except Unauthorized as exc:
                    state["token_error"] = exc.message
        await self.app(scope, receive, send)

    def _validate(self, token: str) -> RequestContext:
        with session_scope(self.runtime.sessions) as session:
            context, _ = context_for(session, token)
            return context
