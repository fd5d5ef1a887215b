"""An API process's heartbeat in `api_services`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from kumo.agent import registry
from kumo.agent.presence import ApiPresence
from kumo.db.engine import session_scope
from kumo.runtime import Runtime


def seen(runtime: Runtime, host: str) -> datetime:
    with session_scope(runtime.sessions) as session:
        row = next(r for r in registry.api_hosts(session) if r.host == host)
        stamp = row.last_seen_at
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def test_an_api_process_beats_from_start_to_stop(runtime: Runtime) -> None:
    presence = ApiPresence(runtime, "api-host")
    presence.interval = 0.05

    async def run() -> tuple[datetime, datetime]:
        await presence.start()
        first = seen(runtime, "api-host")
        await asyncio.sleep(1.2)  # stamps are to the second
        later = seen(runtime, "api-host")
        await presence.stop()
        return first, later

    first, later = asyncio.run(run())
    assert datetime.now(UTC) - first < timedelta(seconds=5)
    assert later > first
    stopped = seen(runtime, "api-host")
    asyncio.run(asyncio.sleep(1.1))
    assert seen(runtime, "api-host") == stopped  # no beat after stop
