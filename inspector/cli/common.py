"""Options and helpers shared by commands."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

DATA_ROOT_ENV = "INSPECTOR_DATA_ROOT"
DB_ENV = "INSPECTOR_DB"


def db_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """The one way every command names the audit store: --db, else INSPECTOR_DB, else the default."""
    return click.option(
        "--db",
        "db",
        envvar=DB_ENV,
        default=None,
        metavar="URL",
        help=f"Audit store: a file path or a database URL (else {DB_ENV}, else the user data folder).",
    )(f)


def resolve_db(db: str | None) -> str | None:
    """``db`` as given; when neither --db nor INSPECTOR_DB named one, says where the default is."""
    if db:
        return db
    from inspector.audit.store import default_url  # lazy: keeps CLI start-up free of SQLAlchemy

    where = default_url().removeprefix("sqlite:///")
    click.echo(f"audit store: {where} (the default; choose one with --db or {DB_ENV})", err=True)
    return None


def root_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--root",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=DATA_ROOT_ENV,
        required=True,
        help=f"Data root the manifest's paths are relative to (or set {DATA_ROOT_ENV}).",
    )(f)


def device_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="auto",
        show_default=True,
        help="auto uses a CUDA GPU when there is one.",
    )(f)


class StageBars:
    """A tqdm bar per named stage, fed by the core's ``progress(stage, done, total)`` callbacks."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self.bars.get(stage)
        if bar is None:
            self.close()  # one stage at a time: finished bars stay printed, no overlapping redraws
            bar = self.bars[stage] = tqdm(total=total, desc=f"{stage:<12}", leave=True, dynamic_ncols=True)
        bar.total = total
        bar.n = done
        bar.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()

    def echo(self, message: str) -> None:
        """Prints a line below the bars: an open bar would otherwise take the line's start."""
        self.close()
        click.echo(message)


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def show_progress() -> bool:
    return os.environ.get("INSPECTOR_NO_PROGRESS") is None


def prediction_doc(path: Path, result: Any, model_sha256: str, **extra: Any) -> dict[str, Any]:
    """The per-image JSON of ``inspector predict``, whichever runtime scored it."""
    return {
        "image": str(path),
        "score": result.score,
        "threshold": result.threshold,
        "review_threshold": result.review_threshold,
        "verdict": result.verdict,
        "latency_ms": round(result.latency_ms, 2),
        "frame_sha256": result.frame_sha256,
        "model": model_sha256,
        **extra,
    }
