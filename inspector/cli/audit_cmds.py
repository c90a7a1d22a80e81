"""``inspector users ...`` and ``inspector audit ...``: thin commands over ``AuditStore``.

Passwords come from ``INSPECTOR_PASSWORD`` (for scripts) or a hidden prompt; they are never
accepted as an option, so they do not land in shell history or process lists.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from inspector.cli.common import db_option, resolve_db
from inspector.errors import InspectorError

if TYPE_CHECKING:  # the store (SQLAlchemy, about 0.3 s) loads inside the commands that open one:
    from inspector.audit import AuditStore, User  # --help and --version start without it

PASSWORD_ENV = "INSPECTOR_PASSWORD"  # the acting user's (or the first admin's) password
NEW_PASSWORD_ENV = "INSPECTOR_NEW_PASSWORD"  # a new user's password when an admin adds them


def as_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--as", "actor_id", metavar="ID", default=None, help="Acting user (password: prompt or env).")(
        f
    )


@contextmanager
def opened(db: str | None) -> Iterator[AuditStore]:
    """Opens the store and turns every audit error into one line and exit status 1."""
    try:
        from inspector.audit import AuditStore

        store = AuditStore.open(resolve_db(db))
    except InspectorError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield store
    except InspectorError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


def password(prompt: str) -> str:
    return os.environ.get(PASSWORD_ENV) or str(click.prompt(prompt, hide_input=True))


def login(store: AuditStore, actor_id: str | None) -> User:
    if not actor_id:
        raise click.UsageError("this action needs an acting user: --as ID")
    return store.authenticate(actor_id, password(f"Password for {actor_id}"))


@click.group("users")
def users_group() -> None:
    """Manage who may use the station (admins only, except the very first admin).

    \b
    Example:
      INSPECTOR_PASSWORD=... inspector users add root --role admin --db audit.db
    """


@users_group.command("add")
@click.argument("user_id")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["operator", "engineer", "auditor", "admin"]),
    help="What the user may do.",
)
@click.option("--name", default=None, help="Full name shown on signatures (default: the id).")
@db_option
@as_option
def users_add(user_id: str, role: str, name: str | None, db: str | None, actor_id: str | None) -> None:
    """Add a user; the first user of an empty store must be an admin and needs no --as.

    Passwords: the acting admin's from INSPECTOR_PASSWORD, the new user's from
    INSPECTOR_NEW_PASSWORD (the first admin's from INSPECTOR_PASSWORD); else hidden prompts.

    \b
    Example:
      inspector users add ana --role operator --name "Ana Ruiz" --as root --db audit.db
    """
    with opened(db) as store:
        if store.list_users():
            actor: User | None = login(store, actor_id)
            new_pw = os.environ.get(NEW_PASSWORD_ENV) or None
        else:  # bootstrap: the first admin sets their own password
            actor, new_pw = None, os.environ.get(PASSWORD_ENV) or None
        if new_pw is None:
            new_pw = str(click.prompt(f"New password for {user_id}", hide_input=True, confirmation_prompt=True))
        user = store.add_user(actor, user_id, name or user_id, role, new_pw)
        click.echo(f"added {user.id} ({user.role})")


@users_group.command("list")
@db_option
def users_list(db: str | None) -> None:
    """List users with role and state (never passwords).

    \b
    Example:
      inspector users list --db audit.db
    """
    with opened(db) as store:
        for u in store.list_users():
            state = ("active" if u.active else "inactive") + (", locked" if u.locked else "")
            click.echo(f"{u.id}\t{u.role}\t{state}\t{u.name}")


@users_group.command("unlock")
@click.argument("user_id")
@click.option("--reason", required=True, help="Why the lockout is lifted (recorded).")
@db_option
@as_option
def users_unlock(user_id: str, reason: str, db: str | None, actor_id: str | None) -> None:
    """Lift a lockout after failed logins (admins); the unlock is logged with its reason.

    \b
    Example:
      inspector users unlock ana --reason "identity checked by phone" --as root --db audit.db
    """
    with opened(db) as store:
        store.unlock_user(login(store, actor_id), user_id, reason)
        click.echo(f"unlocked {user_id}")


@click.group("audit")
def audit_group() -> None:
    """Verify, checkpoint and export the tamper-evident audit trail.

    \b
    Example:
      inspector audit verify --db audit.db --checkpoint head-2025-06.json
    """


@audit_group.command("verify")
@db_option
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A head exported earlier; records it counted must still be there.",
)
@click.option("--frames", is_flag=True, help="Also re-hash every stored frame file (slow).")
@click.option(
    "--allow-missing-head",
    is_flag=True,
    help="Accept a missing or foreign head file (a warning instead of a failure); the choice is logged.",
)
@click.option(
    "--witness",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Folder of stations' exported witness logs: every head they saw must still hold.",
)
def audit_verify(
    db: str | None, checkpoint: Path | None, frames: bool, allow_missing_head: bool, witness: Path | None
) -> None:
    """Walk and replay the hash chain; exit 1 naming the first broken record (edited, deleted,
    inserted, reordered, truncated), actor (role, login, lockout at that moment), or the first
    record a station's witnessed head contradicts.

    \b
    Example:
      inspector audit verify --db audit.db
      inspector audit verify --db postgresql+psycopg://auditor@central/inspector --witness heads/
    """
    with opened(db) as store:
        result = store.verify(checkpoint, frames=frames, allow_missing_head=allow_missing_head, witness=witness)
        if store.db_path is None and witness is None and checkpoint is None:
            result.warnings.append(
                "a server store has no head file: its owner could rewrite it unseen; "
                "check it against the stations' heads with --witness DIR"
            )
    if result.witnessed:
        click.echo(result.witnessed)
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
    if not result.ok:
        for p in result.problems[1:10]:
            click.echo(f"  also: {p}", err=True)
        raise click.ClickException(result.summary())
    click.echo(result.summary())


@audit_group.command("checkpoint")
@db_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write the head (count and hash) to; keep it off this machine.",
)
def audit_checkpoint(db: str | None, output: Path) -> None:
    """Export the chain head so a later verify can prove nothing was removed.

    \b
    Example:
      inspector audit checkpoint --db audit.db -o head-2025-06.json
    """
    with opened(db) as store:
        head = store.checkpoint(output)
    click.echo(f"checkpoint: {head.count} records, head {head.hash[:16]} -> {output}")


@audit_group.command("export")
@db_option
@as_option
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write every decision with its context as CSV.",
)
@click.option(
    "--pdf",
    "pdf_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a human-readable PDF with signatures and the verification result.",
)
@click.option(
    "--allow-broken",
    is_flag=True,
    help="Export even when verify finds the chain broken (the broken records are marked).",
)
def audit_export(
    db: str | None, actor_id: str | None, csv_path: Path | None, pdf_path: Path | None, allow_broken: bool
) -> None:
    """Export the decision log (auditors); each export is itself recorded. A broken chain is
    refused (exit 1) unless --allow-broken.

    \b
    Example:
      inspector audit export --db audit.db --as aud --csv log.csv --pdf log.pdf
    """
    if csv_path is None and pdf_path is None:
        raise click.UsageError("give --csv FILE and/or --pdf FILE")
    with opened(db) as store:
        actor = login(store, actor_id)
        if csv_path is not None:
            n = store.export_csv(actor, csv_path, allow_broken=allow_broken)
            click.echo(f"{n} decisions -> {csv_path}")
        if pdf_path is not None:
            n = store.export_pdf(actor, pdf_path, allow_broken=allow_broken)
            click.echo(f"{n} decisions -> {pdf_path}")


def register(main: click.Group) -> None:
    """Adds ``users`` and ``audit`` to the ``inspector`` command."""
    from inspector.cli import central_cmds

    main.add_command(users_group)
    main.add_command(audit_group)
    central_cmds.register(audit_group)
