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
import threading
from typing import Any, Protocol

from kumo.db.engine import session_scope
from kumo.errors import ServiceUnavailable
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

    def __init__(self, runtime: Runtime, driver: NetworkDriver | None = None) -> None:
        self.runtime = runtime
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
        runtime.services["network"] = agent
    return agent
