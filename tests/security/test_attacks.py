"""Every attack of issue 12 is refused by the store or reported by verify (naming record and
actor). Each one passed unnoticed before the users, models, time and exports were chained."""

from __future__ import annotations

import shutil

import pytest

from tests.security.attacks import ATTACKS, Attack
from tests.security.lab import Lab

NEEDS_POPPLER = {"unicode_pdf", "broken_chain_export"}


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.run.__name__ for a in ATTACKS])
def test_attack_is_caught(attack: Attack, lab: Lab) -> None:
    if attack.run.__name__ in NEEDS_POPPLER and shutil.which("pdftotext") is None:
        pytest.fail("pdftotext (Debian poppler-utils, installed by scripts/bootstrap.sh) is needed to read the PDF")
    caught, message = attack.run(lab)
    assert caught, f"{attack.name}: NOT caught - {message}"
    assert message
