"""tempest's image v2 and identity selections against a fresh kumo (the `ci` selection).

Runs `python -m kumo.conformance ci` with the known-failures list: a tempest test that
fails and is not named there fails this test, with tempest's own report in the output.
Needs tempest in `.conformance/venv` (`make test` installs it); skipped without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TEMPEST_VENV = Path(os.environ.get("KUMO_TEMPEST_VENV", REPO / ".conformance" / "venv"))


@pytest.mark.skipif(not (TEMPEST_VENV / "bin" / "tempest").exists(),
                    reason=f"tempest is not installed in {TEMPEST_VENV} (make tempest)")
@pytest.mark.timeout(1800)
def test_image_and_identity_selections_fail_only_where_known(tmp_path: Path) -> None:
    known = resources.files("kumo.conformance").joinpath("known-failures.txt")
    result = subprocess.run(
        [sys.executable, "-m", "kumo.conformance", "ci", "--tempest-venv", str(TEMPEST_VENV),
         "--workdir", str(tmp_path / "conformance"), "--known-failures", str(known),
         # Two workers (CI has two cores); tempest's gates run these selections in parallel.
         "--concurrency", "2"],
        capture_output=True, text=True, check=False)
    report = result.stdout + result.stderr
    print(report)
    assert result.returncode == 0, report
    assert "0 unexpected failures" in report
