"""Read a tempest run's results (subunit2csv's rows) into counts and the failing tests."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

_PASSED = {"success", "xfail"}
_SKIPPED = {"skip"}
# "tempest.api.x.Y.test_z[id-…,smoke]" -> "tempest.api.x.Y.test_z"
_ATTRS = re.compile(r"\[.*\]$")


@dataclass
class Results:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The closing line: `N passed, N failed, N skipped`."""
        return f"{len(self.passed)} passed, {len(self.failed)} failed, {len(self.skipped)} skipped"

    @property
    def pass_rate(self) -> float:
        """Passed over the tests that ran (skips do not count), as tempest's goals are set."""
        ran = len(self.passed) + len(self.failed)
        return len(self.passed) / ran if ran else 0.0


def parse_csv(text: str) -> Results:
    """subunit2csv output (header `test,status,start_time,stop_time`) -> Results."""
    results = Results()
    for row in csv.DictReader(io.StringIO(text)):
        name, status = row.get("test", ""), row.get("status", "")
        if not name:
            continue
        if status in _PASSED:
            results.passed.append(name)
        elif status in _SKIPPED:
            results.skipped.append(name)
        elif status in ("exists", "inprogress"):
            continue
        else:  # fail, uxsuccess, or a class whose setUpClass failed
            results.failed.append(name)
    return results


def bare_name(test_id: str) -> str:
    """A test id without tempest's `[id-…,smoke]` attributes."""
    return _ATTRS.sub("", test_id)


def required_outcomes(results: Results, required: list[str]) -> dict[str, str]:
    """For each required test id: passed, failed, skipped or not run.

    A test whose class failed in setUpClass is reported by tempest under the class
    name only; it counts as failed here.
    """
    outcome: dict[str, str] = {}
    for verdict, names in (("passed", results.passed), ("failed", results.failed),
                           ("skipped", results.skipped)):
        for name in names:
            outcome[bare_name(name)] = verdict
    classes_failed = {c for n in results.failed if (c := _class_of_setup_failure(n))}
    answer = {}
    for test_id in required:
        name = bare_name(test_id)
        status = outcome.get(name)
        if status is None and name.rsplit(".", 1)[0] in classes_failed:
            status = "failed"
        answer[test_id] = status or "not run"
    return answer


def _class_of_setup_failure(name: str) -> str | None:
    # "setUpClass (tempest.api.compute.servers.test_x.ServersTestJSON)"
    match = re.match(r"^(?:setUpClass|tearDownClass) \((.+)\)$", name)
    return match.group(1) if match else None


def read_known_failures(text: str) -> dict[str, str]:
    """`test.id  # why (issue)` lines -> {bare test id or class: why}; blank and # lines skipped."""
    known: dict[str, str] = {}
    for line in text.splitlines():
        name, _, why = line.partition("#")
        if name.strip():
            known[bare_name(name.strip())] = why.strip()
    return known


def unexpected_failures(results: Results, known: dict[str, str]) -> list[str]:
    """The failed tests the known-failures list does not name (by test, class or module)."""
    def listed(name: str) -> bool:
        parts = (_class_of_setup_failure(name) or bare_name(name)).split(".")
        return any(".".join(parts[:i]) in known for i in range(len(parts), 1, -1))

    return [name for name in results.failed if not listed(name)]
