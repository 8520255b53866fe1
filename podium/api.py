"""What the CLI and notebooks call: ``podium.run(...)``, ``podium.status(...)``, ``podium.compare(...)``."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from podium.errors import DataError
from podium.recipe import Recipe, load_recipe
from podium.runner import Runner, StageOutcome
from podium.store import RunStore


@dataclass
class RunResult:
    recipe: Recipe
    store: RunStore
    outcomes: list[StageOutcome]
    leaderboard: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    submission: Path | None = None
    report: Path | None = None

    @property
    def run_dir(self) -> Path:
        return self.store.root / self.recipe.name


def _as_store(store: str | Path | RunStore | None) -> RunStore:
    return store if isinstance(store, RunStore) else RunStore(store)


def _as_recipe(recipe: str | Path | Recipe, profile: str | None, overrides: Sequence[str]) -> Recipe:
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe, profile, overrides)


def run(recipe: str | Path | Recipe, overrides: Sequence[str] = (), profile: str | None = None,
        only: Sequence[str] = (), force: Sequence[str] = (), member: int | None = None,
        store: str | Path | RunStore | None = None, console: Console | None = None,
        report: bool = True) -> RunResult:
    """Run a recipe: every stage not yet done, in dependency order. Safe to call again after a crash.

    Under torchrun or srun this process is one rank of several (see ``engine.distributed``); a train
    stage that wants several processes when none were launched raises ``LaunchRequired``.
    """
    recipe = _as_recipe(recipe, profile, overrides)
    store = _as_store(store)
    runner = Runner(recipe, store, console)
    outcomes = runner.run(only=only, force=force, member=member)
    result = RunResult(recipe, store, outcomes)
    for name in recipe.order:
        node = recipe.stages[name]
        run_ = runner.runs_of(name)[0]
        if run_.status != "done":
            continue
        if node.kind == "evaluate":
            import json

            result.leaderboard[name] = json.loads(run_.output("metrics.json").read_text())
        elif node.kind == "submit":
            result.submission = run_.output(node.config.filename)
    if report and runner.world.is_zero:
        from podium.report import write_report

        result.report = write_report(recipe, store.root / recipe.name, stage_statuses(runner),
                                     {name: runner.runs_of(name) for name in recipe.order})
    return result


def check(recipe: str | Path | Recipe, overrides: Sequence[str] = (), profile: str | None = None,
          only: Sequence[str] = (), force: Sequence[str] = (), member: int | None = None,
          store: str | Path | RunStore | None = None) -> Recipe:
    """Every check that needs no stage to run (the recipe, its references, models, files, data root and
    process counts); raises ``ConfigError`` with all problems, writes nothing."""
    recipe = _as_recipe(recipe, profile, overrides)
    store = _as_store(store)
    Runner(recipe, store, console=Console(quiet=True)).processes(only, force, member)
    return recipe


@dataclass
class Damage:
    stage: str
    problem: str  # the file, and what is wrong with it


def verify(recipe: str | Path | Recipe, overrides: Sequence[str] = (), profile: str | None = None,
           stages: Sequence[str] = (), store: str | Path | RunStore | None = None,
           progress: bool = True) -> tuple[int, list[Damage]]:
    """Check every recorded file (outputs, checkpoints, synthesized data) of the finished stages against
    its sha256: (files checked, what is damaged)."""
    from podium.engine.progress import progress_bar
    from podium.errors import ConfigError, CorruptFileError
    from podium.store import verify_file

    recipe = _as_recipe(recipe, profile, overrides)
    for name in stages:
        if name not in recipe.stages:
            raise ConfigError(f"--stage: unknown stage {name!r} (stages: {', '.join(recipe.stages)})")
    runner = Runner(recipe, _as_store(store), console=Console(quiet=True))
    runs = [(name, run_) for name in recipe.order if not stages or name in stages
            for run_ in runner.runs_of(name) if run_.status == "done"]
    todo = [(name, run_.path / rel, digest) for name, run_ in runs for rel, digest in run_.recorded_files().items()]
    data = [(name, run_, len(run_.listed_files())) for name, run_ in runs if recipe.stages[name].kind == "synth"]
    total = len(todo) + sum(n for *_, n in data)
    damaged = []
    with progress_bar(progress) as bar:
        task = bar.add_task("verifying", total=total)
        for name, path, digest in todo:
            try:
                verify_file(path, digest)
            except CorruptFileError as e:
                damaged.append(Damage(name, str(e)))
            bar.advance(task)
        for name, run_, _ in data:
            problems = run_.check_files(runner.data_dir(run_), deep=True, advance=lambda n: bar.advance(task, n))
            damaged += [Damage(name, problem) for problem in problems.values()]
    return total, damaged


def slurm(recipe: str | Path | Recipe, stage: str, overrides: Sequence[str] = (), profile: str | None = None,
          options: Sequence[str] = (), store: str | Path | RunStore | None = None) -> dict[str, str]:
    """sbatch scripts that run a sweep's members as a SLURM array, then the rest of the recipe."""
    from podium.slurm import slurm_scripts

    loaded = _as_recipe(recipe, profile, overrides)
    root = _as_store(store).root
    return slurm_scripts(loaded, stage, profile, overrides, options, root, Path.cwd())


