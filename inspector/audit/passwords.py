"""Password hashing with argon2id: the clear password never leaves this module's arguments."""

from __future__ import annotations

import hashlib
import logging
import os
import sys

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from inspector.audit.errors import ValidationError

MIN_LENGTH = 8

# argon2-cffi's defaults (RFC 9106 low-memory profile) cost ~50 ms. The test suite may lower them
# with INSPECTOR_ARGON2_FAST=1, which only changes the cost parameters stored inside each hash.
# The switch is honoured only inside a pytest run (pytest imported *and* running a test), so a
# station started with it set still stores full-cost hashes, and says so in its log.
FAST_ENV = "INSPECTOR_ARGON2_FAST"
_HASHER = PasswordHasher()
_FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
_log = logging.getLogger(__name__)
_warned = False
ID_HASH_ITERATIONS = 100_000  # a mistyped id may be a password: slow to guess back from its hash


def in_test_suite() -> bool:
    """True only while pytest runs a test in this process."""
    return "_pytest" in sys.modules and "PYTEST_CURRENT_TEST" in os.environ


def _hasher() -> PasswordHasher:
    global _warned
    if os.environ.get(FAST_ENV) != "1":
        return _HASHER
    if in_test_suite():
        return _FAST
    if not _warned:
        _log.warning("%s=1 is honoured only inside the test suite; storing full-cost password hashes", FAST_ENV)
        _warned = True
    return _HASHER


def id_hash(typed_id: str, salt: str) -> str:
    """What a login with an unknown id records instead of the id as typed (it may be a password
    typed into the wrong field): a salted, slow hash that still groups repeated attempts."""
    digest = hashlib.pbkdf2_hmac(
        "sha256", typed_id.encode("utf-8"), f"inspector-id:{salt}".encode(), ID_HASH_ITERATIONS
    )
    return digest.hex()[:32]


def check_strength(password: str) -> None:
    """Refuses passwords too short to be a signature (Part 11 §11.300 asks for controls)."""
    if len(password) < MIN_LENGTH:
        raise ValidationError(f"password must have at least {MIN_LENGTH} characters")


def hash_password(password: str) -> str:
    """Returns an argon2id hash string (salt and parameters embedded)."""
    check_strength(password)
    return _hasher().hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches; a malformed stored hash counts as a mismatch."""
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False
