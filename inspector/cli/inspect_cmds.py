"""``inspector inspect`` (the headless station and bulk review) and ``inspector models``."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from inspector.cli.common import db_option, device_option, resolve_db
from inspector.errors import InspectorError

if TYPE_CHECKING:  # loaded inside the commands: see audit_cmds
    from inspector.audit import AuditStore, User

PASSWORD_ENV = "INSPECTOR_PASSWORD"


def login(store: AuditStore, user_id: str) -> User:
    """Authenticates with the password from INSPECTOR_PASSWORD or a hidden prompt."""
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        password = click.prompt(f"password for {user_id}", hide_input=True)
    return store.authenticate(user_id, password)


def read_decisions(path: Path) -> dict[str, tuple[str, str | None]]:
    """CSV rows ``frame file name, accept|reject, reason``; a header row is optional.

    Every row is checked before anything is recorded: a reason above the store's cap is a
    one-line refusal naming the line, whatever its size (the csv module's own field limit is
    raised for the read so that a huge field is measured, not a crash).
    """
    from inspector.audit.users import REASON_MAX
    from inspector.station import DECISIONS

    if not path.is_file():
        raise InspectorError(f"decisions file not found: {path}")
    out: dict[str, tuple[str, str | None]] = {}
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, 1 << 30))
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.reader(f), start=1):
                if not row or (n == 1 and row[0].strip().lower() in ("frame", "file", "name")):
                    continue
                if len(row) < 2 or row[1].strip().lower() not in DECISIONS:
                    raise InspectorError(f"{path}:{n}: expected 'frame,accept|reject,reason', got {str(row)[:200]}")
                reason = row[2].strip() if len(row) > 2 and row[2].strip() else None
                if reason is not None and len(reason) > REASON_MAX:
                    raise InspectorError(
                        f"{path}:{n}: reason has {len(reason):,} characters; the limit is {REASON_MAX:,}"
                    )
                out[row[0].strip()] = (row[1].strip().lower(), reason)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InspectorError(f"{path}: not a readable decisions CSV ({exc})") from None
    finally:
        csv.field_size_limit(old_limit)
    return out


def flush_or_stop(store: AuditStore) -> None:
    """Sends queued records; stops the run when one is held in memory only (neither the database
    nor the queue folder took it), because ending the process would lose it."""
    result = store.flush_queue()
    for line in result.rejected:
        click.echo(f"refused by the store, kept beside the queue: {line}", err=True)
    if result.recorded:
        click.echo(f"{len(result.recorded)} queued record(s) written to the store", err=True)
    if store.queue.in_memory:
        raise InspectorError(
            f"{store.queue.in_memory} record(s) could not be written to the store nor queued in "
            f"{store.queue.folder}: stopping so nothing more is lost; free the disk and run again"
        )


@click.command("inspect")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True)
@click.option("--input", "source", required=True, help="Image folder, video file, or camera:N.")
@db_option
@click.option("--station", required=True, help="Station name recorded with every inspection.")
@click.option("--operator", default=None, help="Operator id whose --decisions are recorded.")
@click.option(
    "--decisions",
    "decisions_csv",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV: frame file name, accept|reject, reason.",
)
@click.option("--batch-size", type=click.IntRange(1, 64), default=1, show_default=True)
@device_option
def inspect_cmd(
    model_dir: Path,
    source: str,
    db: str | None,
    station: str,
    operator: str | None,
    decisions_csv: Path | None,
    batch_size: int,
    device: str,
) -> None:
    """Inspect every frame of --input and record each inspection in the audit store.

    With --operator and --decisions, that operator's decisions are recorded too, after the
    password check (INSPECTOR_PASSWORD or a prompt).

    Example: inspector inspect --model models/pill --input frames/ --db audit.db --station line-1
    """
    from inspector.pipeline import Inspector
    from inspector.sources import open_source
    from inspector.station import Station

    if (operator is None) != (decisions_csv is None):
        raise InspectorError("--operator and --decisions go together")
    decisions = read_decisions(decisions_csv) if decisions_csv else {}
    from inspector.audit import AuditStore

    with AuditStore.open(resolve_db(db)) as store:
        inputs = Path(source).resolve()
        if inputs.is_dir() and store.frames_dir.resolve().is_relative_to(inputs):
            raise InspectorError(
                f"the audit store's frame copies ({store.frames_dir}) would land inside the input folder "
                f"{source}: keep the database elsewhere or set INSPECTOR_FRAMES"
            )
        flush_or_stop(store)  # what an earlier run left queued goes first, in order
        user = login(store, operator) if operator else None
        st = Station(store, Inspector.load(model_dir, device), station)
        src = open_source(source)
        n_decided = 0
        seen: set[str] = set()  # frame names only: the station keeps few frames in memory
        for item in st.run(src, batch_size):
            if isinstance(item, str):
                click.echo(item, err=True)
                continue
            r = item.result
            seen.add(r.source)
            line = f"{r.source}: {r.verdict} score {r.score:.4f} (thr {r.threshold:.4f})"
            if r.out_of_domain is not None:
                line = f"{r.source}: OUT-OF-DOMAIN, routed to review: {r.out_of_domain} (score {r.score:.4f})"
            if item.inspection_id is None:
                line += " [waiting in retry queue]"
            if user is not None and r.source in decisions:
                decision, reason = decisions[r.source]
                st.decide(user, item, decision, reason_code=None, reason_text=reason)
                n_decided += 1
                line += f" -> {decision} by {user.id}"
            click.echo(line)
            if store.queue.in_memory:
                flush_or_stop(store)
        flush_or_stop(store)
        c = st.counts
        missing = sorted(set(decisions) - seen)
        click.echo(
            f"{c.inspected} inspected ({c.verdicts['OK']} OK, {c.verdicts['REVIEW']} REVIEW, "
            f"{c.verdicts['DEFECT']} DEFECT, {c.verdicts['OOD']} OUT-OF-DOMAIN), {n_decided} decisions, "
            f"{c.unreadable} unreadable, "
            f"{store.queue_length} waiting in the retry queue"
        )
        if missing:
            raise InspectorError(f"{len(missing)} decision(s) name frames not in the input: {', '.join(missing[:5])}")


@click.group("models")
def models_group() -> None:
    """Model versions in the audit store: register, list, activate, roll back."""


@models_group.command("register")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True)
@db_option
@click.option("--as", "actor", required=True, help="Engineer id (password from INSPECTOR_PASSWORD or a prompt).")
@click.option("--activate/--no-activate", default=True, show_default=True)
def register_cmd(model_dir: Path, db: str | None, actor: str, activate: bool) -> None:
    """Record a trained model version so stations can name it in their records.

    Example: inspector models register --model models/pill --db audit.db --as eng1
    """
    from inspector.audit import AuditStore
    from inspector.pipeline import Inspector
    from inspector.station import Station

    with AuditStore.open(resolve_db(db)) as store:
        user = login(store, actor)
        st = Station(store, Inspector.load(model_dir, "cpu"), "registration")
        mid = st.model_version_id or st.register_model(user)
        if activate:
            store.activate_model(user, mid, "registered from the command line")
        click.echo(f"model version {mid}: {model_dir}{' (active)' if activate else ''}")


@models_group.command("list")
@db_option
def list_cmd(db: str | None) -> None:
    """List recorded model versions.

    Example: inspector models list --db audit.db
    """
    from inspector.audit import AuditStore

    with AuditStore.open(resolve_db(db)) as store:
        active = store.active_model()
        for m in store.models():
            mark = "*" if active is not None and m.id == active.id else " "
            click.echo(f"{mark} {m.id:>3}  {m.backbone:<18} {m.weights_hash[:12]}  {m.model_dir}")


@models_group.command("rollback")
@db_option
@click.option("--as", "actor", required=True, help="Engineer id.")
@click.option("--reason", required=True, help="Why (recorded).")
def rollback_cmd(db: str | None, actor: str, reason: str) -> None:
    """Re-activate the previously active model version (logged with the reason).

    Example: inspector models rollback --db audit.db --as eng1 --reason "false rejects on line 2"
    """
    from inspector.audit import AuditStore

    with AuditStore.open(resolve_db(db)) as store:
        mid = store.rollback_model(login(store, actor), reason)
        click.echo(f"active model version is now {mid}")


def register(main: click.Group) -> None:
    main.add_command(inspect_cmd)
    main.add_command(models_group)
