"""``podium``: the command line. Thin: it parses arguments and calls ``podium.api``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.table import Table

from podium import api
from podium.engine.distributed import detect_world, launch
from podium.errors import LaunchRequired, PodiumError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Run computer-vision competition pipelines from one recipe file, exactly resumable.")
console = Console()

Overrides = typer.Argument(None, help="Dotlist overrides such as stages.train.optim.lr=5e-3")
Profile = typer.Option(None, "--profile", "-p", help="A profile from the recipe's profiles: section, e.g. tiny")
Store = typer.Option(None, "--store", help="Run store root (default ./runs or $PODIUM_HOME)")


def _summary(result: api.RunResult) -> None:
    table = Table(title=f"{result.recipe.name}: stages")
    for col in ("stage", "state", "seconds", "key metric"):
        table.add_column(col)
    for o in result.outcomes:
        label = o.stage + (f"[{o.member}]" if o.member is not None else "")
        table.add_row(label, o.state, f"{o.seconds:.1f}", api.key_metric(o.metrics))
    console.print(table)
    from podium.stages.evaluate import leaderboard_table

    for name, scores in result.leaderboard.items():
        console.print(leaderboard_table(f"leaderboard ({name})", scores))
    if result.submission:
        console.print(f"submission: {result.submission}")
    if result.report:
        console.print(f"report:     {result.report}")
    console.print(f"run store:  {result.run_dir}")


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="Recipe YAML file"),
    overrides: list[str] = Overrides,
    profile: str = Profile,
    only: list[str] = typer.Option([], "--only", help="Run only this stage (repeatable); its inputs must be done"),
    force: list[str] = typer.Option([], "--force", help="Run this stage again from scratch (repeatable)"),
    member: int = typer.Option(None, "--member", help="Run one member of a sweep (for cluster arrays)"),
    store: Path = Store,
    check: bool = typer.Option(False, "--check", help="Only validate the recipe (no stage runs); exit 0 or 2"),
) -> None:
    """Run every stage of RECIPE that is not done yet; resume a partial one exactly.

    A train stage with trainer.devices > 1 starts that many processes (DDP); under torchrun or srun
    each launched process is one rank.

    Example: podium run recipes/dirty-mnist.yaml --profile tiny stages.effnet_s.trainer.max_epochs=2
             podium run --check recipes/dirty-mnist.yaml stages.effnet_s.model.name=tf_efficientnetv2_m
    """
    if check:
        checked = api.check(recipe, overrides or [], profile, only, force, member, store)
        console.print(f"{checked.name}: {len(checked.stages)} stages valid ({', '.join(checked.order)})")
        return
    try:
        result = api.run(recipe, overrides or [], profile, only, force, member, store, console)
    except LaunchRequired as e:
        console.print(f"starting {e.processes} processes")
        sys.exit(launch(e.processes, sys.argv[1:]))
    if detect_world().is_zero:
        _summary(result)


@app.command()
def status(recipe: Path = typer.Argument(..., help="Recipe YAML file"), overrides: list[str] = Overrides,
           profile: str = Profile, store: Path = Store) -> None:
    """Show each stage's state, hash, key metric and age for RECIPE's current config.

    Example: podium status recipes/dirty-mnist.yaml --profile tiny
    """
    table = Table(title=str(recipe))
    for col in ("stage", "kind", "state", "hash", "key metric", "age"):
        table.add_column(col)
    for r in api.status(recipe, overrides or [], profile, store):
        colour = {"done": "green", "failed": "red", "running": "yellow"}.get(r.state, "")
        table.add_row(r.stage, r.kind, f"[{colour}]{r.state}[/{colour}]" if colour else r.state, r.hash,
                      r.metric, r.age)
    console.print(table)


@app.command()
def compare(run_a: Path = typer.Argument(..., help="A train stage directory or metrics CSV"),
            run_b: Path = typer.Argument(..., help="Another one")) -> None:
    """Compare two runs' per-epoch metrics: first epoch that differs and max |difference| per metric.

    Example: podium compare runs/r/train/3f2a9c01d4e7 runs/r/train/b81e22c0aa13
    """
    c = api.compare(run_a, run_b)
    table = Table(title=f"{c.epochs} common epochs")
    for col in ("metric", "first differing epoch", "max |a - b|"):
        table.add_column(col)
    for m in c.metrics:
        first = c.first_difference[m]
        table.add_row(m, "identical" if first is None else str(first), f"{c.max_abs_difference[m]:.3g}")
    console.print(table)


@app.command()
def report(
    recipe: Path = typer.Argument(..., help="Recipe YAML file"),
    args: list[str] = typer.Argument(None, help="OTHER, a second recipe or a run store of this recipe to compare "
                                     "with, and/or dotlist overrides (KEY=VALUE)"),
    profile: str = Profile,
    other_profile: str = typer.Option(None, "--other-profile", help="Profile of OTHER (default --profile); "
                                      "without OTHER: this recipe under that profile"),
    store: Path = Store,
    out: Path = typer.Option(None, "--out", help="Write here instead of the run store"),
    open_: bool = typer.Option(False, "--open", help="Open the report in a browser"),
) -> None:
    """Write RECIPE's report (runs/<recipe>/report.html) from its run store, running nothing; with OTHER or
    --other-profile, the two runs side by side (curves overlaid, first epoch at which they differ).

    Example: podium report recipes/dirty-mnist.yaml --profile tiny --open
             podium report recipes/mask-soup.yaml other-runs/ --profile tiny
             podium report recipes/fastmri-varnet.yaml recipes/fastmri-feature-varnet.yaml --profile tiny
    """
    import webbrowser

    overrides = [a for a in args or [] if "=" in a]
    others = [a for a in args or [] if "=" not in a]
    if len(others) > 1:
        raise typer.BadParameter(f"one run to compare with, got {len(others)}: {', '.join(others)}")
    path = api.report(recipe, overrides, profile, store, others[0] if others else None, other_profile, out, console)
    console.print(f"report: {path}")
    if open_:
        webbrowser.open(path.absolute().as_uri())


@app.command()
def verify(recipe: Path = typer.Argument(..., help="Recipe YAML file"), overrides: list[str] = Overrides,
           profile: str = Profile, stage: list[str] = typer.Option([], "--stage", help="Only this stage (repeatable)"),
           store: Path = Store) -> None:
    """Check every recorded file of RECIPE's finished stages against its sha256; exit 2 naming the damaged.

    Example: podium verify recipes/fastmri-varnet.yaml --profile tiny --stage data
    """
    from podium.errors import CorruptFileError

    checked, damaged = api.verify(recipe, overrides or [], profile, stage, store)
    if damaged:
        listing = "\n".join(f"  {d.stage}: {d.problem}" for d in damaged)
        raise CorruptFileError(f"{len(damaged)} of {checked} recorded files are damaged:\n{listing}")
    console.print(f"all {checked} recorded files verify")


@app.command()
def export(recipe: Path = typer.Argument(..., help="Recipe YAML file"),
           ref: str = typer.Argument(..., help="The trained model: STAGE@best, @last, @epoch=N, STAGE[i]@..."),
           out: Path = typer.Argument(..., help="The weights file to write (a timm state dict)"),
           overrides: list[str] = Overrides, profile: str = Profile, store: Path = Store) -> None:
    """Write a trained model's image backbone as a timm weights file, for another recipe's pretrained_file.

    Example: podium export recipes/iqa-caption.yaml mos_finetune@best swin_mos.pth --profile tiny
    """
    path = api.export(recipe, ref, out, overrides or [], profile, store)
    console.print(f"backbone of {ref}: {path}")


@app.command()
def slurm(
    recipe: Path = typer.Argument(..., help="Recipe YAML file"),
    overrides: list[str] = Overrides,
    stage: str = typer.Option(..., "--stage", help="The sweep (a train stage with members:) to run as an array"),
    profile: str = Profile,
    sbatch: list[str] = typer.Option([], "--sbatch", help="An sbatch option for both jobs (repeatable), "
                                     "e.g. --sbatch=--partition=gpu --sbatch=--time=12:00:00"),
    out: Path = typer.Option(None, "--out", help="Write <stage>.sbatch, after.sbatch and submit.sh here "
                             "(default: print them)"),
    store: Path = Store,
) -> None:
    """Write SLURM scripts: one array task per sweep member, then a dependent job for the rest of RECIPE.

    Example: podium slurm recipes/mask-soup.yaml --stage members --sbatch=--partition=gpu --out slurm/
    then: bash slurm/submit.sh
    """
    from podium.store import atomic_write

    scripts = api.slurm(recipe, stage, overrides or [], profile, sbatch, store)
    for name, text in scripts.items():
        if out is None:
            console.print(f"# ---- {name}", highlight=False, markup=False)
            console.print(text, highlight=False, markup=False, soft_wrap=True)
        else:
            atomic_write(out / name, text).chmod(0o755)
    if out is not None:
        console.print(f"wrote {', '.join(scripts)} in {out}; submit with: bash {out / 'submit.sh'}")


synth_app = typer.Typer(no_args_is_help=True, help="Write a task's synthetic data set in the competition's layout.")
evaluate_app = typer.Typer(no_args_is_help=True, help="Score prediction files with a leaderboard's exact metric.")
app.add_typer(synth_app, name="synth")
app.add_typer(evaluate_app, name="evaluate")


@synth_app.command("dirty-mnist")
def synth_dirty_mnist(
    out: Path = typer.Option(..., "--out", help="Output folder (the Dacon layout is written inside)"),
    num_images: int = typer.Option(350_000, "--num-images", help="Training images"),
    num_val: int = typer.Option(5_000, "--num-val", help="Validation images (held-out glyphs)"),
    num_test: int = typer.Option(5_000, "--num-test", help="Leaderboard test images (held-out glyphs)"),
    seed: int = typer.Option(0, "--seed"),
    canvas_size: int = typer.Option(256, "--canvas-size"),
    workers: int = typer.Option(None, "--workers", help="Processes (default: all cores)"),
) -> None:
    """Synthesize dirty-MNIST images (10..14 noisy letters each); resumes if killed.

    Example: podium synth dirty-mnist --out data/dirty --num-images 350000 --seed 0
    """
    from podium.tasks.multilabel.synth import synthesize_dacon

    paths = synthesize_dacon(out, num_images, num_val, num_test, seed, canvas_size=canvas_size, workers=workers)
    console.print(f"wrote {num_images + num_val + num_test} images under {out} ({len(paths)} entries)")


@synth_app.command("fastmri")
def synth_fastmri(
    out: Path = typer.Option(..., "--out", help="Output folder (the SNU 2025 layout is written inside)"),
    num_train: int = typer.Option(4, "--num-train", help="Training volumes per anatomy x acceleration"),
    num_val: int = typer.Option(1, "--num-val", help="Validation volumes per anatomy x acceleration"),
    num_leaderboard: int = typer.Option(2, "--num-leaderboard", help="Leaderboard volumes per anatomy x acc"),
    seed: int = typer.Option(0, "--seed"),
    height: int = typer.Option(768, "--height"),
    width: int = typer.Option(396, "--width"),
    target_size: int = typer.Option(384, "--target-size"),
    coils: int = typer.Option(16, "--coils"),
    slices: int = typer.Option(16, "--slices"),
) -> None:
    """Synthesize multi-coil brain- and knee-like k-space volumes with image_label/input/grappa.

    Example: podium synth fastmri --out data/snu --num-train 2 --height 96 --width 64 --target-size 48 --coils 8
    """
    from podium.tasks.mri.synth import synthesize_fastmri

    info = synthesize_fastmri(out, num_train, num_val, num_leaderboard, seed, height, width, target_size, coils,
                              slices)
    console.print(f"wrote {info['num_written']} of {info['num_volumes']} volumes under {out}")


@evaluate_app.command("fastmri")
def evaluate_fastmri(
    recon: Path = typer.Option(..., "--recon", help="reconstructions_leaderboard folder ({acc4,acc8}/<file>.h5)"),
    leaderboard: Path = typer.Option(..., "--leaderboard", help="leaderboard folder ({acc4,acc8}/image/<file>.h5)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """The SNU FastMRI 2025 leaderboard SSIM (acc4, acc8, total), exactly as the official script.

    Example: podium evaluate fastmri --recon out/reconstructions_leaderboard --leaderboard Data/leaderboard
    """
    import dataclasses
    import json

    from podium.metrics.ssim import leaderboard_table, score_leaderboard

    score = score_leaderboard(recon, leaderboard, progress=not as_json)
    if as_json:
        print(json.dumps(dataclasses.asdict(score), indent=2))
    else:
        console.print(leaderboard_table(score))


def main() -> None:
    try:
        app(standalone_mode=False)
    except PodiumError as e:
        world = detect_world()
        rank = f" (rank {world.rank} of {world.size})" if world.size > 1 else ""
        Console(stderr=True).print(f"[bold red]error{rank}:[/bold red] {e}", highlight=False, markup=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)


if __name__ == "__main__":
    main()
