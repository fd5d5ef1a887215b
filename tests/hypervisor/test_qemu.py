"""QEMU's command line for a server, and reading its forwards back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kumo.errors import BadRequest
from kumo.hypervisor.accel import Accel
from kumo.hypervisor.driver import GuestSpec, PortForward, VolumeDisk
from kumo.hypervisor.qemu import build_args, mac_address, parse_usernet, process_age

UUID = "6f1b3c2e-8a51-4f0e-9d7b-0c2a4e1f5a77"
TCG = Accel("tcg", "test")


def spec(**changes: object) -> GuestSpec:
    values: dict[str, object] = {
        "server_id": UUID, "name": "web", "image_id": "img", "vcpus": 2, "memory_mb": 512,
        "root_gb": 1, "forwards": (PortForward("tcp", 22),),
        "metadata_socket": Path("/data/run/md,1.sock"),
    }
    values.update(changes)
    return GuestSpec(**values)  # type: ignore[arg-type]


def option(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


def test_tcg_when_kvm_does_not_work() -> None:
    args = build_args(spec(), TCG, disk_format="qcow2")
    assert option(args, "-accel") == ["tcg,thread=multi"]
    assert option(args, "-cpu") == ["max"]
    kvm = build_args(spec(), Accel("kvm", "test"), disk_format="qcow2")
    assert option(kvm, "-accel") == ["kvm"] and option(kvm, "-cpu") == ["host"]


def test_size_console_monitor_and_smbios() -> None:
    args = build_args(spec(), TCG, disk_format="qcow2")
    assert option(args, "-m") == ["512"] and option(args, "-smp") == ["2"]
    assert "-nodefaults" in args and option(args, "-display") == ["none"]
    assert option(args, "-smbios") == [
        "type=1,manufacturer=OpenStack Foundation,product=OpenStack Nova,"
        f"serial={UUID},uuid={UUID}"
    ]
    assert option(args, "-uuid") == [UUID]
    assert option(args, "-serial") == ["chardev:console"]
    # ttyS0 on a unix socket for the console relay, logged to console.log all along
    assert ("socket,id=console,path=serial.sock,server=on,wait=off,logfile=console.log,"
            "logappend=on") in option(args, "-chardev")
    assert option(args, "-vnc") == ["unix:vnc.sock"] and "VGA" in option(args, "-device")
    assert option(args, "-qmp") == ["unix:qmp.sock,server=on,wait=off"]
    assert "file=disk,if=none,id=root,format=qcow2" in option(args, "-drive")[0]
    assert "virtio-blk-pci,drive=root,bootindex=0" in option(args, "-device")


def test_user_network_is_restricted_with_metadata_relay_and_forwards() -> None:
    args = build_args(spec(forwards=(PortForward("tcp", 22), PortForward("udp", 53, 5353))),
                      TCG, disk_format="qcow2")
    (netdev,) = option(args, "-netdev")
    assert netdev.startswith("user,id=n0,net=169.254.0.0/16,restrict=on,")
    # The comma in the socket path is doubled for QEMU's option parser.
    assert "guestfwd=tcp:169.254.169.254:80-cmd:socat - UNIX-CONNECT:/data/run/md,,1.sock" in netdev
    assert netdev.endswith(",hostfwd=tcp:127.0.0.1:0-:22,hostfwd=udp:127.0.0.1:5353-:53")
    assert f"virtio-net-pci,netdev=n0,mac={mac_address(UUID)}" in option(args, "-device")


def test_no_metadata_relay_without_a_socket() -> None:
    (netdev,) = option(build_args(spec(metadata_socket=None), TCG, disk_format="raw"), "-netdev")
    assert "guestfwd" not in netdev


def test_outbound_traffic_is_refused_rather_than_exposing_loopback() -> None:
    with pytest.raises(BadRequest, match=r"127\.0\.0\.1"):
        build_args(spec(allow_outbound=True), TCG, disk_format="qcow2")


def test_config_drive_is_a_read_only_cdrom() -> None:
    args = build_args(spec(config_drive=Path("/d/config.iso")), TCG, disk_format="qcow2")
    assert ("file=/d/config.iso,if=none,id=config,media=cdrom,readonly=on,format=raw"
            in option(args, "-drive"))
    # q35 has no IDE and Debian's cloud kernels no AHCI: the CD-ROM is on virtio-scsi.
    devices = option(args, "-device")
    assert "virtio-scsi-pci,id=scsi-config" in devices
    assert "scsi-cd,bus=scsi-config.0,drive=config" in devices


def test_q35_with_empty_root_ports_for_hot_plug() -> None:
    args = build_args(spec(), TCG, disk_format="qcow2", pcie_ports=3)
    assert option(args, "-machine") == ["q35"]
    ports = [d for d in option(args, "-device") if d.startswith("pcie-root-port")]
    assert ports == [f"pcie-root-port,id=hp{i},bus=pcie.0,chassis={i + 1},io-reserve=0"
                     for i in range(3)]


VOLUME = "0e9f5c1d-3b2a-4c8e-9f7a-1d2c3b4a5e6f"


def disk(volume_id: str = VOLUME, path: str = "/v/volume,1") -> VolumeDisk:
    return VolumeDisk(volume_id, {"driver": "file", "filename": path}, "qcow2")


def test_attached_volumes_sit_on_root_ports_with_the_volume_id_as_serial() -> None:
    other = "11111111-2222-3333-4444-555555555555"
    args = build_args(spec(volumes=(disk(), disk(other, "/v/b"))), TCG, disk_format="qcow2",
                      pcie_ports=2)
    nodes = [json.loads(value) for value in option(args, "-blockdev")]
    # The path is JSON, so a comma in it needs no escaping; the format is pinned.
    assert nodes[0] == {"driver": "file", "filename": "/v/volume,1",
                        "node-name": "vf0e9f5c1d3b2a4c8e9f7a1d2c", "discard": "unmap"}
    assert nodes[1] == {"driver": "qcow2", "file": "vf0e9f5c1d3b2a4c8e9f7a1d2c",
                        "node-name": "v0e9f5c1d3b2a4c8e9f7a1d2c", "discard": "unmap"}
    devices = [json.loads(d) for d in option(args, "-device") if d.startswith("{")]
    assert devices == [
        {"driver": "virtio-blk-pci", "id": f"volume-{VOLUME}",
         "drive": "v0e9f5c1d3b2a4c8e9f7a1d2c", "bus": "hp0", "serial": VOLUME[:20]},
        {"driver": "virtio-blk-pci", "id": f"volume-{other}", "drive": "v111111112222333344445555",
         "bus": "hp1", "serial": other[:20]},
    ]
    with pytest.raises(BadRequest, match="num_pcie_ports"):
        build_args(spec(volumes=(disk(), disk(other))), TCG, disk_format="qcow2", pcie_ports=1)


def test_boot_volume_replaces_the_local_disk() -> None:
    args = build_args(spec(root_volume=disk()), TCG, disk_format="qcow2", pcie_ports=1)
    assert not option(args, "-drive")
    (device,) = [json.loads(d) for d in option(args, "-device") if d.startswith("{")]
    assert device["bus"] == "pcie.0" and device["bootindex"] == 0
    assert device["serial"] == VOLUME[:20]


def test_bad_sizes_and_ports_are_refused() -> None:
    with pytest.raises(BadRequest):
        build_args(spec(vcpus=0), TCG, disk_format="qcow2")
    with pytest.raises(BadRequest):
        build_args(spec(forwards=(PortForward("icmp", 0),)), TCG, disk_format="qcow2")
    with pytest.raises(BadRequest):
        build_args(spec(forwards=(PortForward("tcp", 70000),)), TCG, disk_format="qcow2")


def test_mac_is_the_one_compute_and_metadata_announce() -> None:
    from kumo.compute.views import MAC_ADDRESS
    from kumo.metadata.instance import InstanceView

    assert mac_address(UUID) == MAC_ADDRESS == InstanceView.__dataclass_fields__[
        "mac_address"].default


USERNET = """Hub -1 (n0):
  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
  TCP[HOST_FORWARD]  13       127.0.0.1 36541  169.254.2.15    22     0     0
  UDP[HOST_FORWARD]  14       127.0.0.1  5353  169.254.2.15    53     0     0
  TCP[ESTABLISHED]   15       127.0.0.1 50000  169.254.2.15    22     0     0
