"""``podium``: the command line. Thin: it parses arguments and calls ``podium.api``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.table import Table

from podium import api
from podium.errors import PodiumError

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
        table.add_row(label, o.state, f"{o.seconds:.1f}", api._key_metric(o.metrics))
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
) -> None:
    """Run every stage of RECIPE that is not done yet; resume a partial one exactly.

    Example: podium run recipes/dirty-mnist.yaml --profile tiny stages.effnet_s.trainer.max_epochs=2
    """
    result = api.run(recipe, overrides or [], profile, only, force, member, store, console)
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


def main() -> None:
    try:
        app(standalone_mode=False)
    except PodiumError as e:
        Console(stderr=True).print(f"[bold red]error:[/bold red] {e}", highlight=False, markup=True)
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
