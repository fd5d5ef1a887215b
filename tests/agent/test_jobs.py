"""Jobs on procrastinate: per-host queues, one lock per server, restarts survived."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from kumo.agent.jobs import JobQueue, decode, encode, queue_of, retry_interrupted, worker_app
from kumo.api.context import RequestContext
from kumo.db.engine import libpq_url

CONTEXT = RequestContext(user_id="u1", user_name="alice", project_id="p1", project_name="demo",
                         roles=("member", "reader"), token="gAAAA-token",
                         expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))


def test_a_callers_context_travels_with_its_job() -> None:
    args = [True, "image-1", CONTEXT, ["a", "b"], None, 3]
    assert decode(encode(args)) == args
    with pytest.raises(TypeError, match="cannot carry"):
        encode(object())


@pytest.fixture
def conninfo(database_url: str) -> str:
    if not database_url:
        pytest.skip("jobs live in PostgreSQL (pytest --database=postgresql)")
    return libpq_url(database_url)


@pytest.fixture
def queue(conninfo: str) -> Iterator[JobQueue]:
    jobs = JobQueue(conninfo)
    yield jobs
    jobs.close()


class Recorder:
    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.done: list[tuple[str, str, list[object]]] = []
        self.spans: dict[str, list[tuple[float, float]]] = {}
        self.guard = threading.Lock()

    def __call__(self, server_id: str, work: str, args: list[object]) -> None:
        start = time.monotonic()
        time.sleep(self.pause)
        with self.guard:
            self.done.append((server_id, work, args))
            self.spans.setdefault(server_id, []).append((start, time.monotonic()))


def drain(conninfo: str, host: str, recorder: Recorder, hosts: list[str] | None = None,
          concurrency: int = 1) -> None:
    """Run a worker on `host`'s queue until it is empty (as an agent does, minus waiting)."""
    async def run() -> None:
        app = worker_app(conninfo, recorder, [].append if hosts is None else hosts.append)
        async with app.open_async():
            # A worker with wait=False stops once nothing can start now; jobs behind a
            # server's lock start later: run it again until the queue is empty.
            while any(job.status in ("todo", "doing") for job in
                      await app.job_manager.list_jobs_async(queue=queue_of(host))):
                await app.run_worker_async(queues=[queue_of(host)], wait=False,
                                           concurrency=concurrency,
                                           install_signal_handlers=False, listen_notify=False)

    asyncio.run(run())


def test_jobs_reach_only_their_hosts_agent_with_their_arguments(
        queue: JobQueue, conninfo: str) -> None:
    queue.defer("h1", "s1", "submit_snapshot", [CONTEXT, "image-9"])
    queue.defer("h2", "s2", "submit_stop")
    assert queue.pending("h1") == 1 and queue.pending("h2") == 1
    recorder = Recorder()
    drain(conninfo, "h1", recorder)
    assert recorder.done == [("s1", "submit_snapshot", [CONTEXT, "image-9"])]
    assert queue.pending("h1") == 0 and queue.pending("h2") == 1  # h2's job waits for h2


def test_one_server_one_job_at_a_time_in_order_others_in_parallel(
        queue: JobQueue, conninfo: str) -> None:
    for work in ("submit_stop", "submit_start", "submit_reboot"):
        queue.defer("h1", "s1", work)
    queue.defer("h1", "s2", "submit_stop")
    recorder = Recorder(pause=0.3)
    drain(conninfo, "h1", recorder, concurrency=3)
    s1 = [w for sid, w, _ in recorder.done if sid == "s1"]
    assert s1 == ["submit_stop", "submit_start", "submit_reboot"]
    spans = recorder.spans["s1"]
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans))
    first_s1, s2 = spans[0], recorder.spans["s2"][0]
    assert s2[0] < first_s1[1] and first_s1[0] < s2[1]  # s2 ran beside s1's first job


def test_a_burst_of_host_work_is_one_waiting_job(queue: JobQueue, conninfo: str) -> None:
    assert queue.defer_host("h1", "network_changed") is not None
    assert queue.defer_host("h1", "network_changed") is None  # absorbed by the waiting one
    hosts: list[str] = []
    drain(conninfo, "h1", Recorder(), hosts)
    assert hosts == ["network_changed"]
    assert queue.defer_host("h1", "network_changed") is not None  # a new burst, a new job


def test_a_job_its_agent_died_in_runs_again_at_the_next_start(
        queue: JobQueue, conninfo: str) -> None:
    queue.defer("h1", "s1", "submit_spawn")

    async def crash_while_running() -> list[int]:
        app = worker_app(conninfo, Recorder(), [].append)
        async with app.open_async():
            worker_id = await app.job_manager.register_worker()
            job = await app.job_manager.fetch_job([queue_of("h1")], worker_id)
            assert job is not None  # now `doing`: then the agent is killed
            return await retry_interrupted(app, "h1")

    assert len(asyncio.run(crash_while_running())) == 1
    recorder = Recorder()
    drain(conninfo, "h1", recorder)
    assert recorder.done == [("s1", "submit_spawn", [])]
