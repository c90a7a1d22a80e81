"""A disposable audit store to attack: users of every role, a tiny registered model, frames.

``Lab.build`` makes one from a trained model (the slow part, training, happens once);
``Lab.copy`` builds a fresh one in a new folder for each attack, its own model folder
registered, so that no attack sees another's damage.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from inspector.audit import AuditStore, User, chain
from inspector.audit.schema import HeadRow, LedgerRow, row_columns

PASSWORDS = {
    "root": "root-pass-1",
    "eng": "eng-pass-1",
    "op1": "op1-pass-12",
    "op2": "op2-pass-12",
    "aud": "aud-pass-1",
}
ROLES = {"eng": "engineer", "op1": "operator", "op2": "operator", "aud": "auditor"}


@dataclass
class Lab:
    """A store folder (db, head file, frames), a model folder and a frames folder."""

    root: Path
    sessions: dict[str, User] = field(default_factory=dict)
    store: AuditStore | None = None

    @property
    def db(self) -> Path:
        return self.root / "store" / "audit.db"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def frames(self) -> Path:
        return self.root / "frames"

    @classmethod
    def build(cls, root: Path, trained_model: Path, frames: list[tuple[str, bytes]]) -> Lab:
        """Users of every role, the model registered (with its files) and active.

        Registered from ``model.json`` alone, as ``Station.register_model`` records it, to keep
        torch out of the setup; the attacks that inspect load the model for real.
        """
        from inspector.audit.model_files import hash_model_dir
        from models.patchcore.serialization import read_model_json

        lab = cls(root)
        shutil.copytree(trained_model, lab.model_dir)
        lab.frames.mkdir(parents=True)
        for name, data in frames:
            (lab.frames / name).write_bytes(data)
        st = AuditStore.open(lab.db)
        st.add_user(None, "root", "Root Admin", "admin", PASSWORDS["root"])
        admin = st.authenticate("root", PASSWORDS["root"])
        for uid, role in ROLES.items():
            st.add_user(admin, uid, f"{uid.upper()} User", role, PASSWORDS[uid])
        eng = st.authenticate("eng", PASSWORDS["eng"])
        doc = read_model_json(lab.model_dir)
        mid = st.register_model(
            eng,
            weights_hash=doc["memory_bank_sha256"],
            backbone=doc["config"]["backbone"],
            manifest_hash=doc["metadata"].get("manifest_sha256") or "",
            thresholds=doc["metadata"]["thresholds"],
            metrics=doc["metadata"].get("metrics", {}),
            model_dir=str(lab.model_dir.resolve()),
            files=hash_model_dir(lab.model_dir),
            backbone_sha256=doc["backbone_sha256"],
        )
        st.activate_model(eng, mid, "first model")
        st.close()
        return lab

    def copy(self, root: Path) -> Lab:
        """A fresh lab in ``root`` from this one's model and frames, opened, everyone logged in."""
        frames = [(p.name, p.read_bytes()) for p in sorted(self.frames.iterdir())]
        lab = Lab.build(root, self.model_dir, frames)
        lab.open()
        return lab

    def open(self) -> AuditStore:
        self.store = AuditStore.open(self.db)
        self.sessions = {uid: self.store.authenticate(uid, pw) for uid, pw in PASSWORDS.items()}
        return self.store

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    @property
    def st(self) -> AuditStore:
        assert self.store is not None
        return self.store

    @property
    def model_id(self) -> int:
        return self.st.models()[-1].id

    def inspect(self, i: int, verdict: str = "OK") -> int:
        """One inspection at the threshold in force, with a verdict that follows from the score."""
        thr = float(self.st.model(self.model_id).threshold or 1.0)
        score = thr * (1.5 if verdict == "DEFECT" else 0.5)
        rng = np.random.default_rng(i)
        return self.st.record_inspection(
            station="line-1",
            source=f"cam0/{i}.png",
            frame_index=i,
            frame=rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
            model_version_id=self.model_id,
            score=score,
            threshold=thr,
            verdict=verdict,
            anomaly_map=rng.random((48, 64), dtype=np.float32),
        )

    def forge(self, row: Any) -> int:
        """Appends ``row`` the way an attacker who knows the chain algorithm would: hashes,
        ledger, head row and head file all consistent, but none of the store's checks run."""
        st = self.st
        with st.transaction() as s:
            head = s.execute(select(HeadRow).where(HeadRow.id == 1)).scalar_one()
            s.add(row)
            s.flush()
            content = chain.content_hash(row_columns(row))
            digest = chain.record_hash(head.hash, row.__tablename__, row.id, content)
            s.add(LedgerRow(seq=head.seq + 1, table_name=row.__tablename__, row_id=row.id,
                            content_hash=content, prev_hash=head.hash, record_hash=digest))  # fmt: skip
            head.seq += 1
            head.hash = digest
            s.flush()
            st._local.head = (head.seq, digest)
        return int(row.id)
