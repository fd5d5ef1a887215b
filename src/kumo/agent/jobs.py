"""Work for compute hosts as procrastinate jobs on PostgreSQL.

An API process does not run guests: where `kumo up` calls `compute.submit_stop(id)`
and a thread of its own does the work, an API process defers a job instead:

- task `kumo.server_job` with `{server_id, work, args}`, where `work` is the name of
  the `ComputeService.submit_*` method the agent calls;
- on queue `host:<name>` of the host the server is on (the scheduler picks it for a
  new server), so only that host's agent takes it;
- with lock `server:<id>`: procrastinate runs one job per lock at a time, in order, so
  two actions on a server never race, whichever API process deferred them.

procrastinate claims jobs with `FOR UPDATE SKIP LOCKED`, wakes workers by
LISTEN/NOTIFY (and polls, since a notification is lost when nobody listens), keeps
worker heartbeats, and leaves a job in the table until a worker finishes it: jobs
deferred while an agent is down wait for it, and a job an agent was running when it
died is retried when it starts again (`retry_interrupted`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from procrastinate import App, JobContext, PsycopgConnector, SyncPsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.jobs import Status

from kumo.api.context import RequestContext

log = logging.getLogger("kumo.jobs")

TASK = "kumo.server_job"
HOST_TASK = "kumo.host_job"  # work for a whole host (e.g. rebuild its networks)


def queue_of(host: str) -> str:
    """The queue of one compute host (its agent is the only worker on it)."""
    return f"host:{host}"


def lock_of(server_id: str) -> str:
    return f"server:{server_id}"


# -- arguments: JSON in the jobs table ------------------------------------------------

def encode(value: Any) -> Any:
    """A submit_* argument as JSON (a caller's context travels with its token)."""
    if isinstance(value, RequestContext):
        data = asdict(value)
        data["roles"] = list(value.roles)
        data["expires_at"] = value.expires_at.isoformat()
        return {"__context__": data}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"a job cannot carry {type(value).__name__} ({value!r})")


def decode(value: Any) -> Any:
    if isinstance(value, dict) and "__context__" in value:
        data = dict(value["__context__"])
        data["roles"] = tuple(data["roles"])
        data["expires_at"] = datetime.fromisoformat(data["expires_at"])
        known = {f.name for f in fields(RequestContext)}
        return RequestContext(**{k: v for k, v in data.items() if k in known})
    if isinstance(value, list):
        return [decode(item) for item in value]
    return value


# -- the two sides ------------------------------------------------------------------

class JobQueue:
    """Defers server jobs (API processes); synchronous, callable from any thread."""

    def __init__(self, conninfo: str) -> None:
        self.app = App(connector=SyncPsycopgConnector(conninfo=conninfo,
                                                      kwargs={"autocommit": True}))
        self._open = False

    def open(self) -> None:
        if not self._open:
            self.app.open()
            self._open = True

    def close(self) -> None:
        if self._open:
            self.app.close()
            self._open = False

    def defer(self, host: str, server_id: str, work: str, args: Sequence[Any] = ()) -> int:
        """Queue `work` for `server_id` on `host`'s agent; the job's id."""
        self.open()
        job_id = self.app.configure_task(TASK, queue=queue_of(host),
                                         lock=lock_of(server_id)).defer(
            server_id=server_id, work=work, args=[encode(a) for a in args])
        log.info("job %s: %s of server %s -> %s", job_id, work, server_id, queue_of(host))
        return job_id

    def defer_host(self, host: str, work: str) -> int | None:
        """Queue `work` for `host` as a whole; a copy already waiting absorbs it (None)."""
        self.open()
        try:
            return self.app.configure_task(HOST_TASK, queue=queue_of(host),
                                           queueing_lock=f"{work}:{host}").defer(work=work)
        except AlreadyEnqueued:
            return None

    def pending(self, host: str) -> int:
        """Server jobs waiting for or running on `host` (host jobs such as
        `network_changed` are not counted)."""
        self.open()
        return sum(1 for job in self.app.job_manager.list_jobs(queue=queue_of(host), task=TASK)
                   if job.status in (Status.TODO.value, Status.DOING.value))


Runner = Callable[[str, str, list[Any]], None]


def worker_app(conninfo: str, run: Runner, run_host: Callable[[str], None]) -> App:
    """The procrastinate app of an agent: `run(server_id, work, args)` does each server
    job, `run_host(work)` each host job."""
    app = App(connector=PsycopgConnector(conninfo=conninfo))

    @app.task(name=HOST_TASK)
    def host_job(work: str) -> None:
        run_host(work)

    @app.task(name=TASK, pass_context=True)
    def server_job(context: JobContext, server_id: str, work: str, args: list[Any]) -> None:
        job = context.job
        log.info("job %s: %s of server %s (attempt %d)", job.id, work, server_id,
                 job.attempts + 1)
        run(server_id, work, [decode(a) for a in args])

    return app


async def retry_interrupted(app: App, host: str) -> list[int]:
    """Put back to `todo` the jobs this host's previous agent was running when it died.

    One agent serves a host's queue, so at start every `doing` job there belongs to a
    process that is gone. procrastinate's own stalled-job check waits for the dead
    worker's heartbeat to age; this host knows at once.
    """
    retried = []
    for job in await app.job_manager.list_jobs_async(queue=queue_of(host),
                                                     status=Status.DOING.value):
        assert job.id is not None
        await app.job_manager.retry_job_by_id_async(job.id, retry_at=datetime.now().astimezone())
        retried.append(job.id)
        log.warning("job %s (%s) was interrupted by the last stop: running it again",
                    job.id, job.task_kwargs.get("work"))
    return retried
