"""Guest networks, measured: what a user of kumo's networks waits for, and what they cost.

In one run, against a real `kumo up` with the bridge driver (as root), through the
Neutron and Nova APIs (openstacksdk), with two tiny guests behind floating IPs:

1. security-group rule change -> effective in the guest: from the host, ping the
   guest's floating IP in a tight loop; the clock runs from the API call that adds
   (removes) the ICMP rule until the first answered (first lost) ping;
2. port create -> DHCP lease: the clock runs from `POST /v2.0/ports` (bound to this
   host) until a DHCP client on the port's own tap, opened the way QEMU opens it, gets
   an offer of the port's address;
3. TCP throughput guest -> guest over kumo's bridge (security groups, anti-spoofing,
   conntrack all on) against the same two guests' image on a plain tap + bridge set up
   by hand (no nftables at all), interleaved rounds (A B A B, order alternating),
   median and minimum of per-round ratios (goal >= 0.9).

    sudo .venv/bin/python bench/network.py [--rounds N] [--megabytes M]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SSH = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]
USER = "tiny"
BOOT_TIMEOUT = 300.0


# --- small tools -----------------------------------------------------------------------

def run(*argv: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])}...: {done.stderr.strip() or done.stdout}")
    return done.stdout


def ssh(key: Path, address: str, command: str, prefix: tuple[str, ...] = (),
        timeout: float = 300) -> str:
    return run(*prefix, *SSH, "-i", str(key), f"{USER}@{address}", command, timeout=timeout)


def wait_ssh(key: Path, address: str, prefix: tuple[str, ...] = ()) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        done = subprocess.run([*prefix, *SSH, "-i", str(key), f"{USER}@{address}", "true"],
                              capture_output=True, timeout=30)
        if done.returncode == 0:
            return
        time.sleep(1)
    raise SystemExit(f"no SSH to {address} within {BOOT_TIMEOUT:.0f} s")


def pings(address: str) -> bool:
    return subprocess.run(["ping", "-c", "1", "-W", "0.2", address],
                          capture_output=True).returncode == 0


def until(predicate: Any, timeout: float = 30.0) -> float:
    """Seconds until `predicate()` holds (polling as fast as it answers)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"not within {timeout:.0f} s")
    return time.monotonic() - started


def throughput(key: Path, sender: str, receiver: str, receiver_ip: str, megabytes: int,
               prefix: tuple[str, ...] = ()) -> float:
    """MB/s of `megabytes` sent by nc from one guest to another's `receiver_ip`; `sender`
    and `receiver` are where SSH reaches them (the receiver's side starts first)."""
    listener = subprocess.Popen(
        [*prefix, *SSH, "-i", str(key), f"{USER}@{receiver}", "nc -l -p 5001 > /dev/null"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        # timed inside the sending guest (/proc/uptime, 10 ms), so SSH's set-up is not in it
        clock = "cut -d' ' -f1 /proc/uptime"
        times = ssh(key, sender, f"{clock}; dd if=/dev/zero bs=64k count={megabytes * 16}"
                                 f" 2>/dev/null | nc -w 2 {receiver_ip} 5001; {clock}", prefix)
        started, ended = (float(x) for x in times.split())
        took = ended - started
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            listener.wait(10)
        if listener.poll() is None:
            listener.kill()
    return megabytes / took


# --- a DHCP client on a tap, as QEMU opens it ------------------------------------------

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def discover(mac: str, xid: int) -> bytes:
    """An Ethernet frame carrying a DHCPDISCOVER from `mac`."""
    hw = bytes.fromhex(mac.replace(":", ""))
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000,
                        b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, hw, b"", b"")
    bootp += bytes([99, 130, 83, 99, 53, 1, 1, 255])
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     b"\0" * 4, b"\xff" * 4)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\xff" * 6 + hw + b"\x08\x00" + ip + udp


def offered(frame: bytes, xid: int) -> str | None:
    """The address a DHCPOFFER for `xid` carries, or None."""
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ihl = (frame[14] & 0x0F) * 4
    bootp = frame[14 + ihl + 8:]
    if bootp[0] != 2 or struct.unpack("!I", bootp[4:8])[0] != xid:
        return None
    return socket.inet_ntoa(bootp[16:20])


