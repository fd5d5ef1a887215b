"""Nova's JSON shapes for flavors, key pairs and servers, field by microversion."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kumo.api.context import RequestContext
from kumo.compute.microversion import Version
from kumo.compute.models import (
    ERROR,
    Flavor,
    InstanceAction,
    KeyPair,
    Server,
    server_status,
)
from kumo.network.nics import Nic

MAC_ADDRESS = "52:54:00:12:34:56"  # QEMU user networking's default guest NIC
USER_NETWORK = "kumo-net"  # what servers without ports show under user networking
FIXED_IP = "169.254.2.15"  # the first DHCP address of the 169.254.0.0/16 user network


def aware(moment: datetime) -> datetime:
    """SQLite hands datetimes back naive; kumo stores UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def usec(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000000") if moment else None


def links(base: str, kind: str, item_id: str) -> list[dict[str, str]]:
    root = base.rsplit("/v2.1", 1)[0]
    return [{"rel": "self", "href": f"{base}/{kind}/{item_id}"},
            {"rel": "bookmark", "href": f"{root}/{kind}/{item_id}"}]


def flavor_view(flavor: Flavor, base: str, version: Version, detail: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"id": flavor.id, "name": flavor.name,
                            "links": links(base, "flavors", flavor.id)}
    if version >= (2, 55):
        body["description"] = flavor.description
    if not detail:
        return body
    body.update({
        "ram": flavor.ram, "vcpus": flavor.vcpus, "disk": flavor.disk,
        "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral,
        "swap": flavor.swap if flavor.swap or version >= (2, 75) else "",
        "rxtx_factor": flavor.rxtx_factor,
        "os-flavor-access:is_public": flavor.is_public, "OS-FLV-DISABLED:disabled": False,
    })
    if version >= (2, 61):
        body["extra_specs"] = dict(flavor.extra_specs or {})
    return body


def keypair_view(key: KeyPair, version: Version, *, full: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"name": key.name, "public_key": key.public_key,
                            "fingerprint": key.fingerprint}
    if version >= (2, 2):
        body["type"] = key.type
    if full:
        body.update({"user_id": key.user_id, "id": key.id, "created_at": usec(key.created_at),
                     "deleted": False, "deleted_at": None, "updated_at": None})
    return body


def ssh_endpoint(server: Server) -> str | None:
    """Where `ssh` reaches the guest: kumo's "floating IP" with its forwarded port."""
    port = (server.host_ports or {}).get("tcp/22")
    return f"127.0.0.1:{port}" if port else None


def _address(addr: str, kind: str, mac: str) -> dict[str, Any]:
    return {"version": 4, "addr": addr, "OS-EXT-IPS:type": kind, "OS-EXT-IPS-MAC:mac_addr": mac}


def addresses(server: Server, nics: Sequence[Nic] = (),
              user_mode: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Nova's `addresses`: per network name, each fixed IP and the floating IPs on it.

    Under QEMU user networking the guest's NIC is QEMU's (its 169.254 address and MAC,
    the SSH forward on 127.0.0.1 as its floating address) whatever its port says.
    """
    if user_mode:
        if server.host is None:
            return {}
        entries = [_address(FIXED_IP, "fixed", MAC_ADDRESS)]
        if server.host_ports:
            entries.append(_address("127.0.0.1", "floating", MAC_ADDRESS))
        return {nics[0].network_name if nics else USER_NETWORK: entries}
    shown: dict[str, list[dict[str, Any]]] = {}
    for nic in nics:
        entries = shown.setdefault(nic.network_name, [])
        floating = dict(nic.floating_ips)
        for fixed in nic.fixed_ips:
            entries.append(_address(fixed.ip_address, "fixed", nic.mac))
            if fixed.ip_address in floating:
                entries.append(_address(floating[fixed.ip_address], "floating", nic.mac))
    return shown


def shown_metadata(server: Server) -> dict[str, str]:
    """The user's metadata plus kumo's read-only forward entries (never sent to the guest)."""
    meta = dict(server.meta or {})
    if ssh := ssh_endpoint(server):
        meta["kumo:ssh"] = ssh
    if server.host_ports:
        meta["kumo:forwards"] = ",".join(
            f"{guest}=127.0.0.1:{port}" for guest, port in sorted(server.host_ports.items()))
    return meta


_EXTENDED_PREFIXES = ("OS-EXT-", "OS-SRV-USG:", "os-extended-volumes:")
_EXTENDED_KEYS = {"key_name", "security_groups", "config_drive", "host_status"}


def host_status(server: Server) -> str:
    """nova's host_status (2.16): UP, DOWN (no heartbeat), MAINTENANCE (disabled) or ""."""
    if not server.host:
        return ""
    from sqlalchemy.orm import object_session

    from kumo.agent.registry import host_status_of

    session = object_session(server)
    return "UP" if session is None else host_status_of(session, server.host)


def server_view(server: Server, base: str, version: Version, context: RequestContext,
                groups: list[str], *, detail: bool = True, show: bool = False,
                basic: bool = False, server_groups: list[str] | None = None,
                nics: Sequence[Nic] = (), user_mode: bool = True,
                volumes: Sequence[Any] = ()) -> dict[str, Any]:
    """GET /servers/{id} and each entry of /servers/detail (or the brief list form).

    `basic`: the shorter view nova answers PUT /servers/{id} and rebuild with before 2.75
    (no extended attributes).
    """
    body = _server_view(server, base, version, context, groups, detail=detail, show=show,
                        server_groups=server_groups, nics=nics, user_mode=user_mode,
                        volumes=volumes)
    if basic:
        body = {k: v for k, v in body.items()
                if not k.startswith(_EXTENDED_PREFIXES) and k not in _EXTENDED_KEYS}
        if "addresses" in body:  # without the extended address attributes too
            body["addresses"] = {net: [{"version": a["version"], "addr": a["addr"]}
                                       for a in entries]
                                 for net, entries in body["addresses"].items()}
    return body


def _server_view(server: Server, base: str, version: Version, context: RequestContext,
                 groups: list[str], *, detail: bool, show: bool,
                 server_groups: list[str] | None, nics: Sequence[Nic],
                 user_mode: bool, volumes: Sequence[Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"id": server.id, "name": server.name,
                            "links": links(base, "servers", server.id)}
    if not detail:
        return body
    status = server_status(server.vm_state, server.task_state)
    host_id = hashlib.sha224((server.project_id + (server.host or "")).encode()).hexdigest() \
        if server.host else ""
    body.update({
        "status": status, "tenant_id": server.project_id, "user_id": server.user_id,
        "metadata": shown_metadata(server), "hostId": host_id,
        # nova: a server booted from a volume has no image, shown as ""
        "image": {"id": server.image_id, "links": links(base, "images", server.image_id)[1:]}
        if server.image_id else "",
        "flavor": _flavor(server, base, version, context),
        "created": iso(server.created_at), "updated": iso(server.updated_at),
        "addresses": addresses(server, nics, user_mode), "accessIPv4": server.access_ipv4 or "",
        "accessIPv6": server.access_ipv6 or "",
        "OS-DCF:diskConfig": server.disk_config,
        "OS-EXT-AZ:availability_zone": server.availability_zone,
        "config_drive": "True" if server.config_drive else "", "key_name": server.key_name,
        "OS-SRV-USG:launched_at": usec(server.launched_at),
        "OS-SRV-USG:terminated_at": usec(server.deleted_at) if server.vm_state == "deleted"
        else None,
        "OS-EXT-STS:task_state": server.task_state, "OS-EXT-STS:vm_state": server.vm_state,
        "OS-EXT-STS:power_state": server.power_state,
        "os-extended-volumes:volumes_attached": [
            {"id": v.volume_id, **({"delete_on_termination": v.delete_on_termination}
                                   if version >= (2, 3) else {})} for v in volumes],
    })
    if groups:  # nova leaves the key out for a server in no security group
        body["security_groups"] = [{"name": name} for name in groups]
    if status in ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE"):
        body["progress"] = 100 if status in ("ACTIVE", "VERIFY_RESIZE") else 0
    if context.is_admin:
        body.update({"OS-EXT-SRV-ATTR:host": server.host,
                     "OS-EXT-SRV-ATTR:hypervisor_hostname": server.host,
                     "OS-EXT-SRV-ATTR:instance_name": "instance-" + server.id[:8]})
        if version >= (2, 3):
            body.update({
                "OS-EXT-SRV-ATTR:reservation_id": server.reservation_id,
                "OS-EXT-SRV-ATTR:launch_index": server.launch_index,
                "OS-EXT-SRV-ATTR:hostname": server.hostname, "OS-EXT-SRV-ATTR:kernel_id": "",
                "OS-EXT-SRV-ATTR:ramdisk_id": "", "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
                "OS-EXT-SRV-ATTR:user_data": base64.b64encode(server.user_data).decode()
                if server.user_data else None,
            })
        if version >= (2, 16):
            body["host_status"] = host_status(server)
    elif version >= (2, 90):
        body["OS-EXT-SRV-ATTR:hostname"] = server.hostname
    if version >= (2, 9):
        body["locked"] = server.locked
    if version >= (2, 19):
        body["description"] = server.description
    if version >= (2, 26):
        body["tags"] = list(server.tags or [])
    if version >= (2, 63):
        body["trusted_image_certificates"] = None
    if version >= (2, 71) and show:
        body["server_groups"] = list(server_groups or [])
    if version >= (2, 73):
        body["locked_reason"] = server.locked_reason
    if version >= (2, 96):
        body["pinned_availability_zone"] = None
    fault = fault_view(server, context)
    if fault is not None:
        body["fault"] = fault
    return body


def fault_view(server: Server, context: RequestContext) -> dict[str, Any] | None:
    """nova shows faults of ERROR servers; kumo also of servers stopped by a crash."""
    if server.fault_message is None:
        return None
    if server.vm_state not in (ERROR, "deleted") and server.power_state != 6:
        return None
    fault: dict[str, Any] = {"code": server.fault_code or 500, "message": server.fault_message,
                             "created": iso(server.fault_created)}
    if context.is_admin or (server.fault_code or 500) != 500:
        fault["details"] = server.fault_message
    return fault


def _flavor(server: Server, base: str, version: Version, context: RequestContext) -> Any:
    if version < (2, 47):
        return {"id": server.flavor_id, "links": links(base, "flavors", server.flavor_id)[1:]}
    # nova embeds the instance's own flavor copy: swap is an integer here at every version
    flavor: dict[str, Any] = {"vcpus": server.vcpus, "ram": server.memory_mb,
                              "disk": server.root_gb, "ephemeral": server.ephemeral_gb,
                              "swap": server.swap_mb, "original_name": server.flavor_name,
                              "extra_specs": dict(server.flavor_extra_specs or {})}
    return flavor


def action_view(entry: InstanceAction, version: Version) -> dict[str, Any]:
    body: dict[str, Any] = {"action": entry.action, "instance_uuid": entry.server_id,
                            "request_id": entry.request_id, "user_id": entry.user_id,
                            "project_id": entry.project_id, "start_time": usec(entry.start_time),
                            "message": entry.message}
    if version >= (2, 58):
        body["updated_at"] = usec(entry.finish_time or entry.start_time)
    return body
