"""Boot time of a tiny image against a baseline tiny image, interleaved, in one run.

Each round boots the baseline, then the candidate, with the same plain QEMU command
(`boot.plain_boot`: TCG unless KVM works, 256 MB, 1 vCPU, user networking with the
metadata stub) and times QEMU start -> SSH banner; the guest's own uptime at
`tiny: userland` -> `tiny: ssh ready` (the boot scripts: DHCP, metadata, keys, SSH)
is read from its serial log too. Prints both per round, their medians and the median
and minimum of the per-round ratios (candidate / baseline), and the sizes.

    .venv/bin/python bench/tiny_image.py --baseline old-tiny.qcow2 [--image new.qcow2]
        [--rounds N]

Without --image the candidate is the tiny image this checkout builds (cached).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from boot import MEMORY_MB, VCPUS, MetadataStub, plain_boot

from kumo.config import Settings
from kumo.hypervisor.accel import AccelChooser


def boot(image: Path, work: Path, md_socket: Path, accel: list[str]) -> tuple[float, float]:
    """(seconds from QEMU start to the SSH banner, guest seconds from userland to SSH)."""
    banner = plain_boot(image, "qcow2", work, md_socket, accel, MEMORY_MB, VCPUS, linger=2)
    log = (work / "plain.log").read_text(errors="replace")
    userland = re.search(r"tiny: userland at ([\d.]+) s", log)
    ready = re.search(r"tiny: ssh ready at ([\d.]+) s", log)
    if userland is None or ready is None:
        return banner, float("nan")
    return banner, float(ready.group(1)) - float(userland.group(1))


def summary(candidate: list[float], baseline: list[float]) -> str:
    """Medians and the per-round ratios (rounds where the guest printed nothing are left out)."""
    rounds = [(c, b) for c, b in zip(candidate, baseline, strict=True) if c == c and b == b]
    if not rounds:
        return "no complete round"
    per_round = [c / b for c, b in rounds]
    return (f"medians baseline {statistics.median(b for _, b in rounds):.2f} s, candidate "
            f"{statistics.median(c for c, _ in rounds):.2f} s; candidate/baseline per round "
            f"median {statistics.median(per_round):.2f}, min {min(per_round):.2f} "
            f"({len(rounds)} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the tiny qcow2 to beat")
    parser.add_argument("--image", type=Path, help="a tiny qcow2 (default: build/cache one)")
    parser.add_argument("--rounds", type=int, default=4)
    options = parser.parse_args()
    if options.image is None:
        from kumo.imagebuild.tiny import cached_image

        options.image = cached_image()
    with tempfile.TemporaryDirectory(prefix="kumo-bench-", dir="/tmp") as tmp:
        work = Path(tmp)
        md_socket = work / "md.sock"
        stub = MetadataStub(md_socket)
        threading.Thread(target=stub.serve_forever, daemon=True).start()
        accel = AccelChooser(Settings().compute.virt_type, work / "accel.json").choose()
        times: dict[str, list[tuple[float, float]]] = {"baseline": [], "candidate": []}
        try:
            for n in range(options.rounds):
                for name, image in (("baseline", options.baseline), ("candidate", options.image)):
                    times[name].append(boot(image, work, md_socket, accel.qemu_args()))
                (b_banner, b_ready), (c_banner, c_ready) = (times["baseline"][-1],
                                                            times["candidate"][-1])
                print(f"round {n + 1}: SSH banner baseline {b_banner:.2f} s, candidate "
                      f"{c_banner:.2f} s; guest userland -> ssh ready {b_ready:.2f} / "
                      f"{c_ready:.2f} s", flush=True)
        finally:
            stub.shutdown()
            stub.server_close()
    print(f"accelerator: {accel.name} ({accel.reason})")
    for index, what in ((0, "QEMU start -> SSH banner"), (1, "guest userland -> 'ssh ready'")):
        baseline = [t[index] for t in times["baseline"]]
        candidate = [t[index] for t in times["candidate"]]
        print(f"{what}: {summary(candidate, baseline)}")
    for name, image in (("baseline", options.baseline), ("candidate", options.image)):
        print(f"{name}: {image} {image.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
