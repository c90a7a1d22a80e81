"""One set of length and character rules for every database, checked before the database sees a value.

SQLite stores a 101-character station in a String(100) column and a NUL inside text; PostgreSQL
refuses both with a raw DataError. Checking here, from the ORM's own column types, makes the two
dialects behave alike and turns each refusal into one line naming the field.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, String

from inspector.audit.errors import ValidationError
from inspector.audit.schema import Base

INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # PostgreSQL INTEGER; SQLite would take more


def check_text(name: str, value: str | None, max_len: int | None = None) -> str | None:
    """``value`` unchanged if it fits, else a ValidationError naming ``name``."""
    if value is None:
        return None
    if "\x00" in value:
        raise ValidationError(f"{name} contains a NUL character, which the audit store does not keep")
    if max_len is not None and len(value) > max_len:
        raise ValidationError(f"{name} is {len(value)} characters long; at most {max_len} are kept")
    return value


def check_int(name: str, value: int) -> int:
    if not INT_MIN <= int(value) <= INT_MAX:
        raise ValidationError(f"{name} {value} is out of range ({INT_MIN}..{INT_MAX})")
    return int(value)


def max_length(column: Any) -> int | None:
    """The declared length of an ORM column (``InspectionRow.station`` -> 100), None for Text."""
    t = column.property.columns[0].type if hasattr(column, "property") else column.type
    return getattr(t, "length", None) if isinstance(t, String) else None


def check_row(row: Base) -> None:
    """Every text column within its declared length and free of NUL, every integer in range."""
    table = row.__tablename__
    for col in row.__table__.columns:
        value = getattr(row, col.key, None)
        if value is None:
            continue
        name = f"{col.key.replace('_', ' ')} ({table})"
        if isinstance(col.type, String) and isinstance(value, str):
            check_text(name, value, col.type.length)
        elif isinstance(col.type, Integer) and isinstance(value, int) and not isinstance(value, bool):
            check_int(name, value)
