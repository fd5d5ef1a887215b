"""Password hashes as strong as Keystone's default, computed where they stall nothing.

Keystone hashes with bcrypt at 12 rounds (`[identity] password_hash_algorithm =
bcrypt`, `password_hash_rounds`). kumo does the same over a SHA-256 of the password
(Keystone's `bcrypt_sha256`), so passwords past bcrypt's 72 bytes still count whole.
Hashes carry their own cost; older kumo scrypt hashes still verify.

A hash costs a quarter of a second of CPU by design. Logins therefore run on their
own small pool of threads at the lowest CPU priority (`run_login`): a storm of them
queues there, while every other request keeps the event loop, the shared worker
threads and the CPU it needs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import bcrypt

T = TypeVar("T")
PREFIX = "bcrypt_sha256$"
DEFAULT_ROUNDS = 12  # Keystone's default
MIN_ROUNDS = 4  # bcrypt's floor (for tests: `[identity] password_hash_rounds = 4`)
LOGIN_THREADS = 2
_rounds = DEFAULT_ROUNDS


def set_rounds(rounds: int) -> None:
    """The cost of new hashes (kumo.conf `[identity] password_hash_rounds`)."""
    global _rounds
    if not MIN_ROUNDS <= rounds <= 31:
        raise ValueError(f"password_hash_rounds must be {MIN_ROUNDS}..31, got {rounds}")
    _rounds = rounds


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str) -> str:
    return PREFIX + bcrypt.hashpw(_prehash(password), bcrypt.gensalt(_rounds)).decode()


def verify_password(password: str, stored: str) -> bool:
    if stored.startswith(PREFIX):
        try:
            return bcrypt.checkpw(_prehash(password), stored[len(PREFIX):].encode())
        except ValueError:  # a damaged hash
            return False
    return _verify_scrypt(password, stored)


def needs_rehash(stored: str) -> bool:
    """An older scheme or a lower cost than configured."""
    if not stored.startswith(PREFIX):
        return True
    try:
        return int(stored[len(PREFIX):].split("$")[2]) < _rounds
    except (IndexError, ValueError):
        return True


def _verify_scrypt(password: str, stored: str) -> bool:
    """kumo's hashes before bcrypt: scrypt$N$r$p$salt$digest."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=256 * 1024 * 1024)
    except ValueError:
        return False
    return hmac.compare_digest(digest, expected)


def _lowest_priority() -> None:
    # Linux: PRIO_PROCESS with a thread id sets that thread's nice value only.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _login_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(LOGIN_THREADS, thread_name_prefix="kumo-login",
                                       initializer=_lowest_priority)
        return _pool


async def run_login(work: Callable[[], T]) -> T:
    """Run `work` (which hashes or verifies a password) on the login threads.

    Waiting here holds no worker thread of the shared pool, so however many logins
    queue, other requests still find a thread and a CPU.
    """
    return await asyncio.wrap_future(_login_pool().submit(work))
