"""`python -m kumo.conformance SELECTION`: run tempest against a fresh kumo (`make conformance`).

SELECTION is a name (interop, image, identity, ci, compute, network, security-groups)
or a regex over tempest's test ids. Prints `N passed, N failed, N skipped`, the failing
tests, and for `interop` which required tests did not pass. Exit status 1 when a test
failed (or, with --min-pass-rate, when fewer passed than asked).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from kumo.conformance.harness import Tempest, prepare_cloud, run_tempest, running_kumo
from kumo.conformance.results import (
    Results,
    bare_name,
    read_known_failures,
    required_outcomes,
    unexpected_failures,
)
from kumo.conformance.selections import SELECTIONS, interop_required, selection_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kumo.conformance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("selection", help="|".join(SELECTIONS) + ", or a regex")
    parser.add_argument("--tempest-venv", type=Path, default=Path(".conformance/venv"),
                        help="virtual environment with tempest installed")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep kumo's data, tempest's workspace and logs here "
                             "(default: a temporary directory, removed afterwards)")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--min-pass-rate", type=float, default=None,
                        help="succeed when at least this share (0-1) of the tests that ran "
                             "passed, instead of requiring every one")
    parser.add_argument("--known-failures", type=Path, default=None,
                        help="succeed when every failing test is named in this file "
                             "(`test.id  # why, which issue`); a test, class or module")
    parser.add_argument("--validation", action="store_true",
                        help="tempest logs in to the servers it boots (run_validation) over "
                             "floating IPs: kumo runs with real networks (bridge driver, root)")
    args = parser.parse_args(argv)
    if args.validation and os.geteuid() != 0:
        print("--validation needs root: kumo's real networks live in a network namespace",
              file=sys.stderr)
        return 2

    tempest = Tempest(args.tempest_venv.resolve() / "bin")
    if not Path(tempest.program("tempest")).exists():
        print(f"no tempest in {args.tempest_venv} (make conformance installs it)",
              file=sys.stderr)
        return 2
    selection = selection_for(args.selection)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kumo-conformance-"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        print(f"conformance: {text}", flush=True)

    from kumo.imagebuild.tiny import cached_image

    say("building (or reusing) the tiny image")
    image_file = cached_image()
    try:
        include_file = None
        if selection.include_list is not None:
            include_file = workdir / "include-list.txt"
            # stestr reads each line as a regex: the bare name, escaped, up to its attributes.
            include_file.write_text("".join(f"^{re.escape(bare_name(t))}\\[\n"
                                            for t in interop_required()))
        with running_kumo(workdir, say,
                          network="bridge" if args.validation else "user") as kumo:
            facts = prepare_cloud(kumo, image_file, say, validation=args.validation)
            results = run_tempest(tempest, workdir / "tempest", facts, selection,
                                  include_file, args.concurrency, say)
        report(results, selection.include_list is not None)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"logs: {workdir}/tempest/tempest.log, {workdir}/tempest/tempest-run.txt")
    if args.known_failures is not None:
        known = read_known_failures(args.known_failures.read_text())
        surprises = unexpected_failures(results, known)
        for name in surprises:
            print(f"UNEXPECTED FAILURE {name}")
        fixed = sorted(set(known) & {bare_name(n) for n in results.passed})
        for name in fixed:
            print(f"now passes (take it off {args.known_failures.name}): {name}")
        print(f"{len(surprises)} unexpected failures, "
              f"{len(results.failed) - len(surprises)} known")
        return 0 if results.passed and not surprises else 1
    if args.min_pass_rate is not None:
        return 0 if results.passed and results.pass_rate >= args.min_pass_rate else 1
    return 0 if results.passed and not results.failed else 1


def report(results: Results, interop: bool) -> None:
    for name in sorted(results.failed):
        print(f"FAILED {name}")
    if interop:
        outcomes = required_outcomes(results, interop_required())
        missing = [t for t, status in outcomes.items() if status != "passed"]
        print(f"interop 2020.06: {len(outcomes) - len(missing)} of {len(outcomes)} "
              "required tests pass")
        for test_id in missing:
            print(f"  {outcomes[test_id]:8} {test_id}")
    print(f"pass rate {results.pass_rate:.1%} of the tests that ran")
    print(results.summary())


if __name__ == "__main__":
    sys.exit(main())
