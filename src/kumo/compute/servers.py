"""Server records: create (validated as nova does), look up, and the state rules of actions.

Everything here runs inside one database session and changes records only;
`kumo.compute.service.ComputeService` does the slow work (spawn, power, delete)
in the background and moves the records on when it is done.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.compute.flavors import get_flavor
from kumo.compute.images import ImagePort, check_bootable
from kumo.compute.instance_source import NETWORK_ID
from kumo.compute.keypairs import get_keypair
from kumo.compute.microversion import Version
from kumo.compute.models import (
    ACTIVE,
    BUILDING,
    ERROR,
    STOPPED,
    InstanceAction,
    Server,
    server_status,
)
from kumo.db.base import utcnow
from kumo.errors import BadRequest, Conflict, NotFound
from kumo.network import secgroups

NETWORK_NAME = "kumo-net"
RESERVED_META_PREFIX = "kumo:"
_HOSTNAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
_STATUS_FILTERS = {"ACTIVE", "BUILD", "SHUTOFF", "ERROR", "REBOOT", "HARD_REBOOT", "DELETED",
                   "PAUSED", "SUSPENDED", "SHELVED", "SHELVED_OFFLOADED", "RESIZE",
                   "VERIFY_RESIZE", "MIGRATING", "RESCUE", "REBUILD", "UNKNOWN",
                   "SOFT_DELETED", "PASSWORD", "REVERT_RESIZE"}


def hostname_from(name: str) -> str:
    """nova's sanitize_hostname: what the guest calls itself."""
    text = re.sub(r"[ _]", "-", name.lower())
    text = re.sub(r"[^\w.-]+", "", text, flags=re.ASCII).replace(".", "-")
    return text.strip("-")[:63] or "server"


def record_action(session: Session, server: Server, action: str, context: RequestContext | None,
                  message: str | None = None) -> InstanceAction:
    """Start an instance action (os-instance-actions); the worker finishes it."""
    entry = InstanceAction(
        server_id=server.id, action=action,
        request_id=(context.request_id if context else "") or f"req-{uuid.uuid4()}",
        user_id=context.user_id if context else None,
        project_id=context.project_id if context else server.project_id, message=message,
    )
    session.add(entry)
    return entry


def finish_action(session: Session, server_id: str, action: str, error: str | None = None) -> None:
    entry = session.scalar(select(InstanceAction).where(
        InstanceAction.server_id == server_id, InstanceAction.action == action,
        InstanceAction.finish_time.is_(None)).order_by(InstanceAction.id.desc()))
    if entry is not None:
        entry.finish_time = utcnow()
        entry.result = "Error" if error else "Success"
        if error:
            entry.message = error


def set_fault(server: Server, message: str, code: int = 500) -> None:
    server.fault_code, server.fault_message, server.fault_created = code, message, utcnow()


def create_server(session: Session, context: RequestContext, body: Any, version: Version,
                  images: ImagePort, user_data: bytes | None) -> Server:
    """POST /servers: a BUILD record (the caller then asks the service to spawn it)."""
    context.require_writer()
    spec = body.get("server") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise BadRequest("Invalid input: 'server' is a required property")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise BadRequest("Invalid input for field/attribute name: 1-255 characters required")
    _refuse_unsupported(spec, version)
    image_ref = spec.get("imageRef")
    if not image_ref and spec.get("block_device_mapping_v2"):
        image_ref = spec["block_device_mapping_v2"][0].get("uuid")
    if not isinstance(image_ref, str) or not image_ref:
        raise BadRequest("Invalid input: imageRef is required (kumo boots from images only)")
    flavor_ref = spec.get("flavorRef")
    if not isinstance(flavor_ref, str | int) or not str(flavor_ref):
        raise BadRequest("Invalid input: 'flavorRef' is a required property")
    try:
        flavor = get_flavor(session, str(flavor_ref).rstrip("/").rsplit("/", 1)[-1])
    except NotFound:
        raise BadRequest(f"Flavor {flavor_ref} could not be found.") from None
    image = images.boot_image(session, context, image_ref.rstrip("/").rsplit("/", 1)[-1])
    check_bootable(image, flavor.ram, flavor.disk)
    _check_networks(spec.get("networks"), version)
    key_name, key_data = spec.get("key_name"), None
    if key_name is not None:
        try:
            key_data = get_keypair(session, context, str(key_name)).public_key
        except NotFound:
            raise BadRequest("Invalid key_name provided.") from None
    groups = [secgroups.find_for_server(session, context, ref)
              for ref in _group_refs(spec.get("security_groups"))]
    meta = check_metadata(spec.get("metadata", {}))
    hostname = hostname_from(name)
    if version >= (2, 90) and spec.get("hostname") is not None:
        hostname = str(spec["hostname"])
        if not _HOSTNAME.match(hostname) and not (version >= (2, 94) and len(hostname) <= 255):
            raise BadRequest(f"Invalid input for field/attribute hostname: {hostname!r}")
    server = Server(
        name=name, hostname=hostname, project_id=context.project_id, user_id=context.user_id,
        image_id=image.id, flavor_id=flavor.id, flavor_name=flavor.name, vcpus=flavor.vcpus,
        memory_mb=flavor.ram, root_gb=flavor.disk, ephemeral_gb=flavor.ephemeral,
        swap_mb=flavor.swap, key_name=key_name, key_data=key_data, user_data=user_data,
        config_drive=_boolean(spec.get("config_drive", False), "config_drive"),
        meta=meta, security_group_ids=[g.id for g in groups],
        description=_description(spec, version), tags=_tags(spec, version),
        reservation_id=f"r-{uuid.uuid4().hex[:8]}", vm_state=BUILDING, task_state="scheduling",
    )
    session.add(server)
    session.flush()
    record_action(session, server, "create", context)
    return server


