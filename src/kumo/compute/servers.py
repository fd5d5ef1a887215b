"""Server records: create (validated as nova does), look up, and the state rules of actions.

Everything here runs inside one database session and changes records only;
`kumo.compute.service.ComputeService` does the slow work (spawn, power, delete)
in the background and moves the records on when it is done.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.compute import block_devices, quotas, server_groups
from kumo.compute.block_devices import VolumeReserver
from kumo.compute.flavor_extras import visible_flavor
from kumo.compute.images import BootImage, ImagePort, check_bootable
from kumo.compute.keypairs import get_keypair
from kumo.compute.microversion import Version
from kumo.compute.models import (
    ACTIVE,
    BUILDING,
    DELETED,
    ERROR,
    PAUSED_VM,
    RESCUED,
    RESIZED,
    SHELVED,
    SHELVED_OFFLOADED,
    SOFT_DELETED,
    STOPPED,
    SUSPENDED_VM,
    InstanceAction,
    Server,
    server_status,
)
from kumo.compute.views import aware
from kumo.config import NetworkSettings, QuotaSettings
from kumo.db.base import utcnow
from kumo.errors import BadRequest, Conflict, NotFound
from kumo.network import nics, secgroups

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


@dataclass
class Created:
    """What POST /servers made: the servers (first one first) and what to answer."""

    servers: list[Server]
    admin_pass: str
    group_refs: list[str]
    reservation_id: str
    faults: dict[str, str] = field(default_factory=dict)  # server id -> placement fault


def new_password(length: int = 12) -> str:
    """nova's generate_password: letters and digits, no look-alikes."""
    alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def create_server(session: Session, context: RequestContext, body: Any, version: Version,
                  images: ImagePort, user_data: bytes | None,
                  quota: QuotaSettings | None = None,
                  network: NetworkSettings | None = None,
                  volumes: VolumeReserver | None = None,
                  scheduled: frozenset[str] | None = None) -> Created:
    """POST /servers: BUILD records (the caller then asks the service to spawn them).

    With block device mappings that put a volume at boot_index 0 a server is
    volume-backed (no image, no local disk); `volumes` makes and reserves its volumes.
    `scheduled` holds the availability zones of a cloud whose filter scheduler places
    servers on its hosts (kumo.compute.scheduler); None: this one host is the place.
    """
    context.require_writer()
    quota = quota or QuotaSettings()
    spec = body.get("server") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise BadRequest("Invalid input: 'server' is a required property")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise BadRequest("Invalid input for field/attribute name: 1-255 characters required")
    _refuse_unsupported(spec, version, scheduled or frozenset())
    min_count, max_count = _counts(spec)
    flavor_ref = spec.get("flavorRef")
    if not isinstance(flavor_ref, str | int) or not str(flavor_ref):
        raise BadRequest("Invalid input: 'flavorRef' is a required property")
    try:
        flavor = visible_flavor(session, context, str(flavor_ref).rstrip("/").rsplit("/", 1)[-1])
    except NotFound:
        raise BadRequest(f"Flavor {flavor_ref} could not be found.") from None
    devices, image = _boot_source(session, context, spec, version, images)
    with_volumes = any(d.destination_type == "volume" for d in devices)
    if with_volumes and volumes is None:
        raise BadRequest("This cloud has no Block Storage service for volumes")
    if with_volumes and max_count > 1:
        raise BadRequest("Volumes can only be attached to one server: create servers with "
                         "block device mappings one at a time (max_count 1)")
    if block_devices.is_volume_backed(devices):
        if image is not None and flavor.ram < image.min_ram:
            raise BadRequest("Flavor's memory is too small for requested image.")
        image_id = ""  # nova: a volume-backed server has no image
    else:
        if image is None:
            raise BadRequest("Invalid input: imageRef is required (or a block device mapping "
                             "with boot_index 0)")
        check_bootable(image, flavor.ram, flavor.disk)
        image_id = image.id
    if spec.get("networks") is None and version >= (2, 37):
        raise BadRequest("Invalid input: 'networks' is a required property")
    requested = nics.parse_requested(spec.get("networks"), auto_default=True)
    _check_nics_for_count(requested, max_count)
    key_name, key_data = spec.get("key_name"), None
    if key_name is not None:
        try:
            key_data = get_keypair(session, context, str(key_name)).public_key
        except NotFound:
            raise BadRequest("Invalid key_name provided.") from None
    refs = _group_refs(spec.get("security_groups"))
    groups = [secgroups.find_for_server(session, context, ref) for ref in refs]
    meta = check_metadata(spec.get("metadata", {}))
    quotas.check_metadata(session, quota, context.project_id, len(meta))
    access_v4, access_v6 = access_ips(spec)
    admin_pass = spec.get("adminPass")
    if admin_pass is None:
        admin_pass = new_password()
    elif not isinstance(admin_pass, str):
        raise BadRequest("Invalid input for field/attribute adminPass: a string")
    hostname = hostname_from(name)
    if version >= (2, 90) and spec.get("hostname") is not None:
        hostname = str(spec["hostname"])
        if not _HOSTNAME.match(hostname) and not (version >= (2, 94) and len(hostname) <= 255):
            raise BadRequest(f"Invalid input for field/attribute hostname: {hostname!r}")
        if max_count > 1 and version < (2, 94):
            raise BadRequest("Unable to set hostname with multiple instances (max_count > 1)")
    count = quotas.check_servers(session, quota, context, min_count, max_count, flavor.vcpus,
                                 flavor.ram)
    created = Created([], admin_pass, refs, f"r-{uuid.uuid4().hex[:8]}")
    hints = body.get("os:scheduler_hints", body.get("OS-SCH-HNT:scheduler_hints"))
    for index in range(count):
        own_name = name if count == 1 else f"{name}-{index + 1}"
        server = Server(
            name=own_name, hostname=hostname if count == 1 else hostname_from(own_name),
            project_id=context.project_id, user_id=context.user_id, image_id=image_id,
            flavor_id=flavor.id, flavor_name=flavor.name, vcpus=flavor.vcpus,
            memory_mb=flavor.ram, root_gb=flavor.disk, ephemeral_gb=flavor.ephemeral,
            swap_mb=flavor.swap, flavor_extra_specs=dict(flavor.extra_specs or {}),
            key_name=key_name, key_data=key_data, user_data=user_data,
            config_drive=_boolean(spec.get("config_drive", False), "config_drive"),
            meta=meta, security_group_ids=[g.id for g in groups],
            description=description_of(spec, version), tags=_tags(spec, version),
            access_ipv4=access_v4, access_ipv6=access_v6, disk_config=disk_config(spec),
            reservation_id=created.reservation_id, launch_index=index,
            availability_zone=spec.get("availability_zone") or "nova",
            vm_state=BUILDING, task_state="scheduling",
        )
        session.add(server)
        session.flush()
        if with_volumes and volumes is not None:
            volumes(session, context, server, devices)
        record_action(session, server, "create", context)
        fault = server_groups.join(session, context, server, hints, quota,
                                   decide=scheduled is None)
        if fault is None:
            fault = _allocate_ports(session, context, server, requested, groups,
                                    spec.get("security_groups") is not None, network)
        if fault is not None:
            server.vm_state, server.task_state = ERROR, None
            set_fault(server, fault)
            finish_action(session, server.id, "create", fault)
            created.faults[server.id] = fault
        created.servers.append(server)
    return created


