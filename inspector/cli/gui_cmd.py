"""``inspector gui``: opens the desktop app (PySide6 is imported only when the command runs)."""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from inspector.cli.common import DB_ENV, db_option, resolve_db
from inspector.errors import InspectorError


@click.command("gui")
@db_option
@click.option(
    "--model",
    "model_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model directory to inspect with when the store has no active model.",
)
@click.option("--demo", is_flag=True, help="Use the embedded demo: synthetic data, a trained model, demo users.")
def gui_cmd(db: str | None, model_dir: Path | None, demo: bool) -> None:
    """Open the station app: operator, engineer and auditor views after login.

    On the first --demo start it makes the synthetic data, trains a model behind a progress
    dialog, and prints the demo users' passwords.

    Example: inspector gui --demo
    """
    if demo and db:
        if click.get_current_context().get_parameter_source("db") is click.core.ParameterSource.ENVIRONMENT:
            click.echo(f"--demo uses its own audit store; {DB_ENV} is ignored", err=True)
            db = None
        else:
            raise InspectorError("--demo uses its own audit store; leave out --db")
    elif not demo:
        db = resolve_db(db)
    # The one place the core reaches up to ``ui``: by name, at run time, so nothing in
    # ``inspector`` imports Qt (import-linter checks static imports; this is deliberate).
    try:
        app = importlib.import_module("ui.app")
    except ImportError as exc:
        raise InspectorError(f"the app needs the gui extra (pip install 'inspector[gui]'): {exc}") from None
    code = app.run_app(db, model_dir, demo, echo=click.echo)
    if code:
        raise SystemExit(code)


def register(main: click.Group) -> None:
    main.add_command(gui_cmd)
