"""Metadef rules: who sees which namespace, and the changes to namespaces and their parts.

Glance's default policy: anyone may read public namespaces and their own project's
private ones; only an admin creates, changes or deletes definitions. A protected
namespace (or one of its parts) cannot be deleted until `protected` is set false.
The default catalog (`catalog/*.json`) is loaded on first start.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.db.base import utcnow
from kumo.errors import BadRequest, Conflict, Forbidden, NotFound
from kumo.image.metadefs.models import MetadefNamespace, MetadefResourceType
from kumo.image.schemas import timestamp

VISIBILITIES = ("public", "private")
MAX_NAME = 80
API_LIMIT_MAX = 1000  # Glance's api_limit_max
PROPERTY_TYPES = ("string", "integer", "number", "boolean", "array", "object")
# The resource types Glance ships; more appear when an association names a new one.
DEFAULT_RESOURCE_TYPES = ("OS::Glance::Image", "OS::Cinder::Volume", "OS::Nova::Flavor",
                          "OS::Nova::Server", "OS::Nova::Aggregate", "OS::Glance::Snapshot")


def _now() -> str:
    return timestamp(utcnow())


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME or value.strip() != value:
        raise BadRequest(f"Invalid {what} {value!r}: 1 to {MAX_NAME} characters, no padding")
    return value


# ---- namespaces -----------------------------------------------------------------------


def can_read(context: RequestContext, ns: MetadefNamespace) -> bool:
    return ns.visibility == "public" or context.is_admin or ns.owner == context.project_id


def get_namespace(session: Session, context: RequestContext, name: str) -> MetadefNamespace:
    """The namespace if the caller may see it; 404 otherwise (no leaking of names)."""
    ns = session.get(MetadefNamespace, name)
    if ns is None or not can_read(context, ns):
        raise NotFound(f"Metadata definition namespace={name} was not found.")
    return ns


def writable_namespace(session: Session, context: RequestContext,
                       name: str) -> MetadefNamespace:
    ns = get_namespace(session, context, name)
    context.require_admin()
    return ns


def list_namespaces(session: Session, context: RequestContext,
                    query: dict[str, str]) -> list[MetadefNamespace]:
    found = [ns for ns in session.scalars(select(MetadefNamespace)) if can_read(context, ns)]
    if "visibility" in query:
        found = [ns for ns in found if ns.visibility == query["visibility"]]
    if "resource_types" in query:
        wanted = set(query["resource_types"].split(","))
        found = [ns for ns in found if wanted & {a["name"] for a in ns.resource_types}]
    key = query.get("sort_key", "created_at")
    if key not in ("namespace", "created_at", "updated_at", "display_name"):
        raise BadRequest(f"Invalid sort_key {key!r}")
    direction = query.get("sort_dir", "desc" if key == "created_at" else "asc")
    if direction not in ("asc", "desc"):
        raise BadRequest(f"Invalid sort_dir {direction!r}: asc or desc")
    found.sort(key=lambda ns: (getattr(ns, key), ns.namespace), reverse=direction == "desc")
    if "marker" in query:
        names = [ns.namespace for ns in found]
        if query["marker"] not in names:
            raise NotFound(f"Metadata definition namespace={query['marker']} was not found.")
        found = found[names.index(query["marker"]) + 1:]
    limit = query.get("limit")
    if limit is not None:
        if not limit.isdigit() or len(limit) > 9:
            raise BadRequest("limit must be a whole number below 10^9")
        found = found[: min(int(limit), API_LIMIT_MAX)]
    return found


def _namespace_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if creating or "namespace" in body:
        fields["namespace"] = _name(body.get("namespace"), "namespace")
    for key in ("display_name", "description"):
        if body.get(key) is not None:
            if not isinstance(body[key], str):
                raise BadRequest(f"Invalid value for {key}: a string")
            fields[key] = body[key]
    if "visibility" in body:
        if body["visibility"] not in VISIBILITIES:
            raise BadRequest(f"Invalid visibility {body['visibility']!r}: public or private")
        fields["visibility"] = body["visibility"]
    if "protected" in body:
        if not isinstance(body["protected"], bool):
            raise BadRequest("Invalid value for protected: a boolean")
        fields["protected"] = body["protected"]
    if body.get("owner") is not None:
        fields["owner"] = str(body["owner"])
    return fields


def create_namespace(session: Session, context: RequestContext,
                     body: dict[str, Any]) -> MetadefNamespace:
    """A namespace with whatever properties, objects, tags and associations it came with."""
    context.require_admin()
    fields = _namespace_fields(body, creating=True)
    if session.get(MetadefNamespace, fields["namespace"]) is not None:
        raise Conflict(f"Metadata definition namespace={fields['namespace']} already exists.")
    ns = MetadefNamespace(owner=context.project_id, **fields)
    ns.properties = {name: check_property(name, schema)
                     for name, schema in (body.get("properties") or {}).items()}
    ns.objects = [_object_record(obj, None) for obj in body.get("objects") or []]
    ns.tags = [_tag_record(_tag_name(t)) for t in body.get("tags") or []]
    ns.resource_types = []
    session.add(ns)
    for association in body.get("resource_type_associations") or []:
        associate(session, ns, association)
    session.flush()
    return ns


def update_namespace(session: Session, context: RequestContext, name: str,
                     body: dict[str, Any]) -> MetadefNamespace:
    ns = writable_namespace(session, context, name)
    fields = _namespace_fields(body, creating=False)
    new_name = fields.pop("namespace", name)
    if new_name != name:
        if session.get(MetadefNamespace, new_name) is not None:
            raise Conflict(f"Metadata definition namespace={new_name} already exists.")
        ns.namespace = new_name
    for key, value in fields.items():
        setattr(ns, key, value)
    ns.updated_at = utcnow()
    session.flush()
    return ns


def delete_namespace(session: Session, context: RequestContext, name: str) -> None:
    ns = writable_namespace(session, context, name)
    _refuse_if_protected(ns)
    session.delete(ns)
    session.flush()


def _refuse_if_protected(ns: MetadefNamespace) -> None:
    if ns.protected:
        raise Forbidden(f"Namespace {ns.namespace} is protected and cannot be deleted "
                        "(set protected to false first).")


def change(session: Session, context: RequestContext, name: str,
           edit: Callable[[MetadefNamespace], Any]) -> Any:
    """Apply `edit` to an admin-writable namespace, stamping it updated."""
    ns = writable_namespace(session, context, name)
    result = edit(ns)
    ns.updated_at = utcnow()
    session.flush()
    return result


# ---- properties -----------------------------------------------------------------------


def check_property(name: str, schema: Any) -> dict[str, Any]:
    """A property definition: a JSON schema with a type and a title."""
    _name(name, "property name")
    if not isinstance(schema, dict):
        raise BadRequest(f"Invalid property {name}: a JSON object")
    checked: dict[str, Any] = {k: v for k, v in schema.items() if k != "name"}
    if checked.get("type") not in PROPERTY_TYPES:
        raise BadRequest(f"Invalid type for property {name}: one of {', '.join(PROPERTY_TYPES)}")
    if not isinstance(checked.get("title"), str) or not checked["title"]:
        raise BadRequest(f"Property {name} needs a title")
    if "enum" in checked and not isinstance(checked["enum"], list):
        raise BadRequest(f"Invalid enum for property {name}: a list")
    return checked


def set_property(ns: MetadefNamespace, name: str, schema: dict[str, Any],
                 *, creating: bool, old_name: str | None = None) -> dict[str, Any]:
    properties = dict(ns.properties or {})
    if creating and name in properties:
        raise Conflict(f"A metadata definition property with name={name} already exists in "
                       f"namespace={ns.namespace}.")
    if old_name is not None:
        if old_name not in properties:
            raise _missing("property", old_name, ns)
        if name != old_name and name in properties:
            raise Conflict(f"A metadata definition property with name={name} already exists.")
        properties.pop(old_name)
    properties[name] = check_property(name, schema)
    ns.properties = properties
    return {"name": name, **properties[name]}


def get_property(ns: MetadefNamespace, name: str) -> dict[str, Any]:
    if name not in (ns.properties or {}):
        raise _missing("property", name, ns)
    return {"name": name, **ns.properties[name]}


def delete_property(ns: MetadefNamespace, name: str) -> None:
    get_property(ns, name)
    ns.properties = {k: v for k, v in ns.properties.items() if k != name}


def _missing(kind: str, name: str, ns: MetadefNamespace) -> NotFound:
    return NotFound(f"Metadata definition {kind} not found for namespace={ns.namespace}: {name}")


# ---- objects --------------------------------------------------------------------------


def _object_record(body: Any, existing: dict[str, Any] | None) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("A metadata definition object is a JSON object")
    name = _name(body.get("name"), "object name")
    properties = {key: check_property(key, value)
                  for key, value in (body.get("properties") or {}).items()}
    required = body.get("required") or []
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise BadRequest(f"Invalid required list for object {name}")
    now = _now()
    return {"name": name, "description": str(body.get("description") or ""),
            "required": required, "properties": properties,
            "created_at": existing["created_at"] if existing else now, "updated_at": now}


def find_object(ns: MetadefNamespace, name: str) -> dict[str, Any]:
    for obj in ns.objects or []:
        if obj["name"] == name:
            return dict(obj)
    raise _missing("object", name, ns)


def put_object(ns: MetadefNamespace, body: Any, *, old_name: str | None) -> dict[str, Any]:
    objects = list(ns.objects or [])
    existing = find_object(ns, old_name) if old_name is not None else None
    record = _object_record(body, existing)
    names = [o["name"] for o in objects]
    if record["name"] in names and record["name"] != old_name:
        raise Conflict(f"A metadata definition object with name={record['name']} already "
                       f"exists in namespace={ns.namespace}.")
    if old_name is not None:
        objects[names.index(old_name)] = record
    else:
        objects.append(record)
    ns.objects = objects
    return record


def delete_object(ns: MetadefNamespace, name: str) -> None:
    find_object(ns, name)
    ns.objects = [o for o in ns.objects if o["name"] != name]


# ---- tags -----------------------------------------------------------------------------


def _tag_name(body: Any) -> str:
    if not isinstance(body, dict):
        raise BadRequest("A metadata definition tag is {\"name\": …}")
    return _name(body.get("name"), "tag name")


def _tag_record(name: str, created: str | None = None) -> dict[str, Any]:
    now = _now()
    return {"name": name, "created_at": created or now, "updated_at": now}


def find_tag(ns: MetadefNamespace, name: str) -> dict[str, Any]:
    for tag in ns.tags or []:
        if tag["name"] == name:
            return dict(tag)
    raise _missing("tag", name, ns)


def add_tags(ns: MetadefNamespace, bodies: Any, *, append: bool) -> list[dict[str, Any]]:
    """POST …/tags: create these tags (replacing the existing ones unless `append`)."""
    if not isinstance(bodies, list):
        raise BadRequest("tags must be a list of {\"name\": …}")
    names = [_tag_name(b) for b in bodies]
    if len(set(names)) != len(names):
        raise Conflict("Duplicate tag names in the request")
    kept = list(ns.tags or []) if append else []
    if set(names) & {t["name"] for t in kept}:
        raise Conflict("A metadata tag with that name already exists in namespace="
                       f"{ns.namespace}.")
    ns.tags = kept + [_tag_record(n) for n in names]
    return list(ns.tags)


def add_tag(ns: MetadefNamespace, name: str) -> dict[str, Any]:
    _name(name, "tag name")
    if any(t["name"] == name for t in ns.tags or []):
        raise Conflict(f"A metadata tag with name={name} already exists in namespace="
                       f"{ns.namespace}.")
    record = _tag_record(name)
    ns.tags = [*(ns.tags or []), record]
    return record


def rename_tag(ns: MetadefNamespace, name: str, body: Any) -> dict[str, Any]:
    old = find_tag(ns, name)
    new_name = _tag_name(body)
    if new_name != name and any(t["name"] == new_name for t in ns.tags):
        raise Conflict(f"A metadata tag with name={new_name} already exists.")
    record = _tag_record(new_name, old["created_at"])
    ns.tags = [record if t["name"] == name else t for t in ns.tags]
    return record


def delete_tag(ns: MetadefNamespace, name: str) -> None:
    find_tag(ns, name)
    ns.tags = [t for t in ns.tags if t["name"] != name]


# ---- resource types -------------------------------------------------------------------


def list_resource_types(session: Session) -> list[MetadefResourceType]:
    return list(session.scalars(select(MetadefResourceType).order_by(MetadefResourceType.name)))


def associate(session: Session, ns: MetadefNamespace, body: Any) -> dict[str, Any]:
    """Associate a resource type (created when new) with the namespace."""
    if not isinstance(body, dict):
        raise BadRequest("A resource type association is a JSON object")
    name = _name(body.get("name"), "resource type name")
    if any(a["name"] == name for a in ns.resource_types or []):
        raise Conflict(f"The metadata definition resource-type association of "
                       f"resource-type={name} to namespace={ns.namespace}, already exists.")
    if session.get(MetadefResourceType, name) is None:
        session.add(MetadefResourceType(name=name))
    now = _now()
    record = {"name": name, "created_at": now, "updated_at": now}
    for key in ("prefix", "properties_target"):
        if body.get(key) is not None:
            if not isinstance(body[key], str):
                raise BadRequest(f"Invalid {key}: a string")
            record[key] = body[key]
    ns.resource_types = [*(ns.resource_types or []), record]
    return record


def dissociate(ns: MetadefNamespace, name: str) -> None:
    if not any(a["name"] == name for a in ns.resource_types or []):
        raise NotFound(f"Failed to find resource type {name} in namespace {ns.namespace}")
    ns.resource_types = [a for a in ns.resource_types if a["name"] != name]


# ---- the default catalog --------------------------------------------------------------


def load_default_catalog(session: Session) -> int:
    """On first start (no resource types yet): the resource types and kumo's namespaces."""
    if session.scalar(select(MetadefResourceType.name).limit(1)) is not None:
        return 0
    for name in DEFAULT_RESOURCE_TYPES:
        session.add(MetadefResourceType(name=name, protected=True))
    session.flush()
    loaded = 0
    folder = resources.files("kumo.image.metadefs").joinpath("catalog")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        document = json.loads(entry.read_text())
        if session.get(MetadefNamespace, document["namespace"]) is not None:
            continue
        ns = MetadefNamespace(owner=None, **_namespace_fields(document, creating=True))
        ns.properties = {n: check_property(n, s) for n, s in document["properties"].items()}
        ns.objects, ns.tags, ns.resource_types = [], [], []
        session.add(ns)
        for association in document.get("resource_type_associations", []):
            associate(session, ns, association)
        loaded += 1
    session.flush()
    return loaded
