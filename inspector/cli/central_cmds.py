"""``inspector audit init-postgres | witness-export | migrate``: running one central store.

Heavy imports (SQLAlchemy through the store) happen inside each command, so ``inspector --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from inspector.cli.common import db_option, resolve_db
from inspector.errors import InspectorError


@click.command("init-postgres")
@db_option
@click.option("--app-role", default="inspector_station", show_default=True, help="Role the stations log in as.")
@click.option("--owner-role", default="inspector_owner", show_default=True, help="Role that owns the schema.")
@click.option("--apply", "apply_", is_flag=True, help="Run the grants now (connected as the owner via --db).")
def init_postgres(db: str | None, app_role: str, owner_role: str, apply_: bool) -> None:
    """Migrate a PostgreSQL store as its owner and print (or --apply) the application role's grants.

    Stations then connect as the application role, which may only add and read records: no
    UPDATE of a record, no DELETE, no TRUNCATE, no schema change.

    \b
    Example:
      inspector audit init-postgres --db postgresql+psycopg://inspector_owner@central/inspector --apply
    """
    from sqlalchemy.engine import make_url

    from inspector.audit import AuditStore
    from inspector.audit.pg_roles import grant_statements, role_statements

    url = resolve_db(db)
    if url is None or "://" not in url or make_url(url).get_backend_name() != "postgresql":
        raise InspectorError("init-postgres needs --db postgresql+psycopg://OWNER@HOST/DATABASE")
    database = make_url(url).database or ""
    grants = grant_statements(app_role, database)
    with AuditStore.open(url) as store:  # migrates as the owner
        click.echo(f"-- schema migrated, store {store.store_id}")
        click.echo("-- once per server, as a superuser (set real passwords):")
        for sql in role_statements(owner_role, app_role, database):
            click.echo(f"--   {sql};")
        if apply_:
            with store.engine.begin() as conn:
                for sql in grants:
                    conn.exec_driver_sql(sql)
            click.echo(f"-- applied {len(grants)} grants for {app_role}:")
        for sql in grants:
            click.echo(f"{sql};")


@click.command("witness-export")
@click.option(
    "--to", "to", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder for the auditor."
)
@click.option(
    "--from",
    "source",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="This station's witness folder (default: INSPECTOR_WITNESS_DIR, else the user data folder).",
)
def witness_export(to: Path, source: Path | None) -> None:
    """Copy the chain heads this station saw (signed) to a folder for ``audit verify --witness``.

    \b
    Example:
      inspector audit witness-export --to /mnt/audit/witness/
    """
    import os

    from inspector.audit.store import WITNESS_ENV
    from inspector.audit.witness import Witness
    from inspector.settings import data_dir

    folder = source or Path(os.environ.get(WITNESS_ENV) or data_dir() / "witness")
    if not folder.is_dir():
        raise InspectorError(f"{folder}: no witness logs here (this station has not written to a server store)")
    files = Witness(folder).export(to)
    click.echo(f"{len(files)} witness log(s) -> {to}")


@click.command("migrate")
@click.option("--from", "source", required=True, metavar="URL", help="The station's store (file or URL).")
@click.option("--to", "target", required=True, metavar="URL", help="The fresh central store (as its owner).")
@click.option("--to-frames", type=click.Path(file_okay=False, path_type=Path), default=None, help="Its frame store.")
def migrate_cmd(source: str, target: str, to_frames: Path | None) -> None:
    """Copy a station's store (chain, users, frames) into an empty central store; verify both.

    \b
    Example:
      inspector audit migrate --from sqlite:///line1.db --to postgresql+psycopg://inspector_owner@central/inspector
    """
    from inspector.audit import AuditStore
    from inspector.audit.migrate import migrate

    with AuditStore.open(source) as src, AuditStore.open(target, frames_dir=to_frames) as dst:
        r = migrate(src, dst)
    counts = ", ".join(f"{n} {t}" for t, n in r.rows.items())
    click.echo(f"copied {counts}; {r.frames_copied} frames ({r.frames_missing} missing at the source)")
    click.echo(f"source: {'chain intact' if r.source_ok else 'BROKEN'}; target: {r.target_summary}")
    if not (r.source_ok and r.target_ok):
        raise InspectorError("the copy does not verify to the source's head; see above")
    click.echo(f"both verify to head #{r.records} {r.head_hash[:16]}")


def register(group: click.Group) -> None:
    """Adds the central-store commands to ``inspector audit``."""
    for cmd in (init_postgres, witness_export, migrate_cmd):
        group.add_command(cmd)
