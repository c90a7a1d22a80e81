"""``inspector explain | explain-methods | train-defects``: explanation overlays and the defect classifier."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from inspector.cli.common import device_option, root_option, write_json

if TYPE_CHECKING:
    import numpy as np

    from inspector.explain import Explanation
    from inspector.pipeline import Inspector


def header(e: Explanation) -> str:
    """The frame panel's title: verdict, score against threshold, defect type where known."""
    text = f"{e.verdict}  score {e.score:.3f} / thr {e.threshold:.3f}"
    if e.defect_type:
        text += f"  {e.defect_type}" + (f" {e.defect_probability:.2f}" if e.defect_probability is not None else "")
    return text


def method_panel(frame: np.ndarray, e: Explanation, method: str, inspector: Inspector, opacity: float) -> np.ndarray:
    """frame | one method's overlay, in the model's fixed colour range (``overlay.method_panels``).

    The title comes from the method's registration, with its cost in ms where it was timed.
    """
    from inspector import explainers
    from inspector.overlay import method_panels

    t = inspector.thresholds
    title = explainers.get(method).title
    if method == "gradcam" and e.agreement is not None:
        title += f" (agreement {e.agreement:.2f})"
    if explainers.get(method).target == "defect" and e.defect_probabilities:
        best = max(e.defect_probabilities, key=e.defect_probabilities.__getitem__)
        title = title.replace("the defect type", f"'{best}'")
    if method in e.ms:
        title += f", {e.ms[method]:.0f} ms"
    return method_panels(
        frame,
        [(method, title, e.display(method))],
        t.map_low,
        t.map_high,
        t.decision,
        header=header(e),
        opacity=opacity,
    )


def _methods(raw: tuple[str, ...]) -> tuple[str, ...]:
    from inspector.explain import check_methods

    return check_methods([m.strip() for item in raw for m in item.split(",") if m.strip()])


@click.command("explain")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True)
@click.option(
    "--method",
    "raw_methods",
    multiple=True,
    default=("anomaly", "gradcam"),
    show_default=True,
    help="Repeat or comma-separate; 'inspector explain-methods' lists them all with their cost.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--opacity", type=click.FloatRange(0, 1), default=0.45, show_default=True)
@click.option(
    "--reference",
    "references",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Good image(s): what LIME/SHAP switch regions to (default: a light blur of the frame).",
)
@click.option("--samples", type=click.IntRange(8), default=96, show_default=True, help="Samples for LIME/KernelSHAP.")
@device_option
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
def explain_cmd(
    model_dir: Path,
    raw_methods: tuple[str, ...],
    out: Path,
    opacity: float,
    references: tuple[Path, ...],
    samples: int,
    device: str,
    images: tuple[Path, ...],
) -> None:
    """Explain IMAGES: an overlay PNG per image and method, and a JSON of figures (with ms) per image.

    anomaly, gradcam and saliency are fast (every frame); the others are on demand. The
    defect-* methods need a defect classifier (inspector train-defects).

    Example: inspector explain --model models_out/pill --method anomaly,gradcam,lime --out why
    ../shared/data/pillqc/chip/*.jpg
    """
    import cv2

    from inspector import explainers
    from inspector.explain import Explainer, NoDefectClassifierError
    from inspector.images import read_image
    from inspector.pipeline import Inspector

    methods = _methods(raw_methods)
    inspector = Inspector.load(model_dir, device)
    refs = [read_image(p) for p in references]
    explainer = Explainer.load(inspector, reference=refs)
    needs_head = [m for m in methods if explainers.get(m).target == "defect"]
    if needs_head and not explainer.has_defect_classifier:
        raise NoDefectClassifierError(
            f"model {model_dir} has no defect classifier, so there is no {', '.join(needs_head)}; "
            "train one with inspector train-defects"
        )
    frames = [(p, read_image(p)) for p in images]  # read all first: a bad file fails before any output
    out.mkdir(parents=True, exist_ok=True)
    for path, frame in frames:
        e = explainer.explain(frame, methods, {"samples": samples})
        for method in methods:
            if method not in e.maps:  # a defect-head method on a frame without a defect class
                continue
            png = method_panel(frame, e, method, inspector, opacity)
            cv2.imwrite(str(out / f"{path.stem}_{method}.png"), cv2.cvtColor(png, cv2.COLOR_RGB2BGR))
        doc = {"image": str(path), "model": inspector.info.weights_sha256, **e.figures()}
        write_json(out / f"{path.stem}.json", doc)
        extra = f", agreement {e.agreement:.2f}" if e.agreement is not None else ""
        p = f" ({e.defect_probability:.2f})" if e.defect_probability is not None else ""  # none for "unknown type"
        kind = f", {e.defect_type}{p}" if e.defect_type else ""
        cost = ", ".join(f"{k} {v:.0f} ms" for k, v in e.ms.items())
        click.echo(f"{path}: {e.verdict} (score {e.score:.4f}{kind}{extra}); {cost}")


@click.command("explain-methods")
def explain_methods_cmd() -> None:
    """List the registered explanation methods: name, what they explain, cost, every frame or on demand.

    Example: inspector explain-methods
    """
    from inspector import explainers

    for name, m in explainers.methods().items():
        when = "every frame" if m.fast else "on demand"
        click.echo(f"{name:20s} {m.target:6s} {when:11s} {m.cost:38s} {m.title}")


@click.command("train-defects")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True)
@click.option("--manifest", type=click.Path(path_type=Path), required=True)
@root_option
@click.option(
    "--share",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.5,
    show_default=True,
    help="Share of each defect's labelled images that trains; the rest measures the classifier.",
)
@click.option(
    "--split",
    "splits",
    type=click.Choice(["train", "val", "test"]),
    multiple=True,
    help="Only defect images from these splits (default: all).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@device_option
def train_defects_cmd(
    model_dir: Path, manifest: Path, root: Path, share: float, splits: tuple[str, ...], seed: int, device: str
) -> None:
    """Train the defect-type classifier of a model from labelled defect images; save it beside the model.

    Example: inspector train-defects --model models_out/pill --manifest data_manifests/pillqc.json
    --root ../shared/data/pillqc --share 0.5
    """
    from inspector.explain import train_defect_head
    from inspector.pipeline import Inspector

    inspector = Inspector.load(model_dir, device)
    r = train_defect_head(inspector, manifest, root, share=share, splits=splits or None, seed=seed)
    click.echo(f"defect classifier for {model_dir}: classes {', '.join(r.head.classes)}")
    click.echo("trained on " + ", ".join(f"{c} {n}" for c, n in r.n_train.items()))
    if r.heldout_accuracy is None:
        click.echo("nothing held out (share 1): no accuracy measured")
        return
    per = ", ".join(f"{c} {a:.3f}" for c, a in r.per_class_accuracy.items())
    click.echo(f"held-out accuracy {r.heldout_accuracy:.3f} on {sum(r.n_heldout.values())} images ({per})")
    click.echo(f"confusion (rows true, columns predicted, {'/'.join(r.head.classes)}): {r.confusion}")


def register(main: click.Group) -> None:
    from inspector.cli.report_cmds import explain_report_cmd  # click only: start-up stays light

    for cmd in (explain_cmd, explain_methods_cmd, explain_report_cmd, train_defects_cmd):
        main.add_command(cmd)
