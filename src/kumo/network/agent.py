"""The network agent of this host: makes the plumbing match the database.

Handlers change records (networks, subnets, ports, routers, floating IPs, security
groups) and call `changed()` once their transaction has committed. The agent then
reads the whole topology in one snapshot and hands it to its driver, which makes the
host match it (bridges, taps, dnsmasq, nftables). Changes that arrive while a pass
runs are folded into one more pass, so a burst of API calls costs at most two.

Reconciling the whole topology each time keeps the driver simple and self-healing: a
pass after a crash, a restart or a hand-deleted bridge puts everything back.
"""

from __future__ import annotations

import logging
import socket
import threading
from functools import partial
from typing import Any, Protocol

from sqlalchemy import select

from kumo.db.engine import session_scope
from kumo.errors import ServiceUnavailable, ToolMissing
from kumo.hypervisor.driver import Nic
from kumo.network.models import DEVICE_OWNER_DHCP, IPAllocation, Port
from kumo.network.topology import Topology, snapshot
from kumo.runtime import Runtime

log = logging.getLogger("kumo.network")


class NetworkDriver(Protocol):
    """What builds the topology on this host."""

    name: str

    def setup(self) -> None:
        """Prepare the host once at start (namespace, uplink); idempotent."""

    def apply(self, topology: Topology) -> None:
        """Make the host match `topology` exactly (idempotent, whole state)."""

    def teardown(self) -> None:
        """Remove everything the driver created on this host."""


class UserNetworking:
    """QEMU user-mode networking (the rootless fallback): nothing to build on the host.

    Each guest has a private 169.254.0.0/16 inside its own QEMU; compute applies the
    security groups as host forwards on 127.0.0.1.
    """

    name = "user"

    def setup(self) -> None:
        pass

    def apply(self, topology: Topology) -> None:
        pass

    def teardown(self) -> None:
        pass