"""


def test_parse_usernet() -> None:
    assert parse_usernet(USERNET) == {"tcp/22": 36541, "udp/53": 5353}


def test_an_iso_image_is_the_first_boot_device_beside_the_root_disk() -> None:
    from pathlib import Path

    args = build_args(spec(), TCG, disk_format="qcow2", cdrom=Path("/data/_base/a,b"))
    drives = option(args, "-drive")
    assert "file=/data/_base/a,,b,if=none,id=cdrom,media=cdrom,readonly=on,format=raw" in drives
    devices = option(args, "-device")
    assert "scsi-cd,bus=scsi-cdrom.0,drive=cdrom,bootindex=0" in devices
    assert "virtio-blk-pci,drive=root,bootindex=1" in devices


def test_process_age(tmp_path: Path) -> None:
    # a command name with spaces and a parenthesis cannot shift the fields after it
    odd = tmp_path / "a) (b c"
    shutil.copy("/bin/sleep", odd)
    child = subprocess.Popen([str(odd), "30"])
    try:
        time.sleep(0.3)
        young = process_age(child.pid)
        assert young is not None and 0.2 <= young < 5
        mine = process_age(os.getpid())
        assert mine is not None and mine >= young
    finally:
        child.kill()
        child.wait()
    assert process_age(child.pid) is None
