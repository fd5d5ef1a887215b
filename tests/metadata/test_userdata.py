"""`server create` user data: base64 in, the same bytes out, 64 KiB at most."""

from __future__ import annotations

import base64
import gzip

import pytest

from kumo.errors import BadRequest
from kumo.metadata.userdata import MAX_USER_DATA, validate_user_data
from tests.metadata.conftest import BINARY_USER_DATA


def test_binary_user_data_round_trips() -> None:
    for data in (BINARY_USER_DATA, gzip.compress(b"#cloud-config\n" * 100), b""):
        assert validate_user_data(base64.b64encode(data).decode()) == data


def test_line_wrapped_base64_is_accepted() -> None:
    wrapped = base64.encodebytes(BINARY_USER_DATA).decode()  # 76-column lines
    assert "\n" in wrapped
    assert validate_user_data(wrapped) == BINARY_USER_DATA


def test_exactly_64_kib_is_accepted() -> None:
    data = bytes(range(256)) * (MAX_USER_DATA // 256)
    assert MAX_USER_DATA == 65536
    assert validate_user_data(base64.b64encode(data).decode()) == data


@pytest.mark.parametrize("size", [MAX_USER_DATA + 1, MAX_USER_DATA * 4])
def test_larger_is_refused_with_a_clear_message(size: int) -> None:
    with pytest.raises(BadRequest, match="User data too large") as caught:
        validate_user_data(base64.b64encode(b"x" * size).decode())
    assert caught.value.status == 400


@pytest.mark.parametrize("text", ["not base64!", "YWJj=", "YWJjZA", "\u00e9\u00e9\u00e9\u00e9"])
def test_bad_base64_is_refused(text: str) -> None:
    with pytest.raises(BadRequest, match="not valid base64"):
        validate_user_data(text)