class NetworkAgent:
    """Registered as runtime.services["network"]; `kumo up` calls start() and stop()."""

    def __init__(self, runtime: Runtime, driver: NetworkDriver | None = None,
                 host: str | None = None) -> None:
        self.runtime = runtime
        self.host = host or socket.gethostname()
        self.driver: NetworkDriver = driver or UserNetworking()
        self._cond = threading.Condition()
        self._wanted = 0  # generation asked for by changed()
        self._done = 0  # generation the last finished pass covered
        self._running = False
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    async def start(self) -> None:
        """Prepare the host and run a first pass (adopts what a previous run built)."""
        import asyncio

        await asyncio.to_thread(self.driver.setup)
        self.changed()

    async def stop(self) -> None:
        """Let a pass under way finish. The plumbing stays: guests keep their network."""
        import asyncio

        await asyncio.to_thread(self.wait_synced, 30.0)

    def changed(self) -> None:
        """Ask for a pass (any thread; returns at once)."""
        with self._cond:
            self._wanted += 1
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._loop, name="network-agent", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._done >= self._wanted:
                    self._running = False
                    self._cond.notify_all()
                    return
                generation = self._wanted
            try:
                self.resync()
                self.last_error = None
            except Exception as exc:  # a failed pass is retried by the next change
                self.last_error = str(exc)
                log.exception("network: applying the topology failed")
            with self._cond:
                self._done = generation
                self._cond.notify_all()

    def resync(self) -> None:
        """One pass now, in this thread: snapshot the database, apply it."""
        with session_scope(self.runtime.sessions) as session:
            topology = snapshot(session, self.runtime.settings)
        self.driver.apply(topology)

    @property
    def namespace(self) -> str | None:
        """The network namespace guests' taps live in (None: user-mode networking)."""
        ns = getattr(self.driver, "ns", None)
        return str(ns.name) if ns is not None else None

    def plug(self, server_id: str) -> tuple[str | None, tuple[Nic, ...]]:
        """Bind the server's ports to this host and build their taps; what QEMU needs.

        Returns the namespace and the NICs in the server's order (`networks` of its
        create request: the first is eth0). With user-mode networking: (None, ()).
        """
        netns = self.namespace
        if netns is None:
            return None, ()
        from kumo.network.nics import bind_server_ports

        nics = tuple(Nic(port_id=n.port_id, mac=n.mac, tap=n.tap, mtu=n.mtu)
                     for n in bind_server_ports(self.runtime, server_id, self.host))
        self.resync()  # the taps must exist before QEMU opens them
        return netns, nics

    def set_port_status(self, server_id: str, status: str) -> None:
        """ACTIVE when the server's guest runs, DOWN when it does not (Neutron's port status)."""
        with session_scope(self.runtime.sessions) as session:
            for port in session.scalars(select(Port).where(
                    Port.device_id == server_id, Port.device_owner.like("compute:%"))):
                port.status = status

    def server_at(self, network_id: str, address: str) -> str | None:
        """The server whose port on `network_id` has `address` (the metadata service asks)."""
        with session_scope(self.runtime.sessions) as session:
            found = session.scalar(
                select(Port.device_id).join(IPAllocation, IPAllocation.port_id == Port.id)
                .where(IPAllocation.network_id == network_id,
                       IPAllocation.ip_address == address,
                       Port.device_owner.like("compute:%")))
            return found or None

    def vendor_data(self, server_id: str) -> dict[str, object]:
        """cloud-init's apt proxy: the package proxy at the server's first network's DHCP
        address (vendor_data.json, as nova's StaticJSON provider would carry it)."""
        settings = self.runtime.settings.network
        if self.namespace is None or not settings.package_proxy:
            return {}
        with session_scope(self.runtime.sessions) as session:
            first = session.scalar(select(Port.network_id).where(
                Port.device_id == server_id, Port.device_owner.like("compute:%"))
                .order_by(Port.created_at, Port.id).limit(1))
            if first is None:
                return {}
            address = session.scalar(
                select(IPAllocation.ip_address).join(Port, Port.id == IPAllocation.port_id)
                .where(Port.network_id == first, Port.device_owner == DEVICE_OWNER_DHCP))
        if address is None:
            return {}
        proxy = f"http://{address}:{settings.package_proxy_port}"
        return {"cloud-init": f"#cloud-config\napt:\n  http_proxy: {proxy}\n"}

    def wait_synced(self, timeout: float = 10.0) -> bool:
        """Block until every change asked for so far is applied (tests, shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._done >= self._wanted, timeout)


def network_of(runtime: Runtime) -> NetworkAgent:
    """The registered network agent (handlers call `changed()` on it)."""
    agent: Any = runtime.services.get("network")
    if not isinstance(agent, NetworkAgent):
        raise ServiceUnavailable("the network service is not running")
    return agent


def register(runtime: Runtime) -> NetworkAgent:
    """Register this host's network agent (called by `prepare`)."""
    agent = runtime.services.get("network")
    if not isinstance(agent, NetworkAgent):
        agent = NetworkAgent(runtime)
        agent.driver = build_driver(runtime, agent)
        runtime.services["network"] = agent
    return agent


def build_driver(runtime: Runtime, agent: NetworkAgent) -> NetworkDriver:
    """The driver `[network] driver` asks for; `auto` falls back to user mode, saying why."""
    from kumo.config import ConfigError
    from kumo.network.netns import can_create_namespaces

    choice = runtime.settings.network.driver
    if choice == "user":
        log.info("network: QEMU user-mode networking ([network] driver = user)")
        return UserNetworking()
    why = can_create_namespaces()
    if why is None:
        try:
            from kumo.network.bridge import BridgeNetworking, check_tools

            check_tools(runtime.settings)
        except ToolMissing as exc:
            why = exc.message
    if why is not None:
        if choice == "bridge":
            raise ConfigError(f"[network] driver = bridge, but {why}")
        log.warning("network: %s, so guests get QEMU user-mode networking (no real networks, "
                    "no floating IPs; SSH through 127.0.0.1 forwards)", why)
        return UserNetworking()
    return BridgeNetworking(
        runtime.settings, agent.host,
        metadata=lambda: runtime.services.get("metadata"),
        resolve=partial(_server_at, agent))


def _server_at(agent: NetworkAgent, network_id: str, address: str) -> str | None:
    return agent.server_at(network_id, address)
