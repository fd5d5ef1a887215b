"""Volumes as QEMU block devices: their names, their command line, and QMP hot-plug.

A volume is two `-blockdev` nodes (the protocol layer, e.g. a file, and the format
layer on top, qcow2 or raw, always pinned) under one `virtio-blk-pci` device whose
serial is the volume id, as nova's libvirt driver sets it: the guest sees
`/dev/disk/by-id/virtio-<first 20 characters of the id>`.

On the q35 machine a device can only be hot-plugged onto a PCIe root port, never
onto `pcie.0`, so every guest starts with a few empty root ports (nova's
`num_pcie_ports`); attached volumes sit on those, a boot volume on `pcie.0`.
Detaching is the guest's decision: `device_del` asks, QEMU sends `DEVICE_DELETED`
once the guest has let go, and only then may the nodes be deleted.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kumo.errors import Conflict, Forbidden, KumoError
from kumo.hypervisor.driver import VolumeDisk
from kumo.hypervisor.qmp import QMPClient, QMPError

ROOT_PORT = "hp"  # the root ports are hp0, hp1, ...
DEVICE_PREFIX = "volume-"
SERIAL_BYTES = 20  # virtio-blk's VIRTIO_BLK_ID_BYTES: longer serials are cut by QEMU


class DetachTimeout(KumoError):
    """The guest did not release a volume within the time nova would wait."""

    status = 409
    title = "Conflict"
    nova_key = "conflictingRequest"


def _short(volume_id: str) -> str:
    # QEMU node names are at most 31 characters and must start with a letter.
    return volume_id.replace("-", "")[:24]


def format_node(volume_id: str) -> str:
    return "v" + _short(volume_id)


def protocol_node(volume_id: str) -> str:
    return "vf" + _short(volume_id)


def device_id(volume_id: str) -> str:
    return DEVICE_PREFIX + volume_id


def serial(volume_id: str) -> str:
    return volume_id[:SERIAL_BYTES]


def root_port_args(count: int) -> list[str]:
    """`count` empty PCIe root ports for hot-plug (no I/O window: virtio needs none)."""
    args: list[str] = []
    for index in range(count):
        args += ["-device", f"pcie-root-port,id={ROOT_PORT}{index},bus=pcie.0,"
                            f"chassis={index + 1},io-reserve=0"]
    return args


def _nodes(disk: VolumeDisk) -> tuple[dict[str, Any], dict[str, Any]]:
    protocol = {**disk.source, "node-name": protocol_node(disk.volume_id)}
    fmt: dict[str, Any] = {"driver": disk.format, "file": protocol_node(disk.volume_id),
                           "node-name": format_node(disk.volume_id)}
    if disk.read_only:
        protocol["read-only"] = fmt["read-only"] = True
    else:
        protocol["discard"] = fmt["discard"] = "unmap"
    return protocol, fmt


def _device(disk: VolumeDisk, bus: str, bootindex: int | None) -> dict[str, Any]:
    device: dict[str, Any] = {"driver": "virtio-blk-pci", "id": device_id(disk.volume_id),
                              "drive": format_node(disk.volume_id), "bus": bus,
                              "serial": serial(disk.volume_id)}
    if bootindex is not None:
        device["bootindex"] = bootindex
    return device


def command_line(disk: VolumeDisk, *, bus: str, bootindex: int | None = None) -> list[str]:
    """The arguments that plug `disk` at start (JSON: paths may hold commas)."""
    protocol, fmt = _nodes(disk)
    return ["-blockdev", json.dumps(protocol), "-blockdev", json.dumps(fmt),
            "-device", json.dumps(_device(disk, bus, bootindex))]


def plugged(monitor: QMPClient) -> dict[str, str]:
    """Volumes plugged into the guest now: volume id -> the bus it sits on."""
    found: dict[str, str] = {}
    for child in monitor.execute("qom-list", {"path": "/machine/peripheral"}):
        name = str(child.get("name", ""))
        if not name.startswith(DEVICE_PREFIX):
            continue
        bus = monitor.execute("qom-get", {"path": f"/machine/peripheral/{name}",
                                          "property": "parent_bus"})
        found[name[len(DEVICE_PREFIX):]] = str(bus).rstrip("/").rsplit("/", 1)[-1]
    return found


def free_root_port(monitor: QMPClient, count: int) -> str:
    present = {str(child.get("name", "")) for child in
               monitor.execute("qom-list", {"path": "/machine/peripheral"})}
    if f"{ROOT_PORT}0" not in present:
        raise Conflict("this guest has no PCIe root ports to plug volumes into (it was "
                       "started before kumo ran guests on q35, or with num_pcie_ports = 0); "
                       "stop and start the server, then attach the volume")
    used = set(plugged(monitor).values())
    for index in range(count):
        port = f"{ROOT_PORT}{index}"
        if port in present and port not in used:
            return port
    # nova's TooManyDiskDevices (403)
    raise Forbidden(f"The maximum allowed number of disk devices ({count}) to attach to a "
                    "single instance has been exceeded.")


def hot_plug(monitor: QMPClient, disk: VolumeDisk, root_ports: int) -> str:
    """blockdev-add both nodes, device_add onto a free root port; returns the port."""
    if disk.volume_id in plugged(monitor):
        raise Conflict(f"volume {disk.volume_id} is already plugged into this guest")
    port = free_root_port(monitor, root_ports)
    protocol, fmt = _nodes(disk)
    monitor.execute("blockdev-add", protocol)
    try:
        monitor.execute("blockdev-add", fmt)
        try:
            monitor.execute("device_add", _device(disk, port, None))
        except QMPError:
            monitor.execute("blockdev-del", {"node-name": format_node(disk.volume_id)})
            raise
    except QMPError:
        monitor.execute("blockdev-del", {"node-name": protocol_node(disk.volume_id)})
        raise
    return port


def unplug(monitor: QMPClient, volume_id: str, *, timeout: float, attempts: int) -> None:
    """device_del, wait for DEVICE_DELETED (asking again each `timeout`), drop the nodes.

    nova's `_detach_from_live_and_wait_for_event`: the guest must cooperate, so the
    request is repeated `attempts` times before giving up with a fault that says so.
    """
    device = device_id(volume_id)
    if volume_id in plugged(monitor):
        for _attempt in range(attempts):
            try:
                monitor.execute("device_del", {"id": device})
            except QMPError as exc:
                if "not found" not in exc.message.lower():
                    raise
            if _wait_deleted(monitor, device, volume_id, timeout):
                break
        else:
            raise DetachTimeout(
                f"Device detach failed for volume {volume_id}: the guest did not release it "
                f"after {attempts} request(s) over {attempts * timeout:.0f} s (device "
                f"{device} is still attached; the guest OS must support PCIe hot-unplug and "
                "not hold the disk in use)")
    _drop_nodes(monitor, volume_id)


def _wait_deleted(monitor: QMPClient, device: str, volume_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        for event in monitor.events:
            if event.get("event") == "DEVICE_DELETED" and \
                    event.get("data", {}).get("device") == device:
                monitor.events.remove(event)
                return True
        left = deadline - time.monotonic()
        if left <= 0:
            # The event may have gone to an earlier monitor session: look, too.
            return volume_id not in plugged(monitor)
        monitor.wait_event(min(left, 1.0))


def _drop_nodes(monitor: QMPClient, volume_id: str) -> None:
    nodes = {node.get("node-name") for node in
             monitor.execute("query-named-block-nodes", {"flat": True})}
    for node in (format_node(volume_id), protocol_node(volume_id)):
        if node in nodes:
            monitor.execute("blockdev-del", {"node-name": node})


def resize(monitor: QMPClient, volume_id: str, size: int) -> None:
    """The guest sees the new size at once (virtio-blk's config-change interrupt)."""
    monitor.execute("block_resize", {"node-name": format_node(volume_id), "size": size})
