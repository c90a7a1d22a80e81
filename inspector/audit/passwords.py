"""Password hashing with argon2id: the clear password never leaves this module's arguments."""

from __future__ import annotations

import os

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from inspector.audit.errors import ValidationError

MIN_LENGTH = 8

# argon2-cffi's defaults (RFC 9106 low-memory profile) cost ~50 ms; tests may lower them with
# INSPECTOR_ARGON2_FAST=1, which only changes the cost parameters stored inside each hash.
_HASHER = PasswordHasher()
_FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def _hasher() -> PasswordHasher:
    return _FAST if os.environ.get("INSPECTOR_ARGON2_FAST") == "1" else _HASHER


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