def lease(fd: int, mac: str, timeout: float = 30.0) -> str:
    xid = int.from_bytes(os.urandom(4), "big")
    deadline = time.monotonic() + timeout
    next_send = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_send:
            with contextlib.suppress(OSError):
                os.write(fd, discover(mac, xid))
            next_send = time.monotonic() + 0.05
        try:
            address = offered(os.read(fd, 2048), xid)
        except BlockingIOError:
            time.sleep(0.002)
            continue
        if address:
            return address
    raise SystemExit("no DHCP offer on the tap within 30 s")


# --- kumo's side ---------------------------------------------------------------------------

@contextlib.contextmanager
def kumo_guests(work: Path, image: Path, key: Path) -> Iterator[dict[str, Any]]:
    import openstack
    from openstack.config import loader

    from kumo.conformance.process import start_kumo, stop_kumo
    from kumo.network.uplink import unused_cidr

    data = work / "kumo" / "data"
    data.mkdir(parents=True)
    (data / "kumo.conf").write_text(
        f"[network]\ndriver = bridge\nexternal_cidr = {unused_cidr()}\npackage_proxy = false\n")
    kumo = start_kumo(data, ("--no-user-config",), network="bridge")
    servers: list[Any] = []
    try:
        region = loader.OpenStackConfig(config_files=[str(kumo.clouds_yaml)]).get_one("kumo")
        conn = openstack.connection.Connection(config=region)
        with image.open("rb") as data_file:
            img = conn.image.create_image(name="tiny", disk_format="qcow2",
                                          container_format="bare", data=data_file,
                                          visibility="public", wait=True)
        conn.compute.create_keypair(name="bench", public_key=Path(f"{key}.pub").read_text())
        net = conn.network.create_network(name="bench")
        subnet = conn.network.create_subnet(network_id=net.id, ip_version=4,
                                            cidr="10.99.0.0/24", name="bench")
        public = conn.network.find_network("public")
        router = conn.network.create_router(name="bench",
                                            external_gateway_info={"network_id": public.id})
        conn.network.add_interface_to_router(router, subnet_id=subnet.id)
        group = conn.network.create_security_group(name="bench")
        for port in (22, 5001):
            conn.network.create_security_group_rule(
                security_group_id=group.id, direction="ingress", protocol="tcp",
                port_range_min=port, port_range_max=port)
        flavor = conn.compute.find_flavor("m1.tiny")
        for name in ("bench-a", "bench-b"):
            servers.append(conn.compute.create_server(
                name=name, image_id=img.id, flavor_id=flavor.id, key_name="bench",
                networks=[{"uuid": net.id}], security_groups=[{"name": "bench"}]))
        for index, server in enumerate(servers):
            servers[index] = conn.compute.wait_for_server(server, wait=BOOT_TIMEOUT)
        addresses = {}
        for server in servers:
            port = next(conn.network.ports(device_id=server.id))
            fip = conn.network.create_ip(floating_network_id=public.id, port_id=port.id)
            addresses[server.name] = (fip.floating_ip_address, port.fixed_ips[0]["ip_address"])
        for floating, _fixed in addresses.values():
            wait_ssh(key, floating)
        yield {"conn": conn, "kumo": kumo, "group": group, "net": net, "subnet": subnet,
               "addresses": addresses}
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                conn.compute.delete_server(server)
        for server in servers:
            with contextlib.suppress(Exception):
                conn.compute.wait_for_delete(server, wait=60)
        stop_kumo(kumo)


def rule_latency(env: dict[str, Any]) -> tuple[float, float]:
    """Seconds from the API call until ICMP to the guest works / stops working."""
    conn, group = env["conn"], env["group"]
    floating = env["addresses"]["bench-a"][0]
    assert not pings(floating)
    started = time.monotonic()
    rule = conn.network.create_security_group_rule(
        security_group_id=group.id, direction="ingress", protocol="icmp")
    until(lambda: pings(floating))
    added = time.monotonic() - started
    started = time.monotonic()
    conn.network.delete_security_group_rule(rule)
    until(lambda: not pings(floating))
    return added, time.monotonic() - started


