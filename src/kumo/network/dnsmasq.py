"""One dnsmasq per network, inside kumo's namespace: static DHCP leases and local DNS.

As Neutron's DHCP agent runs it: static ranges only (a MAC kumo does not know gets
nothing), one host entry per port (`mac,ip,name`), the network's MTU as option 26,
a classless route to the metadata address via the DHCP server's own address (plus
the default route, since a client that gets option 121 ignores option 3), the
subnet's DNS servers (default: dnsmasq itself, which answers the guests' names).

Each network's files live in `<run>/<network id>/`: `dnsmasq.conf` (a change
restarts dnsmasq), `hosts/` (one file per port, re-read on SIGHUP), `addn-hosts`
(names for DNS before any lease), `leases`, `pid`. dnsmasq outlives `kumo up`, so
guests keep their leases while kumo restarts; a pass adopts it by its pid file.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import signal
from pathlib import Path

from kumo.errors import ToolError
from kumo.network.daemons import Daemon
from kumo.network.netns import Namespace
from kumo.network.topology import NetworkPlan, PortPlan
from kumo.process import require

log = logging.getLogger("kumo.network")

DNSMASQ = "dnsmasq"
PACKAGE = "dnsmasq-base"
METADATA_ROUTE = "169.254.169.254/32"
LEASE_SECONDS = 86400
DOMAIN = "openstacklocal"  # Neutron's default dns_domain
_LABEL = re.compile(r"[^a-z0-9-]+")


def host_label(port: PortPlan) -> str:
    """The name DHCP hands out: the port's dns_name, else Neutron's host-10-0-0-5."""
    name = _LABEL.sub("-", port.dns_name.lower()).strip("-")[:63]
    if name:
        return name
    ip = port.addresses[0] if port.addresses else port.mac
    return "host-" + re.sub(r"[.:]", "-", ip)


def render_conf(network: NetworkPlan, folder: Path, dns_servers: tuple[str, ...]) -> str:
    """dnsmasq's configuration for one network (every line is a long option)."""
    # Only the DHCP server's own addresses: every network's bridge also carries
    # 169.254.169.254, which dnsmasq must leave to the metadata service.
    lines = [f"listen-address={ip}" for _subnet, ip in network.dhcp_ips if ":" not in ip]
    lines += [
        "bind-interfaces",
        "except-interface=lo",
        "no-hosts",
        "no-ping",
        "dhcp-authoritative",
        # silence, not a refusal, for a MAC without a lease here: on a network that spans
        # hosts it is another host's port, and a NAK would cost the guest its address
        "dhcp-ignore=tag:!known",
        "strict-order",
        f"pid-file={folder / 'pid'}",
        f"dhcp-leasefile={folder / 'leases'}",
        f"dhcp-hostsdir={folder / 'hosts'}",
        f"addn-hosts={folder / 'addn-hosts'}",
        f"domain={DOMAIN}",
        f"local=/{DOMAIN}/",
        f"log-facility={folder / 'dnsmasq.log'}",
        "log-dhcp",
    ]
    if dns_servers:
        lines += [f"server={server}" for server in dns_servers]
    else:
        lines.append("no-resolv")
    dhcp_ip = dict(network.dhcp_ips)
    for subnet in network.subnets:
        net = ipaddress.ip_network(subnet.cidr)
        server_ip = dhcp_ip.get(subnet.id)
        if not subnet.enable_dhcp or net.version != 4 or server_ip is None:
            continue
        tag = "subnet-" + subnet.id[:8]
        lines.append(f"dhcp-range=set:{tag},{net.network_address},static,{net.netmask},"
                     f"{LEASE_SECONDS}s")
        lines.append(f"dhcp-option-force=tag:{tag},option:mtu,{network.mtu}")
        routes = [f"{METADATA_ROUTE},{server_ip}"]
        routes += [f"{dest},{hop}" for dest, hop in subnet.host_routes]
        if subnet.gateway_ip:
            lines.append(f"dhcp-option=tag:{tag},option:router,{subnet.gateway_ip}")
            routes.append(f"0.0.0.0/0,{subnet.gateway_ip}")
        else:
            lines.append(f"dhcp-option=tag:{tag},option:router")
        lines.append(f"dhcp-option=tag:{tag},option:classless-static-route,{','.join(routes)}")
        servers = subnet.dns_nameservers or (server_ip,)
        lines.append(f"dhcp-option=tag:{tag},option:dns-server,{','.join(servers)}")
        lines.append(f"dhcp-option=tag:{tag},option:domain-name,{DOMAIN}")
    return "\n".join(lines) + "\n"


