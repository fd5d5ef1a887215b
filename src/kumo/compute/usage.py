"""os-simple-tenant-usage: vCPU, RAM and disk hours of servers within a time window.

A server counts from its launch until it was deleted (deleted servers keep their
record for this), clipped to the window the caller asks for (default: the time
of the request, so only the window given matters).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumo.api.context import RequestContext
from kumo.api.parts import in_session
from kumo.compute.microversion import version_of
from kumo.compute.models import DELETED, Server
from kumo.db.base import utcnow
from kumo.errors import BadRequest

_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f",
            "%Y-%m-%d %H:%M:%S")


def parse_time(value: str) -> datetime:
    text = value.strip().removesuffix("Z")
    for fmt in _FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"Invalid time format {value!r}: expected e.g. "
                         "2026-01-31T12:00:00") from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def window(query: dict[str, str]) -> tuple[datetime, datetime]:
    now = utcnow()
    start = parse_time(query["start"]) if query.get("start") else now
    stop = parse_time(query["end"]) if query.get("end") else now
    if start > stop:
        raise BadRequest("Invalid start time. The start time cannot occur after the end time.")
    return start, stop


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stamp(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") if moment else None


def server_usage(server: Server, start: datetime, stop: datetime) -> dict[str, Any] | None:
    began = _aware(server.launched_at) or _aware(server.created_at)
    assert began is not None
    ended = _aware(server.deleted_at) if server.vm_state == DELETED else None
    first, last = max(began, start), min(ended or stop, stop)
    if last < first:
        return None
    hours = (last - first) / timedelta(hours=1)
    uptime = int(((ended or utcnow()) - began).total_seconds())
    return {"instance_id": server.id, "name": server.name, "tenant_id": server.project_id,
            "flavor": server.flavor_name, "hours": hours, "vcpus": server.vcpus,
            "memory_mb": server.memory_mb, "local_gb": server.root_gb + server.ephemeral_gb,
            "started_at": _stamp(began), "ended_at": _stamp(ended),
            "state": "terminated" if server.vm_state == DELETED else server.vm_state,
            "uptime": uptime}


def tenant_usages(session: Session, context: RequestContext, query: dict[str, str],
                  project_id: str | None, *, detailed: bool) -> list[dict[str, Any]]:
    start, stop = window(query)
    stmt = select(Server).where(or_(Server.deleted_at.is_(None), Server.deleted_at >= start),
                                Server.created_at <= stop).order_by(Server.created_at, Server.id)
    if project_id is not None:
        if project_id != context.project_id:
            context.require_admin()
        stmt = stmt.where(Server.project_id == project_id)
    else:
        context.require_admin()
    by_project: dict[str, list[dict[str, Any]]] = {}
    for server in session.scalars(stmt):
        used = server_usage(server, start, stop)
        if used is not None:
            by_project.setdefault(server.project_id, []).append(used)
    result = []
    for tenant, rows in by_project.items():
        entry: dict[str, Any] = {
            "tenant_id": tenant, "start": _stamp(start), "stop": _stamp(stop),
            "total_hours": sum(r["hours"] for r in rows),
            "total_vcpus_usage": sum(r["hours"] * r["vcpus"] for r in rows),
            "total_memory_mb_usage": sum(r["hours"] * r["memory_mb"] for r in rows),
            "total_local_gb_usage": sum(r["hours"] * r["local_gb"] for r in rows)}
        if detailed:
            entry["server_usages"] = rows
        result.append(entry)
    return result


def _page(request: Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """2.40: limit/marker page through server usages."""
    if version_of(request) < (2, 40):
        return rows
    query = request.query_params
    if "marker" in query:
        ids = [r["instance_id"] for r in rows]
        if query["marker"] not in ids:
            raise BadRequest(f"Marker {query['marker']} could not be found.")
        rows = rows[ids.index(query["marker"]) + 1:]
    if "limit" in query:
        try:
            rows = rows[: int(query["limit"])]
        except ValueError:
            raise BadRequest("Invalid limit: a whole number") from None
    return rows


async def list_usage(request: Request) -> Response:
    query = dict(request.query_params)
    detailed = query.get("detailed", "0").lower() in ("1", "true")
    found = await in_session(request, lambda s, c: tenant_usages(
        s, c, query, None, detailed=detailed))
    for entry in found:
        if "server_usages" in entry:
            entry["server_usages"] = _page(request, entry["server_usages"])
    return JSONResponse({"tenant_usages": found})


async def show_usage(request: Request) -> Response:
    query, tenant = dict(request.query_params), request.path_params["tenant_id"]
    found = await in_session(request, lambda s, c: tenant_usages(
        s, c, query, tenant, detailed=True))
    if not found:  # nova: a project without usage in the window shows {}
        return JSONResponse({"tenant_usage": {}})
    entry = found[0]
    entry["server_usages"] = _page(request, entry["server_usages"])
    return JSONResponse({"tenant_usage": entry})


def routes(prefix: str) -> list[Route]:
    return [Route(prefix + "/os-simple-tenant-usage", list_usage),
            Route(prefix + "/os-simple-tenant-usage/{tenant_id}", show_usage)]
