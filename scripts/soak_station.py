"""Soak test of the operator's station: N frames, explanations on, offscreen; prints the figures.

What it measures (issue 14, "the station through a 24-hour shift"):
- resident memory (VmRSS) at frame 1,000 and at the last frame: the growth must stay < 200 MB;
- frames lost: the audit store must hold one inspection per frame streamed;
- the longest event-loop stall, from a 5 ms watchdog timer on the UI thread (< 100 ms);
- frames/s shown with explanations, one model pass per frame, against the previous path
  (pipeline pass, then ``Explainer`` again: two passes) on the same frames, side by side.

The source is the demo's line folder repeated N times, like a camera delivering frames; the
operator view runs live (every frame drawn with its overlay), through the real widgets, worker
and audit store. The store is a fresh one in a temporary folder, removed afterwards unless
``--keep-store``. On a shared CPU the figures vary from run to run: say so when quoting them.

Example: .venv/bin/python scripts/soak_station.py --frames 100000 --compare 300
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402

import inspector.sources as sources_mod  # noqa: E402
from inspector import app_logic  # noqa: E402
from inspector.audit import AuditStore  # noqa: E402
from inspector.images import list_images, read_image  # noqa: E402
from inspector.sources import Frame, FrameSource  # noqa: E402
from ui.app import create_app  # noqa: E402
from ui.operator_view import OperatorWidget  # noqa: E402

RSS_FROM_FRAME = 1000


class GcPauses:
    """Longest garbage-collector pause, on any thread (a full collection holds the GIL, so the
    UI thread waits through it): tells a GC stall from a slow call when the watchdog fires."""

    def __init__(self) -> None:
        self.longest_ms = {0: 0.0, 1: 0.0, 2: 0.0}
        self.count = {0: 0, 1: 0, 2: 0}
        self._t0 = 0.0
        self.long: list[tuple[float, float, int]] = []  # (start, end, generation) of pauses over 20 ms
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        g, now = info["generation"], time.perf_counter()
        self.count[g] += 1
        self.longest_ms[g] = max(self.longest_ms[g], (now - self._t0) * 1000)
        if now - self._t0 > 0.02:
            self.long.append((self._t0, now, g))
            del self.long[:-200]

    def during(self, start: float, end: float) -> str:
        """The collections that overlapped a stall, e.g. 'gen2 180 ms'."""
        hits = [f"gen{g} {(b - a) * 1000:.0f} ms" for a, b, g in self.long if a < end and b > start]
        return ", ".join(hits) or "no long collection"

    def __str__(self) -> str:
        return ", ".join(f"gen{g} x{self.count[g]} longest {self.longest_ms[g]:.0f} ms" for g in (0, 1, 2))


class RepeatSource(FrameSource):
    """The line folder's frames, decoded once, delivered ``n`` times in turn."""

    def __init__(self, folder: Path, n: int) -> None:
        self.frames = [(p.stem, read_image(p)) for p in list_images(folder)]
        self.n = n
        self.description = f"{folder} repeated to {n} frames"

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.n):
            name, image = self.frames[i % len(self.frames)]
            yield Frame(i, f"{name}#{i:06d}", image)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def fresh_store(run_dir: Path, setup: app_logic.DemoSetup) -> tuple[AuditStore, Any]:
    """A new store with an operator and the demo model registered and active."""
    store = AuditStore.open(run_dir / "audit.db")
    store.add_user(None, "admin", "Admin", "admin", "soak-admin-pass")
    admin = store.authenticate("admin", "soak-admin-pass")
    store.add_user(admin, "eng", "Eng", "engineer", "soak-eng-pass")
    store.add_user(admin, "op", "Op", "operator", "soak-op-pass")
    eng = store.authenticate("eng", "soak-eng-pass")
    from inspector.pipeline import Inspector
    from inspector.station import Station

    mid = Station(store, Inspector.load(setup.model_dir, "cpu"), "register").register_model(eng)
    store.activate_model(eng, mid, "soak test")
    return store, store.authenticate("op", "soak-op-pass")


def recorded(store: AuditStore, station: str) -> int:
    with sqlite3.connect(store.db_path) as con:
        return con.execute("SELECT COUNT(*) FROM inspections WHERE station = ?", (station,)).fetchone()[0]