class Dnsmasq:
    """The dnsmasq of one network: its files, its process, its reloads."""

    def __init__(self, ns: Namespace, run_dir: Path, network_id: str) -> None:
        self.ns = ns
        self.folder = run_dir / network_id
        self.daemon = Daemon(DNSMASQ, self.folder / "pid", str(self.folder / "dnsmasq.conf"))

    def pid(self) -> int | None:
        """The pid of this network's running dnsmasq, or None."""
        return self.daemon.pid()

    def sync(self, network: NetworkPlan, ports: list[PortPlan],
             dns_servers: tuple[str, ...], host: str | None = None) -> None:
        """Write the network's files and make dnsmasq serve them (start, reload, restart).

        With `host`, leases are only for the ports bound to it (or not bound yet): a
        network spanning hosts is answered where each port lives. Names are for all."""
        hosts = self.folder / "hosts"
        hosts.mkdir(parents=True, exist_ok=True)
        for folder in (self.folder, hosts):
            os.chmod(folder, 0o755)  # dnsmasq reads them as nobody
        conf = render_conf(network, self.folder, dns_servers)
        conf_changed = _write_if_changed(self.folder / "dnsmasq.conf", conf)
        hosts_changed = self._write_hosts(hosts, network, ports, host)
        if self.pid() is not None and not conf_changed:
            if hosts_changed:
                self.daemon.signal(signal.SIGHUP)
            return
        self.stop()
        self._start()

    def _write_hosts(self, hosts: Path, network: NetworkPlan, ports: list[PortPlan],
                     host: str | None) -> bool:
        dhcp_subnets = {s.id for s in network.subnets if s.enable_dhcp}
        wanted: dict[str, str] = {}
        names: list[str] = []
        for port in ports:
            addresses = [ip for subnet, ip in port.ips if subnet in dhcp_subnets and ":" not in ip]
            if not addresses or not port.is_compute:
                continue
            label = host_label(port)
            if host is None or port.serves_on(host):
                wanted[port.id] = f"{port.mac},{addresses[0]},{label}\n"
            names.append(f"{addresses[0]}\t{label}.{DOMAIN} {label}\n")
        changed = _write_if_changed(self.folder / "addn-hosts", "".join(names))
        for stale in hosts.iterdir():
            if stale.name not in wanted:
                stale.unlink(missing_ok=True)
                changed = True
        for port_id, line in wanted.items():
            changed |= _write_if_changed(hosts / port_id, line)
        return changed

    def _start(self) -> None:
        binary = require(DNSMASQ, PACKAGE)
        (self.folder / "pid").unlink(missing_ok=True)
        (self.folder / "leases").touch()
        try:
            self.ns.run(binary, [f"--conf-file={self.folder / 'dnsmasq.conf'}"], package=PACKAGE)
        except ToolError as exc:
            raise ToolError(DNSMASQ, f"could not start for network {self.folder.name}: "
                                     f"{exc.message}") from None
        self.daemon.wait_started(f"network {self.folder.name}: see {self.folder}/dnsmasq.log",
                                 timeout=5)

    def stop(self) -> None:
        """Stop this network's dnsmasq (our own process, by its pid file)."""
        self.daemon.stop()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True
