"""A throw-away PostgreSQL cluster for tests and benchmarks (Debian's postgresql-15).

`PostgresCluster` runs `initdb` and `postgres` (as a child that dies with the test run)
into a fresh temp folder and listens on a
unix socket in that folder only (no TCP port, so nothing collides with other users of
the machine, and agents in other network namespaces reach it through the file system).
PostgreSQL refuses to run as root: under root the cluster runs as the `postgres` user
Debian's package creates. Durability is traded for speed (fsync off): the data is gone
when the cluster stops anyway.

The fixtures (registered as a pytest plugin by tests/conftest.py):
- `postgres` (session): the cluster, started on first use and stopped at the end.
- `database_url`: "" under SQLite (kumo's default), else a new database per test,
  copied from a migrated template, dropped afterwards.
- `empty_database_url`: a database with no tables yet (migration tests).

`pytest --database=postgresql` runs the tests that use the database against
PostgreSQL and deselects the rest (they do not touch a database).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.children import die_with_parent

SERVER_SETTINGS = {
    "listen_addresses": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


def bindir() -> Path:
    """Where Debian puts the server programs (/usr/lib/postgresql/<version>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise FileNotFoundError("PostgreSQL is not installed (Debian: apt-get install "
                                "postgresql-15; `make deps` does it)")
    return Path(found[-1]).parent


class PostgresCluster:
    """initdb + pg_ctl into a temp folder; `url(name)` for a database in it."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="kumo-pg-", dir=root))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.bin = bindir()
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.running = False
        self.server: subprocess.Popen[bytes] | None = None

    def _run(self, *args: str) -> None:
        result = subprocess.run([str(self.bin / args[0]), *args[1:]], user=self.user,
                                capture_output=True, text=True, cwd=self.root, check=False)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {result.stderr}{result.stdout}\n{log}")

    def start(self) -> PostgresCluster:
        self._run("initdb", "-D", str(self.data), "-U", "kumo", "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        options = [f"-c{k}={v}" for k, v in SERVER_SETTINGS.items()]
        # The postmaster is our child (not pg_ctl's daemon): it dies with this process.
        self.server = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.root), *options],
            user=self.user, cwd=self.root, stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        self.running = True
        deadline = time.monotonic() + 60
        while True:
            if self.server.poll() is not None:
                self.running = False
                raise RuntimeError(f"postgres exited: {self.log.read_text()[-2000:]}")
            ready = subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", str(self.root),
                                    "-U", "kumo", "-d", "postgres"], check=False)
            if ready.returncode == 0:
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("postgres did not accept connections in 60 s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (immediately: nothing in it is worth a checkpoint) and forget it."""
        if self.running and self.server is not None:
            with contextlib.suppress(ProcessLookupError):
                self.server.send_signal(signal.SIGQUIT)  # immediate shutdown
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://kumo@/{database}?host={self.root}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(sql)  # type: ignore[arg-type]

    def create_database(self, name: str, template: str | None = None) -> str:
        # FILE_COPY: a small template copies several times faster than PG 15's WAL_LOG.
        copy = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
        self.admin(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# --- pytest ----------------------------------------------------------------------------

DATABASE_FIXTURES = {"database_url", "empty_database_url", "runtime"}
_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--database", choices=("sqlite", "postgresql"), default="sqlite",
                     help="run the tests that use a database on SQLite (default) or on a "
                          "throw-away PostgreSQL cluster (the others are deselected)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("database") != "postgresql":
        return
    keep, drop = [], []
    for item in items:
        uses = DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
        (keep if uses else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {config.getoption('database')}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the whole session."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def _template(request: pytest.FixtureRequest) -> str | None:
    if request.config.getoption("database") != "postgresql":
        return None
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    from kumo.db.engine import make_engine
    from kumo.db.migrate import upgrade

    url = cluster.create_database("kumo_template")
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()  # CREATE DATABASE ... TEMPLATE wants no one connected to it
    return "kumo_template"


def _fresh(request: pytest.FixtureRequest, template: str | None) -> Iterator[str]:
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    name = f"t{os.getpid()}_{next(_counter)}"
    url = cluster.create_database(name, template)
    try:
        yield url
    finally:
        cluster.drop_database(name)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, _template: str | None) -> Iterator[str]:
    """"" for kumo's SQLite default; under --database=postgresql a migrated database."""
    if _template is None:
        yield ""
        return
    yield from _fresh(request, _template)


@pytest.fixture
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path,
                       _template: Any) -> Iterator[str]:
    """A database with no tables yet."""
    if request.config.getoption("database") != "postgresql":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    yield from _fresh(request, None)
