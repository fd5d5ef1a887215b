"""Attach the caller's RequestContext to every request that carries X-Auth-Token."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import replace
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from kumo.api.app import PREFIXES
from kumo.api.context import RequestContext
from kumo.api.request_id import request_id_of
from kumo.db.engine import session_scope
from kumo.errors import Unauthorized
from kumo.identity.tokens import context_for
from kumo.runtime import Runtime

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDENTITY_PREFIX = PREFIXES["identity"] + "/"


class ValidatedTokens:
    """Contexts of tokens this process validated lately (keystonemiddleware's token
    cache): an entry lives `ttl` seconds, never past its token's expiry, and every entry
    goes at once when `invalidate()` is called (any identity change through this process).
    Bounded: the oldest entries make room for new ones."""

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self.ttl = ttl
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[RequestContext, int, float]] = OrderedDict()
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, token: str) -> RequestContext | None:
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            context, generation, stored = entry
            if (generation != self._generation or time.monotonic() - stored >= self.ttl
                    or datetime.now(UTC) >= context.expires_at):
                del self._entries[token]
                return None
            return context

    def put(self, token: str, context: RequestContext, generation: int) -> None:
        """Keep `context`, validated while the cache was at `generation` (a change made
        meanwhile means the validation may have read what that change replaced)."""
        if self.ttl <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return
            self._entries[token] = (context, generation, time.monotonic())
            self._entries.move_to_end(token)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()


def changes_identity(scope: Scope) -> bool:
    """Whether the request may change what a token confers: any write to the identity
    API but a log-in (`POST /v3/auth/tokens` issues a token and changes nothing else)."""
    path: str = scope["path"]
    if scope["method"] in SAFE_METHODS or not path.startswith(IDENTITY_PREFIX):
        return False
    return not (scope["method"] == "POST" and path.rstrip("/").endswith("/v3/auth/tokens"))


class TokenMiddleware:
    """Validates the token once; handlers call `kumo.api.context.context_of(request)`.

    A missing or bad token is not refused here: discovery documents are public.
    `context_of` raises 401 for handlers that need a caller, with the reason.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.validated = ValidatedTokens(runtime.settings.identity.token_cache_time)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = None
        for name, value in scope["headers"]:
            if name == b"x-auth-token":
                token = value.decode("latin-1").strip()
                break
        if token:
            state = scope.setdefault("state", {})
            try:
                context = self.validated.get(token)
                if context is None:
                    context = await run_in_threadpool(self._validate, token)
                state["context"] = replace(context, request_id=request_id_of(scope) or "")
            except Unauthorized as exc:
                state["token_error"] = exc.message
        if not changes_identity(scope):
            await self.app(scope, receive, send)
            return
        # before (a token validated from now on may be cut by this change) and after (one
        # validated while it ran may have read the old state)
        self.validated.invalidate()
        try:
            await self.app(scope, receive, send)
        finally:
            self.validated.invalidate()

    def _validate(self, token: str) -> RequestContext:
        generation = self.validated.generation
        with session_scope(self.runtime.sessions) as session:
            context, _ = context_for(session, token)
        self.validated.put(token, context, generation)
        return context