def _boot_source(session: Session, context: RequestContext, spec: dict[str, Any],
                 version: Version, images: ImagePort,
                 ) -> tuple[list[block_devices.BlockDevice], BootImage | None]:
    """The block devices and the image the server boots (None for a volume)."""
    image_ref = spec.get("imageRef")
    if image_ref is not None and not isinstance(image_ref, str):
        raise BadRequest("Invalid input for field/attribute imageRef")
    image = images.boot_image(session, context, _ref_id(image_ref)) if image_ref else None
    devices = block_devices.parse(spec, version, image.properties if image else None)
    root = block_devices.root_of(devices)
    if root is not None and root.source_type == "image" and root.uuid and \
            (image is None or image.id != root.uuid):
        image = images.boot_image(session, context, root.uuid)
    if root is not None and root.source_type in ("volume", "snapshot", "blank"):
        image = None
    return devices, image


def _ref_id(ref: str) -> str:
    return ref.rstrip("/").rsplit("/", 1)[-1]


def _counts(spec: dict[str, Any]) -> tuple[int, int]:
    """min_count/max_count (nova: both default 1, min <= max)."""
    values = {}
    for key in ("min_count", "max_count"):
        raw = spec.get(key, 1)
        try:
            number = int(raw) if not isinstance(raw, bool) and str(raw).strip().isdigit() \
                else None
        except ValueError:
            number = None
        if number is None or number < 1:
            raise BadRequest(f"Invalid input for field/attribute {key}. Value: {raw}. "
                             "An integer >= 1 is required")
        values[key] = number
    if "max_count" not in spec:
        values["max_count"] = values["min_count"]
    if values["min_count"] > values["max_count"]:
        raise BadRequest("min_count must be <= max_count")
    return values["min_count"], values["max_count"]


