"""What identity's handlers share: the caller, Keystone's default policy, one transaction.

Keystone's default policy, kept simple: identity writes need the `admin` role (on any
scope); anyone may read themselves and what they hold roles on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from kumo.api.context import RequestContext, context_of
from kumo.api.parts import runtime_from
from kumo.db.engine import session_scope
from kumo.errors import Forbidden

T = TypeVar("T")


def caller(request: Request) -> RequestContext:
    """The authenticated caller; identity accepts tokens of any scope (even unscoped)."""
    return context_of(request, any_scope=True)


def deny(action: str) -> Forbidden:
    return Forbidden(f"You are not authorized to perform the requested action: identity:{action}.")


def admin(request: Request, action: str) -> RequestContext:
    """The caller, who must hold the admin role; Keystone's 403 otherwise."""
    context = caller(request)
    if not context.is_admin:
        raise deny(action)
    return context


def self_or_admin(request: Request, user_id: str, action: str) -> RequestContext:
    context = caller(request)
    if not context.is_admin and user_id != context.user_id:
        raise deny(action)
    return context


def v3_url(request: Request) -> str:
    from kumo.api.app import endpoint

    return endpoint(runtime_from(request), "identity")


async def run(request: Request, work: Callable[[Session], T]) -> T:
    """Run `work` in a worker thread inside one transaction (all or nothing)."""
    sessions = runtime_from(request).sessions

    def call() -> T:
        with session_scope(sessions) as session:
            return work(session)

    return await run_in_threadpool(call)


def flag(raw: str) -> bool:
    # Keystone reads these query values as false; anything else (even empty) as true.
    return raw.strip().lower() not in ("0", "false", "no", "off")


def as_json(document: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(document, status_code=status)