@dataclass
class StageStatus:
    stage: str
    kind: str
    state: str
    hash: str
    metric: str
    age: str
    path: Path


def _age(manifest: dict[str, Any]) -> str:
    stamp = manifest.get("finished") or manifest.get("started")
    if not stamp:
        return ""
    seconds = time.time() - time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z"))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def key_metric(metrics: dict[str, Any]) -> str:
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isnan(v):
            return f"{k}={v:.4f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{k}={v}"
    return ""


def status(recipe: str | Path | Recipe, overrides: Sequence[str] = (), profile: str | None = None,
           store: str | Path | RunStore | None = None) -> list[StageStatus]:
    """Each stage's state at the recipe's current hashes: done, running, failed, partial or missing."""
    recipe = _as_recipe(recipe, profile, overrides)
    store = _as_store(store)
    return stage_statuses(Runner(recipe, store))


def stage_statuses(runner: Runner) -> list[StageStatus]:
    """The status rows of a runner's recipe, reusing its stage hashes."""
    rows = []
    for name in runner.recipe.order:
        runs = runner.runs_of(name)
        manifests = [r.read_manifest() for r in runs]
        states = [m.get("status", "missing") for m in manifests]
        state = states[0] if len(runs) == 1 else f"{states.count('done')}/{len(runs)} done"
        rows.append(StageStatus(name, runner.recipe.stages[name].kind, state, runs[0].path.name if len(runs) == 1
                                else f"{len(runs)} members", key_metric(manifests[0].get("metrics", {})),
                                _age(manifests[0]), runs[0].path))
    return rows


@dataclass
class Comparison:
    metrics: list[str]
    first_difference: dict[str, int | None]
    max_abs_difference: dict[str, float]
    epochs: int
    rows: list[tuple[int, dict[str, float], dict[str, float]]]


def _metrics_csv(path: Path) -> Path:
    path = Path(path)
    candidate = path / "logs" / "metrics.csv" if path.is_dir() else path
    if not candidate.is_file():
        raise DataError(f"{path}: no metrics.csv (expected a train stage directory or a metrics CSV file)")
    return candidate


def _read_epochs(path: Path) -> dict[int, dict[str, float]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "epoch" not in reader.fieldnames:
            raise DataError(f"{path}: expected a column 'epoch'; found {reader.fieldnames}")
        out = {}
        for line, row in enumerate(reader, start=2):
            try:
                out[int(float(row["epoch"]))] = {k: float(v) for k, v in row.items() if k != "epoch" and v}
            except ValueError as e:
                raise DataError(f"{path}:{line}: not a number ({e})") from None
        return out


def compare(run_a: str | Path, run_b: str | Path) -> Comparison:
    """Two runs' per-epoch metrics: the first epoch where each metric differs and the max |difference|."""
    a, b = _read_epochs(_metrics_csv(run_a)), _read_epochs(_metrics_csv(run_b))
    epochs = sorted(set(a) & set(b))
    metrics = [m for m in dict.fromkeys(k for e in epochs for k in a[e]) if all(m in b[e] for e in epochs)]
    first: dict[str, int | None] = dict.fromkeys(metrics)
    worst = dict.fromkeys(metrics, 0.0)
    for e in epochs:
        for m in metrics:
            if m not in a[e] or m not in b[e]:
                continue
            diff = abs(a[e][m] - b[e][m])
            worst[m] = max(worst[m], diff)
            if diff != 0 and first[m] is None:
                first[m] = e
    return Comparison(metrics, first, worst, len(epochs), [(e, a[e], b[e]) for e in epochs])