def disk_config(spec: dict[str, Any], current: str = "MANUAL") -> str:
    """OS-DCF:diskConfig: AUTO (grow the root partition) or MANUAL, kept on the server."""
    value = spec.get("OS-DCF:diskConfig", current)
    if value not in ("AUTO", "MANUAL"):
        raise BadRequest(f"Invalid input for field/attribute OS-DCF:diskConfig. Value: "
                         f"{value}. {value!r} is not one of ['AUTO', 'MANUAL']")
    return str(value)


def access_ips(spec: dict[str, Any], v4: str = "", v6: str = "") -> tuple[str, str]:
    """accessIPv4/accessIPv6 as nova validates them (empty clears)."""
    for key, version in (("accessIPv4", 4), ("accessIPv6", 6)):
        if key not in spec:
            continue
        value = spec[key]
        if value in (None, ""):
            value = ""
        else:
            try:
                if not isinstance(value, str):
                    raise ValueError(value)
                address = ipaddress.ip_address(value)
                if address.version != version:
                    raise ValueError(value)
            except ValueError:
                raise BadRequest(f"Invalid input for field/attribute {key}. Value: {value}. "
                                 f"{value!r} is not a 'ipv{version}'") from None
            value = str(address)  # nova stores the canonical form
        if version == 4:
            v4 = value
        else:
            v6 = value
    return v4, v6


def _refuse_unsupported(spec: dict[str, Any], version: Version,
                        zones: frozenset[str] = frozenset()) -> None:
    if "personality" in spec:
        if version >= (2, 57):
            raise BadRequest("Additional properties are not allowed ('personality' was unexpected)")
        raise BadRequest("kumo does not inject files (personality); use user_data instead")
    zone = spec.get("availability_zone")
    if zone not in (None, "", "nova", *zones):
        raise BadRequest(f"The requested availability zone is not available: {zone}")


def _check_nics_for_count(requested: list[nics.NicRequest] | str, max_count: int) -> None:
    """nova: one port or one fixed IP cannot serve several servers of one request."""
    if max_count <= 1 or isinstance(requested, str):
        return
    if any(r.port_id for r in requested):
        raise BadRequest("Unable to launch multiple instances with a single configured port "
                         "ID. Please launch your instance one by one with different ports.")
    if any(r.fixed_ip for r in requested):
        raise BadRequest("Failed to launch instances: max_count cannot be greater than 1 if "
                         "an fixed_ip is specified.")


def _allocate_ports(session: Session, context: RequestContext, server: Server,
                    requested: list[nics.NicRequest] | str, groups: list[Any],
                    groups_explicit: bool, network: NetworkSettings | None) -> str | None:
    """The server's ports; nova's fault (no address left) instead of an error, if any."""
    try:
        nics.allocate_for_server(session, context, server.id, server.hostname, requested,
                                 [g.id for g in groups], groups_explicit,
                                 network or NetworkSettings())
    except nics.NoFixedIps as exc:
        return exc.message
    return None


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
    return dict(meta)  # how many: the metadata_items quota (kumo.compute.quotas)


