"""One way to name the store: --db, else INSPECTOR_DB, else the default (whose location is printed);
and the central-store commands (init-postgres, migrate) and ``inspect``'s queue flush."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import PASSWORDS, Seeded, inspect_one

from inspector.cli import main


def run(*args: Any, env: dict[str, str] | None = None) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args], env={"INSPECTOR_DB": "", **(env or {})})
    return r.exit_code, r.output


@pytest.mark.parametrize("dialect", ["sqlite"])
@pytest.mark.parametrize("command", [("models", "list"), ("users", "list"), ("audit", "verify")])
def test_inspector_db_names_the_store_for_every_command(seeded: Seeded, command: tuple[str, ...]) -> None:
    code, out = run(*command, env={"INSPECTOR_DB": str(seeded.path)})
    assert code == 0, out
    assert {"models": "resnet18", "users": "Ana Op", "audit": "chain intact"}[command[0]] in out
    assert "the default" not in out


@pytest.mark.parametrize("command", [("models", "list"), ("users", "list")])
def test_default_store_location_is_printed(command: tuple[str, ...], tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr("platformdirs.user_data_dir", lambda app: str(tmp_path / "ud" / app))
    code, out = run(*command)
    assert code == 0, out
    assert f"audit store: {tmp_path / 'ud' / 'inspector' / 'audit.db'} (the default" in out


def test_every_command_takes_db_option() -> None:
    from inspector.cli.gui_cmd import gui_cmd
    from inspector.cli.inspect_cmds import inspect_cmd, models_group

    for cmd in (gui_cmd, inspect_cmd, *models_group.commands.values()):
        [opt] = [p for p in cmd.params if p.name == "db"]
        assert opt.envvar == "INSPECTOR_DB", cmd.name


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_init_postgres_applies_grants(seeded: Seeded, pg_server: Any) -> None:
    code, out = run("audit", "init-postgres", "--db", seeded.path, "--apply")
    assert code == 0, out
    assert "GRANT SELECT, INSERT ON model_versions" in out and "CREATE ROLE inspector_station" in out
    import sqlalchemy as sa

    app_url = pg_server.url(sa.engine.make_url(str(seeded.path)).database, "inspector_station")
    code, out = run("users", "list", "--db", app_url)
    assert code == 0 and "ana" in out, out
    code, out = run("audit", "init-postgres", "--db", "audit.db")
    assert code == 1 and "postgresql+psycopg://" in out


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_migrate_command(seeded: Seeded, pg_server: Any, tmp_path: Path) -> None:
    from conftest import new_pg_database

    seeded.store.record_decision(seeded.op, inspect_one(seeded, 0), "accept")
    target = new_pg_database(pg_server)
    code, out = run("audit", "migrate", "--from", f"sqlite:///{seeded.path}", "--to", target,
                    "--to-frames", tmp_path / "frames")  # fmt: skip
    assert code == 0, out
    assert "1 decisions" in out and "both verify to head" in out
    code, out = run("audit", "migrate", "--from", f"sqlite:///{seeded.path}", "--to", target)
    assert code == 1 and "fresh store" in out


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_inspect_flushes_the_queue_at_start(seeded: Seeded, trained_tiny: Path, synthetic_pills: Any) -> None:
    root, manifest, _ = synthetic_pills
    iid = inspect_one(seeded, 0, "REVIEW")
    seeded.store.queue.put(
        {"kind": "decision", "uid": "f" * 32, "actor": "ana", "session": seeded.op.session_id,
         "inspection_id": iid, "decision": "accept",
         "reason_code": None, "reason_text": None, "supersedes": None, "created_at": "2026-01-01T00:00:00+00:00",
         "store_id": seeded.store.store_id}
    )  # fmt: skip
    seeded.store.close()
    image = root / manifest.split("test")[0].path
    code, out = run("models", "register", "--model", trained_tiny, "--as", "eng",
                    env={"INSPECTOR_DB": str(seeded.path), "INSPECTOR_PASSWORD": PASSWORDS["eng"]})  # fmt: skip
    assert code == 0, out
    code, out = run("inspect", "--model", trained_tiny, "--input", image.parent, "--station", "line-9",
                    env={"INSPECTOR_DB": str(seeded.path), "INSPECTOR_PASSWORD": PASSWORDS["ana"]})  # fmt: skip
    assert code == 0, out
    assert "1 queued record(s) written to the store" in out and "0 waiting in the retry queue" in out


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_witness_export_and_verify_commands(seeded: Seeded, tmp_path: Path) -> None:
    from inspector.audit.tamper import rewrite_consistently

    for i in range(3):  # a server store witnesses its heads in the home folder by default
        seeded.store.record_decision(seeded.op, inspect_one(seeded, i), "accept")
    code, out = run("audit", "witness-export", "--to", tmp_path / "heads")
    assert code == 0 and "1 witness log(s)" in out, out
    code, out = run("audit", "verify", "--db", seeded.path)
    assert code == 0 and "--witness DIR" in out  # a server store is not checked against stations unasked
    code, out = run("audit", "verify", "--db", seeded.path, "--witness", tmp_path / "heads")
    assert code == 0 and "witnessed heads from 1 station(s)" in out, out
    seeded.store.engine.dispose()
    rewrite_consistently(str(seeded.path), "decisions", 2, decision="reject", reason_text="forged")
    assert run("audit", "verify", "--db", seeded.path)[0] == 0  # nothing in the database tells
    code, out = run("audit", "verify", "--db", seeded.path, "--witness", tmp_path / "heads")
    assert code == 1 and "contradicts the head witnessed by" in out and "Traceback" not in out


def test_inspect_refuses_a_frame_store_inside_its_input_folder(tmp_path: Path) -> None:
    inputs = tmp_path / "frames"
    inputs.mkdir()
    code, out = run("inspect", "--model", tmp_path / "m", "--input", inputs, "--db", inputs / "audit.db",
                    "--station", "line-1")  # fmt: skip
    assert code == 1 and "would land inside the input folder" in out and len(out.strip().splitlines()) == 1