def _refuse_unsupported(spec: dict[str, Any], version: Version) -> None:
    if "personality" in spec:
        if version >= (2, 57):
            raise BadRequest("Additional properties are not allowed ('personality' was unexpected)")
        raise BadRequest("kumo does not inject files (personality); use user_data instead")
    if spec.get("block_device_mapping") or not _image_only(spec.get("block_device_mapping_v2")):
        raise BadRequest("kumo has no volumes: boot from an image (imageRef); the only block "
                         "device mapping accepted is the image as the local root disk")
    for key in ("min_count", "max_count"):
        if key in spec and str(spec[key]) != "1":
            raise BadRequest(f"kumo creates one server per request ({key} must be 1)")
    zone = spec.get("availability_zone")
    if zone not in (None, "", "nova"):
        raise BadRequest(f"The requested availability zone is not available: {zone}")


def _image_only(mappings: Any) -> bool:
    """True for no mapping, or just "the image as local root disk" (what OSC always sends)."""
    if not mappings:
        return True
    if not isinstance(mappings, list) or len(mappings) != 1 or not isinstance(mappings[0], dict):
        return False
    bdm = mappings[0]
    return (bdm.get("source_type") == "image" and bdm.get("destination_type", "local") == "local"
            and str(bdm.get("boot_index", 0)) == "0")


def _check_networks(networks: Any, version: Version) -> None:
    if networks is None:
        if version >= (2, 37):
            raise BadRequest("Invalid input: 'networks' is a required property")
        return
    if networks in ("auto", "none") and version >= (2, 37):
        return
    if not isinstance(networks, list):
        raise BadRequest("Invalid input for field/attribute networks")
    for entry in networks:
        if not isinstance(entry, dict):
            raise BadRequest("Invalid input for field/attribute networks")
        if entry.get("port"):
            raise BadRequest("kumo has no ports to attach; use the network kumo-net")
        if entry.get("uuid") not in (None, NETWORK_ID):
            raise BadRequest(f"Network {entry.get('uuid')} could not be found.")


def _group_refs(value: Any) -> list[str]:
    if value is None:
        return ["default"]
    if not isinstance(value, list) or not all(isinstance(v, dict) and v.get("name")
                                              for v in value):
        raise BadRequest("Invalid input for field/attribute security_groups")
    return list(dict.fromkeys(str(v["name"]) for v in value))


def check_metadata(meta: Any) -> dict[str, str]:
    """nova's metadata schema: string keys 1-255, string values up to 255."""
    if not isinstance(meta, dict):
        raise BadRequest("Invalid input for field/attribute metadata: expected an object")
    for key, value in meta.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 255:
            raise BadRequest("Invalid input for field/attribute metadata: keys of 1-255 chars")
        if not isinstance(value, str) or len(value) > 255:
            raise BadRequest(f"Invalid input for field/attribute metadata.{key}: a string "
                             "of at most 255 characters")
        if key.startswith(RESERVED_META_PREFIX):
            raise BadRequest(f"Metadata keys starting with {RESERVED_META_PREFIX!r} are "
                             "kumo's own (it shows the SSH forward there)")
    if len(meta) > 128:
        raise BadRequest("Quota exceeded for metadata items: at most 128")
    return dict(meta)


def _description(spec: dict[str, Any], version: Version) -> str | None:
    value = spec.get("description")
    if value is None:
        return None
    if version < (2, 19):
        raise BadRequest("Additional properties are not allowed ('description' was unexpected)")
    if not isinstance(value, str) or len(value) > 255:
        raise BadRequest("Invalid input for field/attribute description")
    return value


