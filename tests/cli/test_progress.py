"""kumo.cli.progress: plain lines when the output is not a terminal."""

from __future__ import annotations

import io

import pytest

from kumo.cli.progress import progress_bar


def test_plain_progress_prints_each_tenth_then_stops() -> None:
    out = io.StringIO()
    with progress_bar("Uploading x", total=1000, file=out) as bar:
        for _ in range(100):
            bar.advance(10)
    lines = out.getvalue().splitlines()
    percents = [int(line.split(": ")[1].split("%")[0]) for line in lines]
    assert percents == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert lines[-1].startswith("Uploading x: 100% (1000 B of 1000 B, ")


def test_unknown_total_reports_done_with_bytes() -> None:
    out = io.StringIO()
    with progress_bar("Downloading y", file=out) as bar:
        bar.advance(2048)
    assert out.getvalue().startswith("Downloading y: done (2.0 KiB")


def test_total_learned_later_and_percent_unit() -> None:
    out = io.StringIO()
    with progress_bar("Converting", unit="percent", file=out) as bar:
        bar.set_total(100)
        bar.update(55)
        bar.update(100)
    assert out.getvalue().splitlines() == ["Converting: 55%", "Converting: 100%"]


def test_failure_prints_no_done_line() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError), progress_bar("Uploading z", total=100, file=out) as bar:
        bar.advance(5)
        raise RuntimeError("boom")
    assert "done" not in out.getvalue()
    assert "100%" not in out.getvalue()


def test_disabled_prints_nothing() -> None:
    out = io.StringIO()
    with progress_bar("Quiet", total=10, file=out, enabled=False) as bar:
        bar.advance(10)
    assert out.getvalue() == ""