def lease_latency(env: dict[str, Any]) -> float:
    """Seconds from `POST /ports` (bound to this host) until a DHCP offer on its tap."""
    from kumo.network.netns import Namespace, namespace_name
    from kumo.network.topology import tap_name

    conn, kumo = env["conn"], env["kumo"]
    ns = Namespace(namespace_name(kumo.data_dir))
    host = socket.gethostname()
    started = time.monotonic()
    port = conn.network.create_port(network_id=env["net"].id, device_owner="compute:bench",
                                    device_id=str(uuid.uuid4()), binding_host_id=host)
    try:
        tap = tap_name(port.id)
        fd = -1
        while fd < 0:
            try:
                fd = ns.call(lambda: open_tap(tap))
            except OSError:
                if time.monotonic() - started > 30:
                    raise SystemExit(f"tap {tap} never appeared") from None
                time.sleep(0.005)
        try:
            address = lease(fd, port.mac_address)
        finally:
            os.close(fd)
        took = time.monotonic() - started
        if address != port.fixed_ips[0]["ip_address"]:
            raise SystemExit(f"offered {address}, the port has {port.fixed_ips}")
        return took
    finally:
        conn.network.delete_port(port)


# --- the plain side: the same image on a bridge and taps made by hand ----------------------

@contextlib.contextmanager
def plain_guests(work: Path, image: Path, key: Path) -> Iterator[dict[str, Any]]:
    from kumo.diskformat import qemuimg
    from kumo.hypervisor.accel import AccelChooser
    from kumo.hypervisor.qemu import VHOST_NET
    from kumo.metadata.configdrive import build_config_drive
    from kumo.metadata.instance import InstanceView, PublicKey

    ns = f"kbench-{uuid.uuid4().hex[:6]}"
    vhost = "on" if os.path.exists(VHOST_NET) else "off"  # as kumo's own guests get it
    accel = AccelChooser("auto", work / "accel.json").choose().qemu_args()
    procs: list[subprocess.Popen[bytes]] = []
    run("ip", "netns", "add", ns)
    try:
        x = ("ip", "netns", "exec", ns)
        run(*x, "ip", "link", "set", "lo", "up")
        run(*x, "ip", "link", "add", "br0", "mtu", "1450", "type", "bridge")
        run(*x, "ip", "addr", "add", "10.98.0.1/24", "dev", "br0")
        run(*x, "ip", "link", "set", "br0", "up")
        work.chmod(0o755)  # dnsmasq reads its hosts file as nobody (mkdtemp makes 0700)
        hosts = work / "plain-hosts"
        guests = {}
        lines = []
        for index, name in enumerate(("plain-a", "plain-b")):
            mac, address = f"52:54:00:98:00:{index + 10:02x}", f"10.98.0.{index + 10}"
            run(*x, "ip", "tuntap", "add", "dev", f"tap{index}", "mode", "tap")
            run(*x, "ip", "link", "set", f"tap{index}", "master", "br0", "mtu", "1450", "up")
            lines.append(f"{mac},{address},{name}")
            guests[name] = (mac, address, index)
        hosts.write_text("\n".join(lines) + "\n")
        procs.append(subprocess.Popen(
            [*x, "dnsmasq", "--keep-in-foreground", "--conf-file=", "--bind-interfaces",
             "--interface=br0", "--except-interface=lo", "--port=0",
             "--dhcp-range=10.98.0.0,static,255.255.255.0", f"--dhcp-hostsfile={hosts}",
             "--dhcp-option-force=26,1450", "--dhcp-option=3", "--pid-file=",
             f"--dhcp-leasefile={work / 'plain-leases'}", "--log-dhcp",
             f"--log-facility={work / 'plain-dnsmasq.log'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for name, (mac, _address, index) in guests.items():
            disk = work / f"{name}.qcow2"
            qemuimg.create_overlay(image, "qcow2", disk, 1024**3)
            view = InstanceView(uuid=str(uuid.uuid4()), name=name, hostname=name,
                                project_id="bench", created_at=datetime.now(UTC),
                                keys=(PublicKey("bench", "ssh", Path(f"{key}.pub").read_text()),))
            drive = build_config_drive(view, work / f"{name}.iso")
            procs.append(subprocess.Popen(
                [*x, "qemu-system-x86_64", *accel, "-m", "256", "-smp", "1", "-nodefaults",
                 "-display", "none", "-serial", f"file:{work / name}.log",
                 "-drive", f"file={disk},if=virtio,format=qcow2",
                 "-drive", f"file={drive},if=none,id=cd,media=cdrom,readonly=on,format=raw",
                 "-device", "ide-cd,drive=cd,bus=ide.1",
                 "-netdev", f"tap,id=n0,ifname=tap{index},script=no,downscript=no,"
                            f"vhost={vhost}",
                 "-device", f"virtio-net-pci,netdev=n0,mac={mac},host_mtu=1450",
                 "-device", "virtio-rng-pci"], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for name, (_mac, address, _index) in guests.items():
            try:
                wait_ssh(key, address, x)
            except SystemExit:
                log = (work / f"{name}.log").read_text(errors="replace") if (
                    work / f"{name}.log").exists() else "(no console log)"
                dhcp = work / "plain-dnsmasq.log"
                raise SystemExit(f"{name}: no SSH to {address}; its console:\n{log[-3000:]}\n"
                                 f"dnsmasq: {dhcp.read_text()[-3000:] if dhcp.exists() else '-'}"
                                 ) from None
        yield {"prefix": x, "addresses": {n: g[1] for n, g in guests.items()}}
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        run("ip", "netns", "del", ns, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--image", type=Path, help="a tiny qcow2 (default: the cached one)")
    options = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/network.py builds network namespaces: run it as root")
    from kumo.imagebuild.tiny import cached_image

    image = options.image or cached_image()
    with tempfile.TemporaryDirectory(prefix="kumo-netbench-", dir="/tmp") as tmp:
        work = Path(tmp)
        key = work / "key"
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        with kumo_guests(work, image, key) as kumo, plain_guests(work, image, key) as plain:
            added, removed, leases = [], [], []
            for n in range(options.rounds):
                a, r = rule_latency(kumo)
                added.append(a)
                removed.append(r)
                leases.append(lease_latency(kumo))
                print(f"round {n + 1}: rule added -> ICMP answered {a * 1000:.0f} ms, "
                      f"rule removed -> ICMP dropped {r * 1000:.0f} ms, "
                      f"port create -> DHCP offer {leases[-1] * 1000:.0f} ms", flush=True)
            ratios = []
            kumo_a, kumo_b = kumo["addresses"]["bench-a"], kumo["addresses"]["bench-b"]
            for n in range(options.rounds):
                measures = {}
                order = ("kumo", "plain") if n % 2 == 0 else ("plain", "kumo")
                for side in order:
                    if side == "kumo":
                        measures[side] = throughput(key, kumo_a[0], kumo_b[0], kumo_b[1],
                                                    options.megabytes)
                    else:
                        plain_a, plain_b = (plain["addresses"]["plain-a"],
                                            plain["addresses"]["plain-b"])
                        measures[side] = throughput(key, plain_a, plain_b, plain_b,
                                                    options.megabytes, plain["prefix"])
                ratios.append(measures["kumo"] / measures["plain"])
                print(f"round {n + 1}: guest -> guest TCP, kumo {measures['kumo']:.1f} MB/s, "
                      f"plain bridge {measures['plain']:.1f} MB/s, ratio {ratios[-1]:.2f}",
                      flush=True)
    ms = [x * 1000 for x in added]
    print(f"security-group rule added -> effective: median {statistics.median(ms):.0f} ms, "
          f"min {min(ms):.0f} ms; removed -> effective: median "
          f"{statistics.median(removed) * 1000:.0f} ms")
    print(f"port create -> DHCP lease: median {statistics.median(leases) * 1000:.0f} ms, "
          f"min {min(leases) * 1000:.0f} ms")
    print(f"TCP guest -> guest, kumo / plain bridge: median {statistics.median(ratios):.2f}, "
          f"min {min(ratios):.2f} (goal >= 0.90)")


if __name__ == "__main__":
    if shutil.which("ssh") is None:
        sys.exit("bench/network.py needs ssh (openssh-client)")
    main()
