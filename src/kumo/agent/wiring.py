"""Which parts a process runs when kumo is on PostgreSQL, by its role.

| role | APIs | places and defers work | runs guests (agent) |
|---|---|---|---|
| `up` | yes | yes | yes, as host `[agent] host` |
| `api` | yes | yes | no |
| `agent` | no | no | yes |

On SQLite `kumo up` is the only role and runs its work itself (kumo.compute.service).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

from kumo.agent import registry
from kumo.agent.dispatch import JobDispatch
from kumo.agent.jobs import JobQueue
from kumo.agent.process import Agent, AgentCompute
from kumo.db.engine import libpq_url, session_scope
from kumo.hypervisor.driver import Nic
from kumo.network.agent import NetworkAgent, UserNetworking, build_driver
from kumo.runtime import Runtime

log = logging.getLogger("kumo.agent")

ROLES = ("up", "api", "agent")


def host_name(runtime: Runtime) -> str:
    """This compute host's name: `[agent] host`, else the machine's host name."""
    return runtime.settings.agent.host or socket.gethostname()


class NetworkFanout(NetworkAgent):
    """The network agent of a process on PostgreSQL: a change reaches every host.

    Handlers call `changed()` after their transaction commits; each registered host's
    agent gets a `network_changed` job (one waiting job per host absorbs a burst) and
    rebuilds its plumbing from the database. A process that also runs guests (`kumo up`)
    applies the change itself as before; an API process only passes it on.
    """

    def __init__(self, runtime: Runtime, jobs: JobQueue, *, local: bool, host: str) -> None:
        super().__init__(runtime, host=host)
        self.jobs, self.local = jobs, local

    async def start(self) -> None:
        if self.local:
            await asyncio.to_thread(self.driver.setup)
            self.apply_locally()

    async def stop(self) -> None:
        if self.local:
            await super().stop()

    def apply_locally(self) -> None:
        """Rebuild this host's plumbing only (an agent's `network_changed` job)."""
        super().changed()

    def changed(self) -> None:
        if self.local:
            self.apply_locally()
        self._tell_others()

    def plug(self, server_id: str) -> tuple[str | None, tuple[Nic, ...]]:
        """Bind and build here, then let the other hosts learn where the ports now are
        (their VXLAN forwarding entries)."""
        found = super().plug(server_id)
        if found[0] is not None:
            self._tell_others()
        return found

    def _tell_others(self) -> None:
        with session_scope(self.runtime.sessions) as session:
            hosts = [node.host for node in registry.nodes(session)]
        for host in hosts:
            if not (self.local and host == self.host):
                self.jobs.defer_host(host, "network_changed")


def register_scaled(runtime: Runtime, role: str) -> None:
    """Register the parts `role` runs (called by `prepare` on PostgreSQL)."""
    from kumo.compute.flavors import seed_defaults
    from kumo.compute.service import register_host_parts

    assert role in ROLES, role
    host = host_name(runtime)
    jobs = JobQueue(libpq_url(runtime.settings.db_url))
    if role != "agent":
        with session_scope(runtime.sessions) as session:
            seed_defaults(session)
    network = NetworkFanout(runtime, jobs, local=role != "api", host=host)
    network.driver = build_driver(runtime, network) if role != "api" else UserNetworking()
    runtime.services["network"] = network
    if role != "agent":
        from kumo.agent.presence import ApiPresence

        runtime.services["api_presence"] = ApiPresence(runtime, host)
    if role == "api":
        runtime.services["compute"] = JobDispatch(runtime, jobs)
        return
    register_host_parts(runtime)
    compute = AgentCompute(runtime, host, jobs, hypervisor=runtime.services["hypervisor"])
    if role == "up":
        runtime.services["compute"] = JobDispatch(runtime, jobs)
        runtime.services["agent_compute"] = compute
        agent_url = f"{runtime.settings.base_url}/agent"
    else:
        runtime.services["compute"] = compute
        agent_url = ""  # known once `kumo agent` has bound its listener
    runtime.services["agent"] = Agent(runtime, compute, agent_url, network=network)


def agent_of(runtime: Runtime) -> Agent | None:
    found: Any = runtime.services.get("agent")
    return found if isinstance(found, Agent) else None


def agent_app_for(runtime: Runtime, sock: socket.socket) -> Any:
    """`kumo agent`'s HTTP app: the agent link, with the host's parts as its lifespan."""
    from kumo.agent.process import default_ip, link_app

    agent = agent_of(runtime)
    assert agent is not None
    address, port = sock.getsockname()[:2]
    anywhere = address in ("0.0.0.0", "::")
    # Listening on one address says which one the host is reached at.
    my_ip = runtime.settings.agent.my_ip = (
        runtime.settings.agent.my_ip or (default_ip() if anywhere else address))
    agent.agent_url = f"http://{my_ip if anywhere else address}:{port}"
    app = link_app(runtime, agent.compute)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        from kumo.server import start_services, stop_services

        await start_services(runtime)
        print(f"kumo agent of host {agent.host} is up: queue host:{agent.host}, "
              f"link {agent.agent_url}", flush=True)
        try:
            yield
        finally:
            await stop_services(runtime)

    app.router.lifespan_context = lifespan
    return app


def mount_agent_link(runtime: Runtime, app: Any) -> None:
    """`kumo up` on PostgreSQL answers its agent link beside the APIs, under /agent."""
    from starlette.routing import Mount

    from kumo.agent.process import link_app

    agent = agent_of(runtime)
    assert agent is not None
    # First: the dashboard's pages are mounted at "/" and would take /agent too.
    app.router.routes.insert(0, Mount("/agent", app=link_app(runtime, agent.compute)))
