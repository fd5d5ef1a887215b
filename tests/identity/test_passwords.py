"""Password hashes: bcrypt at Keystone's cost, long passwords whole, old hashes still valid."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import threading
from collections.abc import Iterator

import pytest

from kumo.identity import passwords


@pytest.fixture
def keystone_cost() -> Iterator[None]:
    passwords.set_rounds(passwords.DEFAULT_ROUNDS)
    yield
    passwords.set_rounds(passwords.MIN_ROUNDS)


def test_hash_is_bcrypt_at_keystones_default_cost(keystone_cost: None) -> None:
    stored = passwords.hash_password("s3cret")
    assert stored.startswith("bcrypt_sha256$$2b$12$")
    assert passwords.verify_password("s3cret", stored)
    assert not passwords.verify_password("s3creT", stored)
    assert not passwords.needs_rehash(stored)


def test_long_passwords_count_whole() -> None:
    """bcrypt alone reads 72 bytes; the SHA-256 before it keeps every byte."""
    stored = passwords.hash_password("a" * 100)
    assert passwords.verify_password("a" * 100, stored)
    assert not passwords.verify_password("a" * 99 + "b", stored)


def test_older_scrypt_hashes_still_verify() -> None:
    salt = os.urandom(16)
    digest = hashlib.scrypt(b"old", salt=salt, n=2**14, r=8, p=1, dklen=32)
    encoded = f"{base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    stored = f"scrypt$16384$8$1${encoded}"
    assert passwords.verify_password("old", stored)
    assert not passwords.verify_password("new", stored)
    assert passwords.needs_rehash(stored)
    assert not passwords.verify_password("old", "garbage")


def test_cost_is_configurable_within_bcrypts_range() -> None:
    with pytest.raises(ValueError):
        passwords.set_rounds(3)


def test_logins_run_on_their_own_low_priority_threads() -> None:
    def where() -> tuple[str, int]:
        native = threading.get_native_id()
        return threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, native)

    name, nice = asyncio.run(passwords.run_login(where))
    assert name.startswith("kumo-login") and nice == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != 19
