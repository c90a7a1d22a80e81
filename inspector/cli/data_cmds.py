"""``inspector data``: write and verify dataset manifests."""

from __future__ import annotations

from pathlib import Path

import click

from inspector.cli.common import root_option
from inspector.errors import ManifestError
from inspector.manifest import LAYOUTS, build_manifest, load_manifest, mask_coverage, verify_manifest

MAX_LISTED = 25


@click.group("data")
def data() -> None:
    """Dataset manifests: which images, labels, splits and checksums (never the images)."""


@data.command("manifest")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--layout", type=click.Choice(LAYOUTS), required=True, help="How the folder is organised.")
@click.option("--normal", default=None, help="Sub-folder of good images (layout folders).")
@click.option(
    "--train-count",
    type=click.IntRange(min=0),
    default=None,
    help="First N good images by name train (0: an evaluation-only manifest, every image in test).",
)
@click.option("--name", default=None, help="Manifest name (default: the folder's name).")
@click.option(
    "--defect-name",
    "aliases",
    multiple=True,
    metavar="FOLDER=NAME",
    help="Name a defect folder's defect type, e.g. positive=crack (repeatable).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def manifest_cmd(
    directory: Path,
    layout: str,
    normal: str | None,
    train_count: int | None,
    name: str | None,
    aliases: tuple[str, ...],
    output: Path,
) -> None:
    """Write a manifest for DIRECTORY; paths in it are relative to DIRECTORY.

    Example: inspector data manifest ../shared/data/pillqc --layout pillqc --train-count 100 -o pillqc.json
    """
    rename = {}
    for a in aliases:
        folder, sep, new = a.partition("=")
        if not sep or not folder or not new:
            raise ManifestError(f"--defect-name must look like FOLDER=NAME, got '{a}'")
        rename[folder] = new
    m = build_manifest(directory, layout, name=name, normal=normal, train_count=train_count, defect_names=rename)
    m.save(output)
    counts = {s: len(m.split(s)) for s in ("train", "val", "test")}
    click.echo(
        f"wrote {output}: {len(m.items)} images ({counts['train']} train, {counts['val']} val, "
        f"{counts['test']} test), defects: {', '.join(m.defects) or 'none'}"
    )
    if layout == "mvtec":
        coverage = mask_coverage(m)
        if coverage:
            click.echo("masks: " + ", ".join(f"{d} {have}/{total}" for d, (have, total) in coverage.items()))
        for d, (have, total) in coverage.items():
            if have < total:
                click.echo(
                    f"warning: {total - have} of {total} '{d}' images have no mask in ground_truth/{d}"
                    f" (looked for <name>_mask.png, <name>_mask.* and <name>.*): eval computes pixel"
                    f" figures over the defective images that have one",
                    err=True,
                )


@data.command("verify")
@click.argument("manifest", type=click.Path(path_type=Path))
@root_option
def verify_cmd(manifest: Path, root: Path) -> None:
    """Check that every file of MANIFEST exists under --root and matches its sha256.

    Example: inspector data verify data_manifests/crack.json --root ../shared/data/crack
    """
    m = load_manifest(manifest)
    problems = verify_manifest(m, root)
    for p in problems[:MAX_LISTED]:
        click.echo(p)
    if len(problems) > MAX_LISTED:
        click.echo(f"... and {len(problems) - MAX_LISTED} more")
    if problems:
        raise ManifestError(f"{len(problems)} problem(s) in {len(m.items)} files of {manifest}")
    click.echo(f"ok: all {len(m.items)} files of {manifest} present with matching sha256")


def register(main: click.Group) -> None:
    main.add_command(data)
