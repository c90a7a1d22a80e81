"""The ``users`` and ``audit`` commands through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import PASSWORDS, Seeded, inspect_one, shell

from inspector.cli import audit_cmds


@pytest.fixture
def cli() -> click.Group:
    @click.group()
    def main() -> None:
        """test root"""

    audit_cmds.register(main)
    return main


def run(
    cli: click.Group, *args: str, password: str | None = None, new: str | None = None, stdin: str | None = None
) -> tuple[int, str]:
    env = {"INSPECTOR_PASSWORD": password or "", "INSPECTOR_NEW_PASSWORD": new or ""}
    r = CliRunner().invoke(cli, [str(a) for a in args], env=env, input=stdin)
    return r.exit_code, r.output


def test_users_bootstrap_add_list(cli: click.Group, tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    assert run(cli, "users", "add", "root", "--role", "admin", "--db", db, password="root-pass-1") == (
        0,
        "added root (admin)\n",
    )
    code, out = run(
        cli,
        "users",
        "add",
        "ana",
        "--role",
        "operator",
        "--name",
        "Ana R",
        "--db",
        db,
        "--as",
        "root",
        password="root-pass-1",
        new="ana-pass-1",
    )
    assert code == 0, out
    code, out = run(
        cli,
        "users",
        "add",
        "bob",
        "--role",
        "operator",
        "--db",
        db,
        "--as",
        "root",
        password="wrong-pass-1",
        new="bob-pass-1",
    )
    assert code == 1 and "login refused" in out and "Traceback" not in out
    code, out = run(cli, "users", "add", "eve", "--role", "auditor", "--db", db)
    assert code != 0 and "--as" in out
    code, out = run(cli, "users", "list", "--db", db)
    assert code == 0 and out.splitlines() == ["ana\toperator\tactive\tAna R", "root\tadmin\tactive\troot"]
    assert "ana-pass-1" not in out


def test_users_add_prompts_hidden_with_confirmation(cli: click.Group, tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    code, out = run(cli, "users", "add", "root", "--role", "admin", "--db", db, stdin="root-pass-1\nroot-pass-1\n")
    assert code == 0 and "root-pass-1" not in out


def test_verify_checkpoint_export(cli: click.Group, seeded: Seeded, tmp_path: Path) -> None:
    seeded.store.record_decision(seeded.op, inspect_one(seeded, 0), "accept")
    db, cp = str(seeded.path), tmp_path / "cp.json"
    code, out = run(cli, "audit", "verify", "--db", db)
    assert code == 0 and "chain intact" in out
    assert run(cli, "audit", "checkpoint", "--db", db, "-o", cp)[0] == 0 and cp.is_file()
    csv_path, pdf_path = tmp_path / "log.csv", tmp_path / "log.pdf"
    code, out = run(
        cli,
        "audit",
        "export",
        "--db",
        db,
        "--as",
        "aud",
        "--csv",
        csv_path,
        "--pdf",
        pdf_path,
        password=PASSWORDS["aud"],
    )
    assert code == 0, out
    assert "Ana Op" in csv_path.read_text() and "reviewed: accepted" in csv_path.read_text()
    assert pdf_path.read_bytes().startswith(b"%PDF")
    code, out = run(cli, "audit", "export", "--db", db, "--as", "ana", "--csv", csv_path, password=PASSWORDS["ana"])
    assert code == 1 and "only auditor" in out
    shell(seeded.path, "UPDATE decisions SET decision = 'reject' WHERE id = 1")
    code, out = run(cli, "audit", "verify", "--db", db, "--checkpoint", cp)
    assert code == 1 and "edited" in out and "decisions 1" in out and "Traceback" not in out


def test_verify_corrupt_db_one_line(cli: click.Group, tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"\x00garbage" * 1000)
    code, out = run(cli, "audit", "verify", "--db", str(bad))
    assert code == 1 and out.startswith("Error:") and len(out.strip().splitlines()) == 1


def test_every_command_has_help_with_example(cli: click.Group) -> None:
    for group in (audit_cmds.users_group, audit_cmds.audit_group):
        for name, cmd in group.commands.items():
            assert cmd.help and "Example" in cmd.help, name
