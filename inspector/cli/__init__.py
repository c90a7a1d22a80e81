"""The ``inspector`` command: a thin click layer over the core; each command calls one function."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from inspector.errors import InspectorError


class InspectorGroup(click.Group):
    """Turns every user-caused error into one line on stderr and a non-zero exit, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except InspectorError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # an unexpected failure still gets one readable line
            if os.environ.get("INSPECTOR_DEBUG"):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {exc} (set INSPECTOR_DEBUG=1 for details)"
            ) from None


@click.group(cls=InspectorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inspector")
def main() -> None:
    """Visual inspection with PatchCore: train on good parts, flag the rest, explain, audit."""


def _register() -> None:
    from inspector.cli import audit_cmds, bench_cmds, data_cmds, explain_cmds, gui_cmd, inspect_cmds, model_cmds

    for module in (data_cmds, model_cmds, audit_cmds, explain_cmds, bench_cmds, inspect_cmds, gui_cmd):
        module.register(main)
    from inspector.cli import feedback_cmds  # issue 16; after inspect_cmds: adds 'promote' to its 'models' group

    feedback_cmds.register(main)


_register()
