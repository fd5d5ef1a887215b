"""What every Neutron resource module shares: request bodies, attribute checks, policies.

Neutron validates a body against its attribute map before any plugin sees it:
unknown attributes are refused (`Unrecognized attribute(s)`), strings have lengths,
booleans take `true`/`false` as well, and some attributes are admin-only to set
(`(rule:create_network:shared) is disallowed by policy`). These helpers say so in
Neutron's words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.network.errors import InvalidInput, NeutronBadRequest, PolicyNotAuthorized
from kumo.network.models import FloatingIP, Router

# Resources only their project (and admins) see.
Record = TypeVar("Record", Router, FloatingIP)


def resource_body(body: Any, key: str, allowed: Iterable[str]) -> dict[str, Any]:
    """The `{key: {...}}` object of a request, with only attributes Neutron knows."""
    spec = body.get(key) if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise NeutronBadRequest(f"Resource body required: {{'{key}': {{...}}}}")
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise NeutronBadRequest(f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    return spec


def text(spec: dict[str, Any], key: str, default: str = "", limit: int = 255) -> str:
    value = spec.get(key, default)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"'{value}' is not a valid string")
    if len(value) > limit:
        raise InvalidInput(f"'{value}' exceeds maximum length of {limit}")
    return value


def boolean(spec: dict[str, Any], key: str, default: bool) -> bool:
    """neutron-lib's convert_to_boolean: true/false, 1/0, and their strings."""
    value = spec.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise InvalidInput(f"'{value}' cannot be converted to boolean")


def whole(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise InvalidInput(f"'{value}' is not an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"'{value}' is not an integer for {key}") from None


def admin_only(context: RequestContext, action: str, spec: dict[str, Any],
               keys: Iterable[str]) -> None:
    """Refuse admin-only attributes from others, naming the policy rule as Neutron does."""
    if context.is_admin:
        return
    for key in keys:
        if key in spec:
            raise PolicyNotAuthorized(f"rule:{action}:{key}")


def owner_of(context: RequestContext, spec: dict[str, Any], action: str) -> str:
    """The project a new resource belongs to: the caller's, or another (admins only)."""
    project = spec.get("project_id") or spec.get("tenant_id") or context.project_id
    if not isinstance(project, str):
        raise InvalidInput(f"'{project}' is not a valid project id")
    if spec.get("project_id") and spec.get("tenant_id") and \
            spec["project_id"] != spec["tenant_id"]:
        raise InvalidInput("project_id and tenant_id do not match")
    if project != context.project_id and not context.is_admin:
        raise PolicyNotAuthorized(f"rule:{action}")
    return project


def require_default(spec: dict[str, Any], key: str, allowed: Iterable[Any], why: str) -> None:
    """An attribute kumo accepts only with a value it can honour (400 saying why)."""
    if key in spec and spec[key] not in tuple(allowed):
        raise NeutronBadRequest(f"{key} {spec[key]!r} is not supported: {why}")


def require_owner(context: RequestContext, action: str, *projects: str | None) -> None:
    """Admins, or a caller whose project is one of `projects` (403 naming the rule)."""
    if not context.is_admin and context.project_id not in projects:
        raise PolicyNotAuthorized(f"rule:{action}")


def get_owned(session: Session, context: RequestContext, model: type[Record], item_id: str,
              missing: Callable[[str], Exception]) -> Record:
    """A record of the caller's project (any for admins); `missing(id)` is raised otherwise."""
    record = session.get(model, item_id)
    if record is None or not (context.is_admin or record.project_id == context.project_id):
        raise missing(item_id)
    return record


def list_owned(session: Session, context: RequestContext, model: type[Record]) -> list[Record]:
    """The caller's project's records (every project's for admins), oldest first."""
    stmt = select(model).order_by(model.created_at, model.id)
    if not context.is_admin:
        stmt = stmt.where(model.project_id == context.project_id)
    return list(session.scalars(stmt))
