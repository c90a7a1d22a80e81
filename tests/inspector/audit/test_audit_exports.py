"""Exports: CSV neutralises formulas and keeps huge fields whole; a broken chain is refused
unless allowed, and then each broken record says so."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import Seeded, inspect_one, shell

from inspector.audit import ChainBroken, ValidationError
from inspector.audit import recording as recording_mod


def test_csv_neutralises_formulas_and_keeps_huge_fields(seeded: Seeded, tmp_path: Path, monkeypatch) -> None:
    st = seeded.store
    st.record_decision(seeded.op, inspect_one(seeded, 0), "reject", reason_text='=HYPERLINK("http://x")')
    with pytest.raises(ValidationError, match="limit is 4,000"):
        st.record_decision(seeded.op, inspect_one(seeded, 1), "reject", reason_text="y" * 4001)
    monkeypatch.setattr(recording_mod, "REASON_MAX", 1 << 21)  # a store from before the cap
    st.record_decision(seeded.op, inspect_one(seeded, 2), "reject", reason_text="z" * (1 << 20))
    out = tmp_path / "log.csv"
    assert st.export_csv(seeded.aud, out) == 2
    old = csv.field_size_limit(1 << 22)
    try:
        rows = list(csv.DictReader(out.open(encoding="utf-8")))
    finally:
        csv.field_size_limit(old)
    assert rows[0]["reason_text"].startswith("'=")
    assert len(rows[1]["reason_text"]) == 1 << 20 and rows[1]["record_problems"] == ""


def test_broken_chain_export_refused_then_marked(seeded: Seeded, tmp_path: Path) -> None:
    st = seeded.store
    d1 = st.record_decision(seeded.op, inspect_one(seeded, 0), "accept")
    st.record_decision(seeded.op, inspect_one(seeded, 1, "DEFECT"), "accept", reason_text="dust")
    shell(seeded.path, f"UPDATE decisions SET reason_code = 'x' WHERE id = {d1}")
    out = tmp_path / "log.csv"
    with pytest.raises(ChainBroken, match="export refused"):
        st.export_csv(seeded.aud, out)
    assert not out.exists()
    st.export_csv(seeded.aud, out, allow_broken=True)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert f"decisions {d1}" in rows[0]["record_problems"] and rows[1]["record_problems"] == ""
    assert rows[1]["disagrees"] == "yes"
