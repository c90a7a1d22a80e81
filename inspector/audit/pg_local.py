"""A throwaway PostgreSQL server on loopback, for the test suite and ``scripts/stress_central.py``.

Uses Debian's ``postgresql`` binaries (``/usr/lib/postgresql/*/bin``) directly: ``initdb`` into a
temporary folder, ``pg_ctl`` to start, restart and stop. The server listens on 127.0.0.1 only,
with its unix socket inside the private folder. ``initdb`` refuses to run as root, so as root the
server runs as the ``postgres`` system user (which the Debian package creates) via ``runuser``.
Host connections need a password (scram); the socket is trusted (only its owner can reach it).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

OWNER_ROLE = "inspector_owner"
APP_ROLE = "inspector_station"


class LocalPostgresError(RuntimeError):
    """The server could not be set up; the message carries the tool's own words and its log."""


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` holding pg_ctl and initdb (or PG_BINDIR)."""
    env = os.environ.get("PG_BINDIR")
    candidates = [env] if env else sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    for c in candidates:
        if c and (Path(c) / "pg_ctl").is_file() and (Path(c) / "initdb").is_file():
            return Path(c)
    if env:
        return None  # an explicit choice that does not hold is not silently replaced
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


def _version(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return 0.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalPostgres:
    """One server: ``start()``, ``create_database()``, URLs for owner and app roles, ``stop()``."""

    fsync: bool = True
    port: int = 0
    root: Path = field(default_factory=Path)
    passwords: dict[str, str] = field(default_factory=dict)
    _bindir: Path | None = None
    _user: str | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self._bindir is not None
        cmd = [str(self._bindir / args[0]), *args[1:]]
        if self._user:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if check and r.returncode != 0:
            logfile = self.root / "server.log"
            log = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
            raise LocalPostgresError(f"{args[0]} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()} {log}")
        return r

    def start(self) -> LocalPostgres:
        """initdb + pg_ctl start on a free loopback port; raises LocalPostgresError on failure."""
        self._bindir = find_bindir()
        if self._bindir is None:
            raise LocalPostgresError("PostgreSQL binaries not found (apt-get install postgresql, or set PG_BINDIR)")
        self.root = Path(tempfile.mkdtemp(prefix="inspector-pg-"))
        self.socket_dir.mkdir()
        if os.geteuid() == 0:  # initdb refuses root: run the server as the Debian package's user
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise LocalPostgresError("running as root but there is no 'postgres' system user") from None
            self._user = "postgres"
            for p in (self.root, self.socket_dir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o700)
        self.passwords = {r: secrets.token_hex(12) for r in ("postgres", OWNER_ROLE, APP_ROLE)}
        pwfile = self.root / "pw"
        pwfile.write_text(self.passwords["postgres"] + "\n")
        if self._user:
            pw = pwd.getpwnam(self._user)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--pwfile", str(pwfile),
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        pwfile.unlink()
        self.port = self.port or free_port()
        opts = [
            "listen_addresses='127.0.0.1'",
            f"port={self.port}",
            f"unix_socket_directories='{self.socket_dir}'",
            "max_connections=100",
        ]
        if not self.fsync:  # tests only: a throwaway server need not survive power loss
            opts += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n".join(opts) + "\n")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        self.psql(
            f"CREATE ROLE {OWNER_ROLE} LOGIN PASSWORD '{self.passwords[OWNER_ROLE]}'",
            f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{self.passwords[APP_ROLE]}'",
        )
        return self

    def psql(self, *sql: str, db: str = "postgres", user: str = "postgres") -> str:
        """Runs statements as ``user`` over the trusted socket; returns the last one's rows as text.

        Uses psycopg when installed (no process per call), else the psql client.
        """
        try:
            import psycopg
        except ImportError:
            return self._psql(*sql, db=db, user=user)
        with psycopg.connect(host=str(self.socket_dir), port=self.port, user=user, dbname=db, autocommit=True) as c:
            out = ""
            for s in sql:
                cur = c.execute(s)
                out = "\n".join("|".join(map(str, r)) for r in cur.fetchall()) if cur.description else ""
            return out

    def _psql(self, *sql: str, db: str, user: str) -> str:
        args = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir)]
        args += ["-p", str(self.port), "-U", user, "-d", db]
        for s in sql:
            args += ["-c", s]
        return self._run(*args).stdout

    def create_database(self, name: str) -> None:
        """An empty database owned by the owner role; stations get no rights until granted."""
        self.psql(f"CREATE DATABASE {name} OWNER {OWNER_ROLE}", f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")

    def url(self, db: str, role: str = OWNER_ROLE) -> str:
        return f"postgresql+psycopg://{role}:{self.passwords[role]}@127.0.0.1:{self.port}/{db}"

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every open connection is cut (AdminShutdown)."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-m", "fast", "restart")

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` skips the shutdown checkpoint: right for a server whose files are deleted next."""
        if self._bindir is not None and self.data.is_dir():
            self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop", check=False)
        if self.root != Path() and self.root.is_dir():
            shutil.rmtree(self.root, ignore_errors=True)
