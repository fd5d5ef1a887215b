from __future__ import annotations

import os
from pathlib import Path

import pytest

from kumo.datadir import LOCK_FILE, DataDirError, DataDirInUse, held, hold


def test_one_holder_per_data_dir_named_by_pid(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = hold(data)
    try:
        assert (data / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(DataDirInUse) as refused:
            hold(data)
        assert refused.value.pid == os.getpid()
        assert str(refused.value) == (
            f"another kumo (pid {os.getpid()}) runs with data directory {data}; stop it "
            "first, or use another --data-dir")
        assert (data / LOCK_FILE).read_text() == f"{os.getpid()}\n"  # the refusal kept it
    finally:
        first.close()
    hold(data).close()  # closing (or the process ending) gives the data directory up


def test_held_refuses_while_held_and_never_makes_a_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with held(data):
        assert not data.exists()
    data.mkdir()
    with held(data), pytest.raises(DataDirInUse), held(data):
        pass
    with held(data):
        pass


def test_an_unusable_data_dir_says_so_and_errors_inside_stay_theirs(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(DataDirError) as refused:
        hold(tmp_path / "file" / "data")
    assert str(refused.value) == (
        f"cannot use data directory {tmp_path / 'file' / 'data'}: Not a directory")
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(PermissionError), held(data):  # the block's own error, not the lock's
        raise PermissionError(13, "Permission denied")