def _tags(spec: dict[str, Any], version: Version) -> list[str]:
    value = spec.get("tags")
    if value is None:
        return []
    if version < (2, 52):
        raise BadRequest("Additional properties are not allowed ('tags' was unexpected)")
    if not isinstance(value, list) or len(value) > 50 or not all(
            isinstance(t, str) and 1 <= len(t) <= 60 and "/" not in t and "," not in t
            for t in value):
        raise BadRequest("Invalid input for field/attribute tags")
    return list(dict.fromkeys(value))


def _boolean(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", ""):
        return value.lower() in ("true", "1", "yes")
    raise BadRequest(f"Invalid input for field/attribute {what}: {value!r} is not a boolean")


def get_server(session: Session, context: RequestContext, server_id: str) -> Server:
    """A server the caller may see (its project's, or any for admins)."""
    server = session.get(Server, server_id)
    if server is None or not (context.is_admin or server.project_id == context.project_id):
        raise NotFound(f"Instance {server_id} could not be found.")
    return server


def list_servers(session: Session, context: RequestContext, query: dict[str, str],
                 version: Version) -> list[Server]:
    """GET /servers[/detail]: the project's servers (admins: all with all_tenants)."""
    stmt = select(Server).order_by(Server.created_at.desc(), Server.id)
    all_tenants = query.get("all_tenants", "0").lower() not in ("0", "false", "f", "no", "off")
    if "all_tenants" in query and query["all_tenants"] == "":
        all_tenants = True
    if all_tenants:
        context.require_admin()
        if query.get("project_id") or query.get("tenant_id"):
            stmt = stmt.where(Server.project_id == (query.get("project_id")
                                                    or query.get("tenant_id")))
    else:
        stmt = stmt.where(Server.project_id == context.project_id)
    servers = list(session.scalars(stmt))
    if "name" in query:
        try:
            pattern = re.compile(query["name"])
        except re.error:
            raise BadRequest(f"Invalid name filter {query['name']!r}: not a regex") from None
        servers = [s for s in servers if pattern.search(s.name)]
    if "status" in query:
        wanted = {query["status"].upper()}
        if version >= (2, 38) and not wanted <= _STATUS_FILTERS:
            raise BadRequest(f"Invalid status value: {', '.join(sorted(wanted))}")
        servers = [s for s in servers if server_status(s.vm_state, s.task_state) in wanted]
    for key, column in (("image", "image_id"), ("flavor", "flavor_id"),
                        ("key_name", "key_name"), ("user_id", "user_id")):
        if key in query:
            servers = [s for s in servers if str(getattr(s, column)) == query[key]]
    if "marker" in query:
        ids = [s.id for s in servers]
        if query["marker"] not in ids:
            raise BadRequest(f"marker [{query['marker']}] not found")
        servers = servers[ids.index(query["marker"]) + 1 :]
    if "limit" in query:
        try:
            servers = servers[: max(0, int(query["limit"]))]
        except ValueError:
            raise BadRequest(f"Invalid limit {query['limit']!r}") from None
    return servers


# action -> (vm_states it may start from, the task_state it sets)
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "stop": ((ACTIVE, ERROR), "powering-off"),
    "start": ((STOPPED,), "powering-on"),
    "reboot": ((ACTIVE,), "rebooting"),
    "reboot_hard": ((ACTIVE, STOPPED, ERROR), "rebooting_hard"),
    "createImage": ((ACTIVE, STOPPED), "image_snapshot"),
}


def check_action(context: RequestContext, server: Server, action: str) -> None:
    """409 like nova when the server cannot do `action` in its current state."""
    context.require_writer()
    allowed = ACTIONS[action][0]
    if action == "stop" and server.vm_state == ERROR and server.power_state == 0:
        allowed = (ACTIVE,)  # an ERROR server that never ran has nothing to stop
    if server.vm_state not in allowed or server.task_state is not None:
        verb = action.replace("_hard", "")
        raise Conflict(
            f"Cannot '{verb}' instance {server.id} while it is in vm_state {server.vm_state}"
            + (f" and task_state {server.task_state}" if server.task_state else "")
        )


def begin_action(session: Session, context: RequestContext, server: Server, action: str) -> None:
    """Check the server may do `action` now (409 like nova otherwise) and mark it busy."""
    check_action(context, server, action)
    server.task_state = ACTIONS[action][1]
    record_action(session, server, action.replace("_hard", ""), context)


def begin_delete(session: Session, context: RequestContext, server: Server) -> bool:
    """Mark the server for deletion; False when a delete is already under way."""
    context.require_writer()
    if server.task_state == "deleting":
        return False
    server.task_state = "deleting"
    record_action(session, server, "delete", context)
    return True