def description_of(spec: dict[str, Any], version: Version) -> str | None:
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


def get_server(session: Session, context: RequestContext, server_id: str, *,
               deleted: bool = False) -> Server:
    """A server the caller may see (its project's, or any for admins); deleted ones only
    when asked (instance actions of a deleted server, 2.21)."""
    server = session.get(Server, server_id)
    if server is None or not (context.is_admin or server.project_id == context.project_id) or (
            server.vm_state == DELETED and not deleted):
        raise NotFound(f"Instance {server_id} could not be found.")
    return server


def _time_filter(query: dict[str, str], key: str) -> datetime | None:
    if key not in query:
        return None
    from kumo.compute.usage import parse_time

    try:
        return parse_time(query[key])
    except BadRequest:
        raise BadRequest(f"Invalid input for query parameters {key}. Value: {query[key]}. "
                         f"{query[key]!r} is not a 'date-time'") from None


def list_servers(session: Session, context: RequestContext, query: dict[str, str],
                 version: Version) -> list[Server]:
    """GET /servers[/detail]: the project's servers (admins: all with all_tenants).

    Deleted servers show only to `changes-since`/`changes-before` (as DELETED) and, for
    admins, to `deleted=True`; a deleted server still serves as a marker.
    """
    stmt = select(Server).order_by(Server.created_at.desc(), Server.id.desc())
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
    since, before = _time_filter(query, "changes-since"), _time_filter(query, "changes-before")
    if since is not None:  # kumo keeps times to the second: a change within it counts
        since = since.replace(microsecond=0)
    if since and before and since > before:
        raise BadRequest("The value of changes-since must be less than or equal to "
                         "changes-before.")
    everything = list(session.scalars(stmt))
    deleted_only = context.is_admin and query.get("deleted", "").lower() in ("true", "1", "yes")
    if deleted_only:
        servers = [s for s in everything if s.vm_state == DELETED]
    elif since or before:
        servers = [s for s in everything
                   if (since is None or aware(s.updated_at) >= since)
                   and (before is None or aware(s.updated_at) <= before)]
    else:
        servers = [s for s in everything if s.vm_state != DELETED]
    servers = _filtered(servers, query, version)
    if "marker" in query:
        marker = next((s for s in everything if s.id == query["marker"]), None)
        if marker is None:
            raise BadRequest(f"marker [{query['marker']}] not found")
        key = (aware(marker.created_at), marker.id)
        servers = [s for s in servers if (aware(s.created_at), s.id) < key]
    if "limit" in query:
        try:
            limit = int(query["limit"])
        except ValueError:
            raise BadRequest(f"Invalid input for query parameters limit. Value: "
                             f"{query['limit']}. '{query['limit']}' is not an integer") from None
        if limit < 0:
            raise BadRequest(f"Invalid input for query parameters limit. Value: {limit}. "
                             "It must be >= 0")
        servers = servers[:limit]
    return servers


def _filtered(servers: list[Server], query: dict[str, str], version: Version) -> list[Server]:
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
                        ("key_name", "key_name"), ("user_id", "user_id"),
                        ("reservation_id", "reservation_id"), ("access_ip_v4", "access_ipv4"),
                        ("access_ip_v6", "access_ipv6"), ("vm_state", "vm_state"),
                        ("availability_zone", "availability_zone"), ("host", "host")):
        if key in query:
            servers = [s for s in servers if str(getattr(s, column)) == query[key]]
    if "locked" in query and version >= (2, 73):
        wanted_lock = query["locked"].lower() in ("true", "1", "yes")
        servers = [s for s in servers if bool(s.locked) == wanted_lock]
    return servers