class StallSampler:
    """Samples the UI thread's Python stack while its watchdog is late (> 40 ms): what was it doing?

    A stack ending in the event loop means the time went to Qt's own work (painting), to waiting
    for the GIL, or to the OS not running the thread at all on a loaded host.
    """

    def __init__(self, last: dict[str, float]) -> None:
        import threading
        from collections import Counter

        self.last, self.ui = last, threading.get_ident()
        self.seen: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import traceback

        while not self._stop.wait(0.01):
            if time.perf_counter() - self.last["last"] > 0.04:
                frame = sys._current_frames().get(self.ui)
                stack = traceback.extract_stack(frame)[-3:] if frame is not None else []
                del frame  # at once: a held frame keeps its locals (a QPainter) alive past their call
                if stack:
                    self.seen[" < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack))] += 1

    def stop(self) -> list[tuple[str, int]]:
        self._stop.set()
        self._thread.join()
        return self.seen.most_common(6)


def stream(
    store: AuditStore,
    user: Any,
    setup: app_logic.DemoSetup,
    n: int,
    station: str,
    *,
    one_pass: bool,
    keep: int,
    writer: bool = True,
    report_every: int = 0,
    sample_stalls: bool = False,
) -> dict[str, Any]:
    """Streams ``n`` frames through a live operator view; returns the run's figures.

    ``writer``: audit records on their own thread (the app's default) or on the frame's path.
    """
    from inspector.app_logic.operator import default_explainer

    sources_mod.open_source = lambda spec: RepeatSource(setup.line_folder, n)  # what run_station opens
    session = app_logic.AppSession(
        store,
        user,
        model_dir=setup.model_dir,
        station=station,
        device="cpu",
        keep=keep,
        explain_factory=None if one_pass else default_explainer,
        record_writer=writer,
    )
    view = OperatorWidget(session)
    view.resize(1280, 800)
    view.show()
    shown: list[float] = []
    rss: dict[str, float] = {}
    worst = {"stall_ms": 0.0, "last": time.perf_counter()}

    stalls: list[tuple[float, float, int]] = []  # (ms, start, frames shown) of each stall over 50 ms

    def tick() -> None:
        now = time.perf_counter()
        ms = (now - worst["last"]) * 1000 - 5
        if ms > 50:
            stalls.append((ms, worst["last"], len(shown)))
            del stalls[:-500]
        worst["stall_ms"] = max(worst["stall_ms"], ms)
        worst["last"] = now

    explained = [0]

    def on_shown(index: int) -> None:
        shown.append(time.perf_counter())
        item = view.current()
        explained[0] += item is not None and item.gradcam is not None
        k = len(shown)
        if k == RSS_FROM_FRAME:
            rss["at_1000"] = rss_mb()
        if report_every and k % report_every == 0:  # a checkpoint: a run cut short still gives figures
            fps = (k - 1) / (shown[-1] - shown[0])
            now_rss = rss_mb()
            growth = now_rss - rss.get("at_1000", now_rss)
            n_rec = recorded(store, station)  # the writer may be a few frames ahead of the screen
            print(
                f"  checkpoint {k:>7} frames shown  {fps:5.1f} frames/s  RSS {now_rss:7.1f} MB (growth from frame "
                f"{RSS_FROM_FRAME}: {growth:.1f} MB)  recorded {n_rec} (shown, not recorded: {max(0, k - n_rec)})  "
                f"longest stall so far {worst['stall_ms']:.0f} ms",
                flush=True,
            )
            worst["last"] = time.perf_counter()  # the checkpoint's own query is not the station's stall

    view.frame_shown.connect(on_shown)
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    loop = QEventLoop()
    view.stream_ended.connect(loop.quit)
    worst["last"] = time.perf_counter()
    sampler = StallSampler(worst) if sample_stalls else None
    timer.start()
    view.start_stream("soak", live=True)
    loop.exec()
    timer.stop()
    samples = sampler.stop() if sampler else []
    rss["end"] = rss_mb()
    errors = [m for m in view.messages if "skipped" in m or "rror" in m]
    view.shutdown()
    view.deleteLater()
    span = shown[-1] - shown[0] if len(shown) > 1 else float("nan")
    return {
        "frames": n,
        "shown": len(shown),
        "recorded": recorded(store, station),
        "fps": (len(shown) - 1) / span,
        "stall_ms": worst["stall_ms"],
        "rss_1000": rss.get("at_1000", float("nan")),
        "rss_end": rss["end"],
        "errors": len(errors),
        "explained": explained[0],
        "stalls": sorted(stalls, reverse=True)[:5],
        "samples": samples,
    }


def model_time(setup: app_logic.DemoSetup, n: int) -> None:
    """Model work per frame, the two paths interleaved frame by frame (fair on a busy CPU)."""
    import statistics

    from inspector.analysis import FrameAnalyser
    from inspector.explain import Explainer
    from inspector.pipeline import Inspector

    insp = Inspector.load(setup.model_dir, "cpu")
    analyser, explainer = FrameAnalyser.load(insp), Explainer.load(insp)
    frames = [img for _, img in RepeatSource(setup.line_folder, 1).frames]
    paths = {
        "two passes": lambda f: (insp.inspect_images([f]), explainer.explain(f, ("gradcam",))),
        "one pass": lambda f: analyser.analyse([f]),
    }
    ms: dict[str, list[float]] = {k: [] for k in paths}
    for i in range(n):
        for k, fn in paths.items():
            t0 = time.perf_counter()
            fn(frames[i % len(frames)])
            ms[k].append((time.perf_counter() - t0) * 1000)
    two, one = (statistics.median(ms[k]) for k in paths)
    print(f"model time per frame, interleaved over {n} frames (median / fastest):")
    for k in paths:
        print(f"  {k:<11} {statistics.median(ms[k]):7.1f} / {min(ms[k]):6.1f} ms")
    fastest = min(ms["two passes"]) / min(ms["one pass"])
    print(f"  one pass is x{two / one:.2f} faster (median), x{fastest:.2f} (fastest)")


PATHS = {  # name: (one model pass, records on their own thread)
    "two passes, record on the frame's path (the station app's 30.5 in docs/measured.md)": (False, False),
    "one pass, record on the frame's path (last session)": (True, False),
    "one pass, record on the writer thread (now)": (True, True),
}


def compare(store: AuditStore, user: Any, setup: app_logic.DemoSetup, n: int, keep: int, rounds: int = 3) -> None:
    """Frames/s shown by the live view, the paths in alternating rounds of n/rounds frames each."""
    model_time(setup, min(n, 60))
    totals = {k: [0, 0.0] for k in PATHS}
    stalls = {k: 0.0 for k in PATHS}
    for r in range(rounds):
        for i, (name, (one_pass, writer)) in enumerate(PATHS.items()):
            res = stream(
                store,
                user,
                setup,
                max(10, n // rounds),
                f"compare-{i}-{r}",
                one_pass=one_pass,
                keep=keep,
                writer=writer,
            )
            totals[name][0] += res["shown"] - 1
            totals[name][1] += (res["shown"] - 1) / res["fps"]
            stalls[name] = max(stalls[name], res["stall_ms"])
    fps = {k: totals[k][0] / totals[k][1] for k in PATHS}
    base = next(iter(fps.values()))
    print(f"live view with overlays and audit record, {rounds} alternating rounds, {n} frames per path:")
    for k, v in fps.items():
        print(f"  {k:<62} {v:6.1f} frames/s  x{v / base:.2f}  (longest stall {stalls[k]:.0f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100_000, help="frames in the soak (default 100,000)")
    parser.add_argument("--compare", type=int, default=300, help="frames per path in the side-by-side fps run")
    parser.add_argument("--keep", type=int, default=64, help="frames the station keeps in memory")
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(tempfile.gettempdir()) / "inspector-soak",
        help="where the demo model is made once and reused",
    )
    parser.add_argument("--keep-store", action="store_true", help="leave the soak's audit store on disk")
    parser.add_argument(
        "--sample-stalls",
        action="store_true",
        help="sample the UI thread's stack whenever the watchdog is 40 ms late, print the commonest",
    )
    parser.add_argument("--report-every", type=int, default=10_000, help="frames between printed checkpoints")
    args = parser.parse_args()
    os.environ["INSPECTOR_HOME"] = str(args.home)
    os.environ.setdefault("INSPECTOR_NO_PROGRESS", "1")
    import torch

    create_app()
    pauses = GcPauses()
    setup = app_logic.prepare_demo(device="cpu")
    run_dir = Path(tempfile.mkdtemp(prefix="soak-", dir=args.home))
    store, user = fresh_store(run_dir, setup)
    print(
        f"demo model {setup.model_dir}; store {run_dir}; torch threads {torch.get_num_threads()}; "
        f"CPUs {os.cpu_count()} (shared host: figures vary)"
    )
    try:
        if args.compare:
            compare(store, user, setup, args.compare, args.keep)
        if not args.frames:
            return 0
        print(f"soak: {args.frames} frames, one pass, explanations on, keep {args.keep} in memory")
        r = stream(
            store,
            user,
            setup,
            args.frames,
            "soak",
            one_pass=True,
            keep=args.keep,
            report_every=args.report_every,
            sample_stalls=args.sample_stalls,
        )
    finally:
        store.close()
        if not args.keep_store:
            shutil.rmtree(run_dir, ignore_errors=True)
    growth = r["rss_end"] - r["rss_1000"]
    lost = r["frames"] - r["recorded"]
    print(
        f"frames streamed {r['frames']}, shown {r['shown']}, recorded in the audit store {r['recorded']} "
        f"(lost {lost}); with a Grad-CAM {r['explained']}; per-frame errors {r['errors']}"
    )
    print(f"throughput {r['fps']:.1f} frames/s shown (inference + Grad-CAM + overlay + audit record)")
    print(
        f"RSS at frame {RSS_FROM_FRAME}: {r['rss_1000']:.1f} MB, at the end: {r['rss_end']:.1f} MB, "
        f"growth {growth:.1f} MB (limit 200)"
    )
    print(f"longest event-loop stall {r['stall_ms']:.0f} ms (limit 100); garbage collector: {pauses}")
    for ms, t0, k in r["stalls"]:
        print(f"  stall {ms:.0f} ms at frame {k}: {pauses.during(t0, t0 + (ms + 5) / 1000)}")
    for where, n in r["samples"]:
        print(f"  UI thread while late ({n} samples of 10 ms): {where}")
    memory_ok = r["frames"] < RSS_FROM_FRAME or growth < 200
    ok = lost == 0 and r["explained"] == r["shown"] and r["stall_ms"] < 100 and memory_ok
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
