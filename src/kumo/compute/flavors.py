"""Flavors: the sizes servers come in. Anyone may look; only admins create and delete."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.compute.models import Flavor, FlavorAccess
from kumo.db.base import new_id
from kumo.errors import BadRequest, Conflict, NotFound

# devstack's defaults, with the sizes the issue asks for: (id, name, vcpus, ram MB, disk GB)
DEFAULT_FLAVORS = (
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
    ("5", "m1.xlarge", 8, 16384, 160),
)

_ID = re.compile(r"^[\w.\- ]{1,255}$")
_MAX_INT = 2**31 - 1


def seed_defaults(session: Session) -> None:
    """Create the default flavors once (a deleted default stays deleted after the first seed)."""
    if session.scalar(select(Flavor.id).limit(1)) is not None:
        return
    for flavor_id, name, vcpus, ram, disk in DEFAULT_FLAVORS:
        session.add(Flavor(id=flavor_id, name=name, vcpus=vcpus, ram=ram, disk=disk))
    session.flush()


def get_flavor(session: Session, flavor_id: str) -> Flavor:
    """The flavor with this id; itemNotFound otherwise (nova looks flavors up by id only)."""
    flavor = session.get(Flavor, flavor_id)
    if flavor is None:
        raise NotFound(f"Flavor {flavor_id} could not be found.")
    return flavor


def list_flavors(session: Session, context: RequestContext, query: dict[str, str]) -> list[Flavor]:
    """Flavors filtered by minDisk/minRam/is_public, sorted, paged with limit/marker."""
    stmt = select(Flavor)
    if "minDisk" in query:
        stmt = stmt.where(Flavor.disk >= _int(query["minDisk"], "minDisk"))
    if "minRam" in query:
        stmt = stmt.where(Flavor.ram >= _int(query["minRam"], "minRam"))
    # nova: non-admins see public flavors and private ones shared with their project;
    # admins choose with is_public=true|false|none
    if context.is_admin:
        public = query.get("is_public", "true").lower()
        if public in ("false", "f", "0", "no"):
            stmt = stmt.where(Flavor.is_public.is_(False))
        elif public != "none":
            stmt = stmt.where(Flavor.is_public.is_(True))
    else:
        shared = select(FlavorAccess.flavor_id).where(
            FlavorAccess.project_id == context.project_id)
        stmt = stmt.where(Flavor.is_public.is_(True) | Flavor.id.in_(shared))
    sort_key = query.get("sort_key", "flavorid")
    columns = {"flavorid": Flavor.id, "id": Flavor.id, "name": Flavor.name, "memory_mb": Flavor.ram,
               "ram": Flavor.ram, "vcpus": Flavor.vcpus, "root_gb": Flavor.disk,
               "disk": Flavor.disk, "created_at": Flavor.created_at}
    if sort_key not in columns:
        raise BadRequest(f"Invalid sort_key {sort_key!r}")
    column = columns[sort_key]
    stmt = stmt.order_by(column.desc() if query.get("sort_dir") == "desc" else column.asc())
    flavors = list(session.scalars(stmt))
    if sort_key in ("flavorid", "id"):
        # nova's flavorids are strings; "10" sorts after "9" the way people expect
        flavors.sort(key=lambda f: (not f.id.isdigit(), int(f.id) if f.id.isdigit() else 0, f.id),
                     reverse=query.get("sort_dir") == "desc")
    if "marker" in query:
        ids = [f.id for f in flavors]
        if query["marker"] not in ids:
            raise BadRequest(f"marker [{query['marker']}] not found")
        flavors = flavors[ids.index(query["marker"]) + 1:]
    if "limit" in query:
        flavors = flavors[: _int(query["limit"], "limit")]
    return flavors


def create_flavor(session: Session, context: RequestContext, body: dict[str, Any]) -> Flavor:
    """POST /flavors: validate like nova's schema, refuse duplicate names and ids."""
    context.require_admin()
    spec = body.get("flavor") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise BadRequest("Invalid input: 'flavor' is a required property")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise BadRequest("Invalid input for field/attribute name: a name of 1-255 characters")
    flavor_id = spec.get("id")
    if flavor_id in (None, "auto"):
        flavor_id = new_id()
    if not isinstance(flavor_id, str) or not _ID.match(flavor_id):
        raise BadRequest(
            "Invalid input for field/attribute id: letters, digits, '.', '-', '_', ' '"
        )
    description = spec.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 65535):
        raise BadRequest("Invalid input for field/attribute description")
    flavor = Flavor(
        id=flavor_id,
        name=name.strip(),
        vcpus=_field(spec, "vcpus", 1),
        ram=_field(spec, "ram", 1),
        disk=_field(spec, "disk", 0),
        ephemeral=_field(spec, "OS-FLV-EXT-DATA:ephemeral", 0, default=0),
        swap=_field(spec, "swap", 0, default=0),
        rxtx_factor=_rxtx_factor(spec.get("rxtx_factor", 1.0)),
        is_public=_public(spec.get("os-flavor-access:is_public", True)),
        description=description,
    )
    if session.scalar(select(Flavor).where(Flavor.name == flavor.name)) is not None:
        raise Conflict(f"Flavor with name {flavor.name} already exists.")
    if session.get(Flavor, flavor.id) is not None:
        raise Conflict(f"Flavor with ID {flavor.id} already exists.")
    session.add(flavor)
    session.flush()
    return flavor


def delete_flavor(session: Session, context: RequestContext, flavor_id: str) -> None:
    """Servers keep a copy of their flavor, so deleting one never touches them."""
    context.require_admin()
    session.delete(get_flavor(session, flavor_id))


def _field(spec: dict[str, Any], name: str, minimum: int, default: int | None = None) -> int:
    value = spec.get(name, default)
    if value is None:
        raise BadRequest(f"Invalid input: '{name}' is a required property")
    if name == "swap" and value == "":
        return 0
    if isinstance(value, bool):
        raise BadRequest(f"Invalid input for field/attribute {name}: {value!r} is not an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequest(
            f"Invalid input for field/attribute {name}: {value!r} is not an integer"
        ) from None
    if isinstance(value, float) and value != number:
        raise BadRequest(f"Invalid input for field/attribute {name}: {value!r} is not an integer")
    if not minimum <= number <= _MAX_INT:
        raise BadRequest(f"Invalid input for field/attribute {name}: must be >= {minimum}")
    return number


def _public(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise BadRequest(f"Invalid input for field/attribute os-flavor-access:is_public: "
                     f"{value!r} is not a boolean")


def _rxtx_factor(value: Any) -> float:
    # nova's schema: a number above 0 (a numeric string is accepted too), at most 3.40282e38
    wrong = BadRequest(f"Invalid input for field/attribute rxtx_factor: {value!r} is not a number")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise wrong
    try:
        number = float(value)
    except ValueError:
        raise wrong from None
    if not 0 < number <= 3.40282e38:
        raise BadRequest("Invalid input for field/attribute rxtx_factor: must be above 0")
    return number


def _int(value: str, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"Invalid {what} value {value!r}: expected a whole number") from None
    if number < 0:
        raise BadRequest(f"Invalid {what} value {value!r}: must be >= 0")
    return number