# action -> (vm_states it may start from, the task_state it sets)
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "stop": ((ACTIVE, ERROR), "powering-off"),
    "start": ((STOPPED,), "powering-on"),
    "reboot": ((ACTIVE,), "rebooting"),
    "reboot_hard": ((ACTIVE, STOPPED, ERROR), "rebooting_hard"),
    "createImage": ((ACTIVE, STOPPED, PAUSED_VM, SUSPENDED_VM), "image_snapshot"),
    "createBackup": ((ACTIVE, STOPPED), "image_backup"),
    "rebuild": ((ACTIVE, STOPPED, ERROR), "rebuilding"),
    "resize": ((ACTIVE, STOPPED), "resize_prep"),
    "confirmResize": ((RESIZED,), "resize_confirming"),
    "revertResize": ((RESIZED,), "resize_reverting"),
    "pause": ((ACTIVE,), "pausing"),
    "unpause": ((PAUSED_VM,), "unpausing"),
    "suspend": ((ACTIVE,), "suspending"),
    "resume": ((SUSPENDED_VM,), "resuming"),
    "rescue": ((ACTIVE, STOPPED, ERROR), "rescuing"),
    "unrescue": ((RESCUED,), "unrescuing"),
    "shelve": ((ACTIVE, STOPPED, PAUSED_VM, SUSPENDED_VM), "shelving"),
    "shelveOffload": ((SHELVED,), "shelving_offloading"),
    "unshelve": ((SHELVED, SHELVED_OFFLOADED), "unshelving"),
    "restore": ((SOFT_DELETED,), "restoring"),
}


def check_unlocked(context: RequestContext, server: Server) -> None:
    """nova's check_instance_lock: only admins act on a locked server."""
    if server.locked and not context.is_admin:
        raise Conflict(f"Instance {server.id} is locked")


def check_action(context: RequestContext, server: Server, action: str) -> None:
    """409 like nova when the server cannot do `action` in its current state."""
    context.require_writer()
    check_unlocked(context, server)
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


def begin_delete(session: Session, context: RequestContext, server: Server, *,
                 soft: bool = False, force: bool = False) -> bool:
    """Mark the server for deletion; False when a delete is already under way.

    `soft` (nova's reclaim_instance_interval > 0): the server becomes SOFT_DELETED and
    is reclaimed later, or restored; `force` (forceDelete) deletes a soft-deleted one now.
    """
    context.require_writer()
    if not force:
        check_unlocked(context, server)
    if server.task_state == "deleting":
        return False
    if soft and server.vm_state != SOFT_DELETED:
        server.task_state = "soft-deleting"
        record_action(session, server, "softDelete", context)
        return True
    server.task_state = "deleting"
    record_action(session, server, "forceDelete" if force else "delete", context)
    return True


def update_server(session: Session, context: RequestContext, server_id: str, body: Any,
                  version: Version) -> Server:
    """PUT /servers/{id}: name, description (2.19), access IPs, hostname (2.90)."""
    spec = body.get("server") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise BadRequest("Invalid input: 'server' is a required property")
    allowed = {"name", "accessIPv4", "accessIPv6", "OS-DCF:diskConfig"}
    if version >= (2, 19):
        allowed.add("description")
    if version >= (2, 90):
        allowed.add("hostname")
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise BadRequest(f"Additional properties are not allowed ('{unknown[0]}' was "
                         "unexpected)")
    context.require_writer()
    server = get_server(session, context, server_id)
    check_unlocked(context, server)
    if "name" in spec:
        name = spec["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise BadRequest("Invalid input for field/attribute name: 1-255 characters "
                             "required")
        server.name = name
    if "description" in spec:
        server.description = description_of(spec, version)
    server.access_ipv4, server.access_ipv6 = access_ips(spec, server.access_ipv4,
                                                        server.access_ipv6)
    server.disk_config = disk_config(spec, server.disk_config)
    if "hostname" in spec:
        hostname = spec["hostname"]
        if not isinstance(hostname, str) or not (
                _HOSTNAME.match(hostname) or (version >= (2, 94) and 0 < len(hostname) <= 255)):
            raise BadRequest(f"Invalid input for field/attribute hostname: {hostname!r}")
        server.hostname = hostname
    server.updated_at = utcnow()
    session.flush()
    return server
