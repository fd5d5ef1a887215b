"""One conformance run: kumo up, the tiny image, tempest.conf, tempest, results, clean-up.

Everything lives in one work directory (kumo's data, tempest's workspace and logs);
every server tempest left behind is deleted through the API before kumo stops.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from kumo.conformance import tempest_conf
from kumo.conformance.process import KumoProcess, start_kumo, stop_kumo
from kumo.conformance.results import Results, parse_csv
from kumo.conformance.selections import Selection

Say = Callable[[str], None]
FLAVORS = (("c1", "conformance.nano", 192), ("c2", "conformance.micro", 256))


@dataclass(frozen=True)
class Tempest:
    """The tempest installation: its virtual environment's bin directory."""

    bin_dir: Path

    def program(self, name: str) -> str:
        return str(self.bin_dir / name)


class Admin:
    """The admin's view of the API, for setting up and cleaning up around tempest."""

    def __init__(self, kumo: KumoProcess) -> None:
        self.url = kumo.url
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": kumo.password}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
        response = httpx.post(f"{self.url}/identity/v3/auth/tokens", json=body, timeout=30)
        response.raise_for_status()
        self.client = httpx.Client(base_url=self.url, timeout=120, headers={
            "X-Auth-Token": response.headers["X-Subject-Token"]})

    def upload_image(self, name: str, path: Path) -> str:
        created = self.client.post("/image/v2/images", json={
            "name": name, "disk_format": "qcow2", "container_format": "bare",
            "visibility": "public"})
        created.raise_for_status()
        image_id = str(created.json()["id"])
        with open(path, "rb") as data:
            self.client.put(f"/image/v2/images/{image_id}/file", content=data, headers={
                "Content-Type": "application/octet-stream"}).raise_for_status()
        return image_id

    def create_flavor(self, flavor_id: str, name: str, ram: int) -> None:
        response = self.client.post("/compute/v2.1/flavors", json={"flavor": {
            "id": flavor_id, "name": name, "ram": ram, "vcpus": 1, "disk": 1}})
        response.raise_for_status()

    def public_network_id(self) -> str:
        response = self.client.get("/network/v2.0/networks",
                                   params={"name": "public", "router:external": "true"})
        response.raise_for_status()
        [network] = response.json()["networks"]
        return str(network["id"])

    def server_ids(self) -> list[str]:
        response = self.client.get("/compute/v2.1/servers", params={"all_tenants": "1"})
        response.raise_for_status()
        return [s["id"] for s in response.json()["servers"]]

    def delete_all_servers(self, timeout: float = 300) -> list[str]:
        """Delete every server in every project; the ids that would not go."""
        for server_id in self.server_ids():
            self.client.delete(f"/compute/v2.1/servers/{server_id}")
        deadline = time.monotonic() + timeout
        while (left := self.server_ids()) and time.monotonic() < deadline:
            time.sleep(2)
        return left


@contextmanager
def running_kumo(workdir: Path, say: Say, *, network: str = "user") -> Iterator[KumoProcess]:
    say(f"starting kumo up ({network} networking)")
    kumo = start_kumo(workdir / "kumo-data", ("--no-user-config", "--host", "127.0.0.1"),
                      network=network)
    try:
        yield kumo
    finally:
        try:
            left = Admin(kumo).delete_all_servers()
            if left:
                say(f"warning: servers that would not delete: {', '.join(left)}")
        except httpx.HTTPError as exc:
            say(f"warning: could not clean up servers: {exc}")
        stop_kumo(kumo)
        say(f"kumo stopped (its log: {kumo.log})")


def prepare_cloud(kumo: KumoProcess, image_file: Path, say: Say, *,
                  validation: bool = False) -> tempest_conf.CloudFacts:
    """Upload the tiny image twice and add two small flavors, as devstack does for tempest;
    with `validation`, tempest reaches the servers it boots over floating IPs."""
    admin = Admin(kumo)
    say("uploading the tiny image")
    image_ref = admin.upload_image("cirros-tiny", image_file)
    image_ref_alt = admin.upload_image("cirros-tiny-alt", image_file)
    for flavor_id, name, ram in FLAVORS:
        admin.create_flavor(flavor_id, name, ram)
    return tempest_conf.CloudFacts(
        url=kumo.url, admin_password=kumo.password, image_ref=image_ref,
        image_ref_alt=image_ref_alt, flavor_ref=FLAVORS[0][0], flavor_ref_alt=FLAVORS[1][0],
        image_file=str(image_file), run_validation=validation,
        public_network_id=admin.public_network_id() if validation else "")


def run_tempest(tempest: Tempest, workspace: Path, facts: tempest_conf.CloudFacts,
                selection: Selection, include_file: Path | None, concurrency: int,
                say: Say) -> Results:
    """`tempest init`, write tempest.conf, `tempest run`, and read the results."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["HOME"] = str(workspace.parent / "home")
    Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
    if not (workspace / ".stestr.conf").exists():
        subprocess.run([tempest.program("tempest"), "init", str(workspace)], env=env,
                       check=True, capture_output=True)
    (workspace / "etc" / "tempest.conf").write_text(tempest_conf.render(facts))
    command = [tempest.program("tempest"), "run", "--concurrency", str(concurrency)]
    if include_file is not None:
        command += ["--include-list", str(include_file)]
    else:
        assert selection.regex is not None
        command += ["--regex", selection.regex]
    say(f"running tempest: {selection.description or selection.name}")
    with open(workspace / "tempest-run.txt", "w") as out:
        subprocess.run(command, cwd=workspace, env=env, stdout=out, stderr=subprocess.STDOUT,
                       check=False)
    subunit = subprocess.run([tempest.program("stestr"), "last", "--subunit"], cwd=workspace,
                             env=env, capture_output=True, check=False).stdout
    csv_text = subprocess.run([tempest.program("subunit2csv"), "--no-passthrough"],
                              input=subunit, env=env, capture_output=True,
                              check=False).stdout.decode()
    (workspace / "results.csv").write_text(csv_text)
    return parse_csv(csv_text)
