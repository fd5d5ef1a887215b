"""Build one part's ASGI app: its routes, its error shape, the runtime on its state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import BaseRoute

from kumo.api.context import RequestContext, context_of
from kumo.api.errors import Flavor, UnexpectedErrors, handlers
from kumo.db.engine import session_scope
from kumo.runtime import Runtime

T = TypeVar("T")


def part_app(runtime: Runtime, routes: Sequence[BaseRoute], flavor: Flavor) -> Starlette:
    app = Starlette(
        routes=list(routes),
        exception_handlers=handlers(flavor),
        middleware=[Middleware(UnexpectedErrors, flavor=flavor)],
    )
    app.state.runtime = runtime
    return app


def runtime_from(request: Request) -> Runtime:
    """The runtime of the app serving `request` (each part app carries it)."""
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


async def in_session(request: Request, work: Callable[[Session, RequestContext], T]) -> T:
    """Run `work(session, caller)` in one transaction on a worker thread.

    The caller must be authenticated (401 otherwise); the transaction commits when
    `work` returns and rolls back when it raises.
    """
    context = context_of(request)
    runtime = runtime_from(request)

    def run() -> T:
        with session_scope(runtime.sessions) as session:
            return work(session, context)

    return await run_in_threadpool(run)
