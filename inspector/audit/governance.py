"""Governance operations of AuditStore: model versions, thresholds and exports (users: ``users``).

Every write checks the actor's session and role *inside* its transaction, from the chained
state, so a role change or deactivation takes effect at once and the UI cannot bypass it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from inspector.audit import chain, queries
from inspector.audit.errors import ChainBroken, ValidationError
from inspector.audit.records import DecisionView, ModelInfo, User
from inspector.audit.roles import Action
from inspector.audit.schema import ModelVersionRow
from inspector.audit.users import UsersMixin, finite, reason_text, required_text


class GovernanceMixin(UsersMixin):
    """Models and exports (users come from ``UsersMixin``); mixed into ``AuditStore``."""

    # ------------------------------------------------------------------ models
    def register_model(
        self,
        actor: User,
        *,
        weights_hash: str,
        backbone: str,
        manifest_hash: str,
        thresholds: Mapping[str, Any],
        metrics: Mapping[str, Any],
        model_dir: str | os.PathLike[str],
        files: Mapping[str, str] | None = None,
        backbone_sha256: str | None = None,
    ) -> int:
        """Records a trained model version (engineers); it becomes active only when activated.

        Args:
            files: every file of the model directory (relative path -> sha256, ``model.json``
                included), from ``inspector.audit.model_files.hash_model_dir``; stations refuse a
                directory that no longer matches.
            backbone_sha256: the backbone fingerprint the model was built with.
        """
        try:
            th, me = chain.canonical_json(dict(thresholds)), chain.canonical_json(dict(metrics))
            fj = None if files is None else chain.canonical_json({str(k): str(v) for k, v in files.items()})
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"thresholds and metrics must be plain JSON ({exc})") from None

        def fn(s: Session) -> int:
            self._require(s, actor, Action.REGISTER_MODEL)
            if queries.default_threshold(dict(thresholds)) is None:
                raise ValidationError("thresholds need a numeric 'decision' (or 'image' / 'threshold') value")
            by = actor.id
            mid = self._append(
                s,
                ModelVersionRow(
                    weights_hash=required_text("weights hash", weights_hash),
                    backbone=required_text("backbone", backbone),
                    manifest_hash=manifest_hash or "",
                    thresholds_json=th,
                    metrics_json=me,
                    model_dir=str(model_dir),
                    trained_by=by,
                    created_at=datetime.now(UTC),
                    files_json=fj if fj is not None else chain.canonical_json({}),
                    backbone_sha256=backbone_sha256 or "",
                ),
            )
            self._event(
                s,
                "model_trained",
                by,
                model_id=mid,
                weights_hash=weights_hash,
                backbone=backbone,
                session=actor.session_id,
            )
            return mid

        return self._write(fn)

    def activate_model(self, actor: User, model_id: int, reason: str) -> None:
        """Makes a model version the one that judges new frames (engineers, with a reason)."""
        why = reason_text("reason", reason)

        def fn(s: Session) -> None:
            self._require(s, actor, Action.ACTIVATE_MODEL)
            by = actor.id
            queries.models(s, model_id)
            stack, _, _ = queries.activation_stack(s)
            self._event(
                s,
                "model_activated",
                by,
                model_id=model_id,
                previous_model_id=stack[-1] if stack else None,
                reason=why,
                session=actor.session_id,
            )

        self._write(fn)

    def rollback_model(self, actor: User, reason: str) -> int:
        """Re-activates the model that was active before the current one; returns its id."""
        why = reason_text("reason", reason)

        def fn(s: Session) -> int:
            self._require(s, actor, Action.ACTIVATE_MODEL)
            stack, _, _ = queries.activation_stack(s)
            if len(stack) < 2:
                raise ValidationError("no earlier model to roll back to")
            self._event(
                s,
                "model_rolled_back",
                actor.id,
                from_model_id=stack[-1],
                model_id=stack[-2],
                reason=why,
                session=actor.session_id,
            )
            return stack[-2]

        return self._write(fn)

    def set_threshold(self, actor: User, model_id: int, value: float, reason: str) -> None:
        """Changes a model's decision threshold (engineers, with a reason); old value is logged."""
        new, why = finite("threshold", value), reason_text("reason", reason)

        def fn(s: Session) -> None:
            self._require(s, actor, Action.SET_THRESHOLD)
            old = queries.models(s, model_id)[0].threshold
            self._event(
                s,
                "threshold_changed",
                actor.id,
                model_id=model_id,
                old=old,
                new=new,
                reason=why,
                session=actor.session_id,
            )

        self._write(fn)

    def models(self) -> list[ModelInfo]:
        """Read-only: every registered model version with its activation state."""
        with self._read() as s:
            return queries.models(s)

    def model(self, model_id: int) -> ModelInfo:
        """Read-only: one model version (NotFound if unknown)."""
        with self._read() as s:
            return queries.models(s, model_id)[0]

    def active_model(self) -> ModelInfo | None:
        """Read-only: the model version judging new frames, or None before any activation."""
        return next((m for m in self.models() if m.active), None)

    # ------------------------------------------------------------------ exports
    def _export(
        self,
        actor: User,
        path: str | os.PathLike[str],
        fmt: str,
        writer: Callable[[list[DecisionView], chain.VerifyResult, Path], None],
        allow_broken: bool,
    ) -> int:
        with self._read() as s:
            self._require(s, actor, Action.EXPORT)
        result = self.verify()
        if not result.ok and not allow_broken:
            raise ChainBroken(f"{result.summary()}; export refused (allow_broken exports it with the breaks marked)")
        rows = self.decisions()
        out = Path(path)
        writer(rows, result, out)
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        try:
            self._write(
                lambda s: self._event(
                    s,
                    "export_made",
                    actor.id,
                    format=fmt,
                    path=str(out.resolve()),
                    sha256=digest,
                    decisions=len(rows),
                    chain_ok=result.ok,
                    problems=len(result.problems),
                    session=actor.session_id,
                )
            )
        except BaseException:
            out.unlink(missing_ok=True)  # an export exists only if its event does
            raise
        return len(rows)

    def export_csv(self, actor: User, path: str | os.PathLike[str], *, allow_broken: bool = False) -> int:
        """Writes every decision with its context as CSV (auditors); returns the row count.

        Raises:
            ChainBroken: verify found problems and ``allow_broken`` is False; nothing written.
        """
        from inspector.audit.export import write_csv

        return self._export(actor, path, "csv", lambda rows, res, out: write_csv(rows, out, res), allow_broken)

    def export_pdf(self, actor: User, path: str | os.PathLike[str], *, allow_broken: bool = False) -> int:
        """Writes a human-readable PDF: each signature (name and role at signing, UTC time,
        meaning), the verify result, broken records and overruled verdicts marked."""
        from inspector.audit.export import write_pdf

        return self._export(
            actor,
            path,
            "pdf",
            lambda rows, res, out: write_pdf(rows, res, out, store=str(self.db_path or ""), exported_by=actor.name),
            allow_broken,
        )
