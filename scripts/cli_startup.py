"""Wall time of CLI commands that should start at once, this tree against another, side by side.

Runs ``--help``, ``--version``, ``users list`` and ``audit verify`` on a small temporary store,
alternating between the trees (so a busy CPU slows both alike), and prints the median wall time
per command and the slowest imports of ``inspector.cli`` (``python -X importtime``).

Example: .venv/bin/python scripts/cli_startup.py --before ../main --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
RUN = "import sys; from inspector.cli import main; sys.argv[0] = 'inspector'; main()"


def run(tree: Path, args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", RUN, *args], cwd=tree, env={**env, "PYTHONPATH": str(tree)},
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def slowest_imports(tree: Path, n: int = 6) -> list[str]:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import inspector.cli"], cwd=tree,
                         env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True).stderr
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    return [f"{us / 1e6:6.2f} s {name}" for us, name in sorted(rows, reverse=True)[:n]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, default=None, help="another checkout to compare against")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    trees = {"this tree": HERE} | ({"before": args.before.resolve()} if args.before else {})
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "INSPECTOR_HOME": tmp, "INSPECTOR_ARGON2_FAST": "1", "INSPECTOR_PASSWORD": "pw-admin-1"}
        db = str(Path(tmp) / "audit.db")
        run(HERE, ["users", "add", "root", "--role", "admin", "--db", db], env)
        commands = {
            "--help": ["--help"],
            "--version": ["--version"],
            "users list": ["users", "list", "--db", db],
            "audit verify": ["audit", "verify", "--db", db],
        }
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeat):
            for label, cmd in commands.items():
                for name, tree in trees.items():
                    times.setdefault((name, label), []).append(run(tree, cmd, env))
    print(f"median wall time of {args.repeat} runs (s), host CPUs {os.cpu_count()} (shared: figures vary)")
    print(f"{'command':<14}" + "".join(f"{n:>12}" for n in trees))
    for label in commands:
        print(f"{label:<14}" + "".join(f"{statistics.median(times[(n, label)]):>12.2f}" for n in trees))
    for name, tree in trees.items():
        print(f"slowest imports of inspector.cli, {name} (cumulative):")
        for line in slowest_imports(tree):
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
