"""A store written by the 0001 code (commit 949455f, tests/inspector/audit/data/store_0001) opens
under 0002: migrated in place, a chained ``schema_upgraded`` event marks the moment, every old
record still verifies, and the new rules hold from then on."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from inspector.audit import AuditStore, ValidationError

LEGACY = Path(__file__).with_name("data") / "store_0001"


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    shutil.copytree(LEGACY, tmp_path / "store")
    return tmp_path / "store" / "audit.db"


def test_0001_store_upgrades_and_verifies(legacy: Path) -> None:
    con = sqlite3.connect(legacy)
    assert con.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
    con.close()
    with AuditStore.open(legacy) as st:
        res = st.verify()
        assert res.ok, res.summary()
        con = sqlite3.connect(legacy)
        assert con.execute("SELECT version_num FROM alembic_version").fetchone() == ("0003",)
        kinds = [r[0] for r in con.execute("SELECT kind FROM events ORDER BY id")]
        con.close()
        assert kinds.count("schema_upgraded") == 1
        old = st.decisions()
        assert len(old) == 3 and not any(d.signer_recorded for d in old)  # signer not stored under 0001
        op = st.authenticate("ana", "ana-pass-1")
        with pytest.raises(ValidationError, match="must supersede"):
            st.record_decision(op, old[-1].inspection_id, "accept", reason_text="x")
        new = st.record_decision(op, old[-1].inspection_id, "accept", reason_text="corrected", supersedes=old[-1].id)
        view = next(d for d in st.decisions() if d.id == new)
        assert view.signer_recorded and (view.user_name, view.user_role) == ("Ana Op", "operator")
        assert st.model(1).threshold == 0.6  # the logged change of 0001 stays in force
        assert st.verify().ok
    with AuditStore.open(legacy) as st:  # a second open migrates nothing and marks nothing
        con = sqlite3.connect(legacy)
        assert [r[0] for r in con.execute("SELECT kind FROM events")].count("schema_upgraded") == 1
        con.close()
        assert st.verify().ok


def test_the_fast_schema_check_knows_alembics_head() -> None:
    """``AuditStore.open`` skips alembic when the store is at ``HEAD_REVISION``: a new migration
    must move it, or stores would never be upgraded."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from inspector.audit import store as store_mod

    cfg = Config()
    cfg.set_main_option("script_location", str(store_mod.MIGRATIONS))
    assert store_mod.HEAD_REVISION == ScriptDirectory.from_config(cfg).get_current_head()
