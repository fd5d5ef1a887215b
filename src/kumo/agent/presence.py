"""An API process's heartbeat: its host's scheduler and conductor in os-services.

In kumo the scheduler and the conductor are parts of every API process. Each API
process on PostgreSQL (`kumo api`, `kumo up`) writes its host's `api_services` row at
start and every `report_interval` seconds, so `openstack compute service list` shows
nova-scheduler and nova-conductor once per host that runs API processes, down when
none of them has beaten for `service_down_time`, whichever process answers.
"""

from __future__ import annotations

import asyncio
import logging

from kumo.agent import registry
from kumo.db.engine import session_scope
from kumo.runtime import Runtime
from kumo.workers import cancel, every

log = logging.getLogger("kumo.agent")


class ApiPresence:
    """runtime.services["api_presence"] of an API process on PostgreSQL."""

    def __init__(self, runtime: Runtime, host: str) -> None:
        self.runtime = runtime
        self.host = host
        self.interval = runtime.settings.agent.report_interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self.beat, starting=True)
        self._task = asyncio.create_task(every(
            self.interval, self.beat, log,
            f"heartbeat of the API processes of host {self.host} failed"))

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    def beat(self, *, starting: bool = False) -> None:
        with session_scope(self.runtime.sessions) as session:
            registry.api_beat(session, self.host, starting=starting)
