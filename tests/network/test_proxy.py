"""The guests' package proxy (seed 004): apt-cacher-ng in kumo's namespace, for real.

Two fake guests on one network fetch the same package from the host's own Debian
mirror through the proxy: the first download runs at the configured limit, the
second comes from the cache (the proxy's log shows no second upstream fetch), and
a URL outside the mirrors is refused. Needs root and the host's mirror reachable
(as `apt-get` needs it); skips saying which is missing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kumo.config import Settings
from kumo.network.bridge import BridgeNetworking
from kumo.network.proxy import host_mirrors
from kumo.network.topology import GroupPlan, Topology
from tests.network.plumbing import (
    FakeGuest,
    fake_guests,
    free_external_cidr,
    new_id,
    skip_unless_root_tools,
)
from tests.network.test_bridge import EGRESS_ALL, HOST, net, port

RATE_KIB = 20  # KiB/s: small enough that the download below takes seconds
PACKAGE_PATH = "pool/main/f/figlet/figlet_2.2.5-3+b1_amd64.deb"
PACKAGE_SIZE = 136540


def debian_mirror() -> str:
    mirrors = [m for m in host_mirrors() if m.endswith("/debian")]
    if not mirrors:
        pytest.skip("the host's apt sources name no http:// Debian mirror")
    try:
        httpx.head(f"{mirrors[0]}/{PACKAGE_PATH}", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.skip(f"the host cannot reach its mirror {mirrors[0]} ({exc})")
    return mirrors[0]


@pytest.fixture(scope="module")
def guests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BridgeNetworking,
                                                                      list[FakeGuest], str]]:
    skip_unless_root_tools()
    for tool in ("apt-cacher-ng", "pasta"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make deps installs it)")
    mirror = debian_mirror()
    settings = Settings(data_dir=tmp_path_factory.mktemp("proxy") / "data")
    settings.network.external_cidr = free_external_cidr()
    settings.network.package_proxy_max_rate = RATE_KIB
    driver = BridgeNetworking(settings, HOST)
    network = net("10.62.0.0/24")
    group = GroupPlan(id=new_id(), stateful=True, rules=(EGRESS_ALL,))
    ports = [port(network, "10.62.0.11", (group.id,)), port(network, "10.62.0.12", (group.id,))]
    driver.setup()
    try:
        with fake_guests(driver.ns.name, ports) as made:
            driver.apply(Topology(networks=(network,), ports=tuple(ports), groups=(group,)))
            pair = [made[p.id] for p in ports]
            pair[0].configure("10.62.0.11", 24, None)
            pair[1].configure("10.62.0.12", 24, None)
            yield driver, pair, mirror
    finally:
        driver.teardown()


def fetch(guest: FakeGuest, url: str) -> tuple[str, float]:
    started = time.monotonic()
    out = guest.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                    "-x", "http://10.62.0.2:3142", url, timeout=120)
    return out.stdout.strip(), time.monotonic() - started


def test_second_guest_gets_the_package_from_the_cache_at_no_cost(
        guests: tuple[BridgeNetworking, list[FakeGuest], str]) -> None:
    driver, (first, second), mirror = guests
    url = f"{mirror}/{PACKAGE_PATH}"
    answer, took = fetch(first, url)
    assert answer == f"200 {PACKAGE_SIZE}"
    expected = PACKAGE_SIZE / (RATE_KIB * 1024)
    assert 0.8 * expected <= took <= 1.2 * expected + 1.0, (took, expected)
    answer, took_again = fetch(second, url)
    assert answer == f"200 {PACKAGE_SIZE}"
    assert took_again < expected / 4
    log = [line.split("|") for line in Path(driver.proxy.log_file).read_text().splitlines()]
    fetched = [entry for entry in log if entry[1] == "I" and entry[4].endswith(PACKAGE_PATH)]
    served = [entry for entry in log if entry[1] == "O" and entry[4].endswith(PACKAGE_PATH)]
    assert len(fetched) == 1  # one download from the mirror
    assert {entry[3] for entry in served} == {"10.62.0.11", "10.62.0.12"}


def test_only_the_configured_mirrors(guests: tuple[BridgeNetworking, list[FakeGuest], str]
                                     ) -> None:
    _driver, (first, _second), _mirror = guests
    answer, _took = fetch(first, "http://example.com/")
    assert answer.startswith("403")
