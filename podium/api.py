"""What the CLI and notebooks call: ``podium.run(...)``, ``podium.status(...)``, ``podium.compare(...)``."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from podium.engine.metrics_log import Comparison, compare_epochs, read_epochs
from podium.errors import DataError, LaunchRequired
from podium.recipe import Recipe, load_recipe
from podium.runner import Runner, StageOutcome
from podium.store import RunStore

if TYPE_CHECKING:
    from podium.report import RunView

REPORT = "report.html"
REPORT_CACHE = ".report-cache"  # a dot: no stage can have that name


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
    try:
        outcomes = runner.run(only=only, force=force, member=member)
    except LaunchRequired:
        raise
    except Exception:
        # the report shows which stage failed; a recipe refused before any stage ran leaves nothing written
        if report and (store.root / recipe.name).is_dir():
            _run_report(runner)
        raise
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
    if report:
        result.report = _run_report(runner)
    return result


def _view(runner: Runner, label: str) -> RunView:
    from podium.report import RunView

    names = runner.recipe.order
    return RunView(label, runner.recipe, stage_statuses(runner), {n: runner.runs_of(n) for n in names},
                   runner.data_root(), runner.store.root / runner.recipe.name / REPORT_CACHE)


def _run_report(runner: Runner) -> Path | None:
    """The report after a run, by rank 0. Drawing it never fails the run: a part that cannot be drawn is a
    note in the report and a warning, and a report that cannot be written at all is a warning."""
    if not runner.world.is_zero:
        return None
    from podium.report import write_report

    def warn(message: str) -> None:
        runner.console.print(f"[yellow]warning: {escape(message)}[/yellow]")

    try:
        return write_report(_view(runner, runner.recipe.name), runner.store.root / runner.recipe.name / REPORT,
                            warn=warn)
    except Exception as e:  # exit codes are the stages': a report is never a reason to fail a run
        warn(f"the report could not be written: {type(e).__name__}: {e}")
        return None


def report(recipe: str | Path | Recipe, overrides: Sequence[str] = (), profile: str | None = None,
           store: str | Path | RunStore | None = None, other: str | Path | None = None,
           other_profile: str | None = None, out: str | Path | None = None,
           console: Console | None = None) -> Path:
    """Write a recipe's report from its run store, running nothing; ``runs/<recipe>/report.html`` unless
    ``out``. With ``other`` (a second recipe file, or a run store holding the same recipe) or
    ``other_profile`` (the same recipe under another profile), the two runs side by side in
    ``report-vs-<other>.html``: curves overlaid, both scores, the first epoch at which they differ.
    ``overrides`` apply to both runs unless ``other`` is another recipe."""
    from podium.report import write_report

    console = console or Console()
    a = Runner(_as_recipe(recipe, profile, overrides), _as_store(store), console)
    root = a.store.root / a.recipe.name

    def warn(message: str) -> None:
        console.print(f"[yellow]warning: {escape(message)}[/yellow]")

    if other is None and other_profile is None:
        return write_report(_view(a, a.recipe.name), Path(out) if out else root / REPORT, warn=warn)
    same = other is None or Path(other).is_dir()  # the same recipe, in another store or profile
    source = (a.recipe.source if isinstance(recipe, Recipe) else recipe) if same else other
    b = Runner(load_recipe(source, other_profile or profile, overrides if same else ()),
               RunStore(other) if other is not None and same else a.store, console)
    la, lb = _labels(a, b)
    path = Path(out) if out else root / f"report-vs-{re.sub(r'[^A-Za-z0-9._-]+', '-', lb).strip('-')}.html"
    return write_report(_view(a, la), path, other=_view(b, lb), warn=warn)


def _labels(a: Runner, b: Runner) -> tuple[str, str]:
    """Short names that tell two runs apart: their recipes' (names, files), profiles' or stores'."""
    for pick in (lambda r: r.recipe.name, lambda r: Path(r.recipe.source or "").stem,
                 lambda r: r.recipe.profile or "no profile",
                 lambda r: r.store.root.name, lambda r: str(r.store.root)):
        if pick(a) != pick(b):
            return pick(a), pick(b)
    return "A", "B"


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


def export(recipe: str | Path | Recipe, ref: str, out: str | Path, overrides: Sequence[str] = (),
           profile: str | None = None, store: str | Path | RunStore | None = None) -> Path:
    """Write the image backbone of a trained model (``stage@best|@last|@epoch=N``, ``stage[i]@...``) as a
    plain timm state dict at ``out``, for ``pretrained_file`` in another recipe: the MOS regressor's
    fine-tuned Swin as a captioner's backbone, a recipe's pretrained stand-in for ImageNet weights."""
    import torch

    from podium.errors import ConfigError
    from podium.recipe import Ref
    from podium.registry import CHECKPOINT_KINDS
    from podium.runner import StageContext, stage_seed
    from podium.store import atomic_path
    from podium.tasks import get_task

    recipe = _as_recipe(recipe, profile, overrides)
    target = Ref.parse(ref, "REF")
    node = recipe.stages.get(target.stage)
    if node is None or node.kind not in CHECKPOINT_KINDS:
        kinds = ", ".join(sorted(CHECKPOINT_KINDS))
        raise ConfigError(f"REF: {target.stage!r} is not a stage with checkpoints of {recipe.name} (kinds: {kinds})")
    runner = Runner(recipe, _as_store(store), console=Console(quiet=True))
    runs = runner.runs_of(target.stage)
    if any(r.status != "done" for r in runs):
        raise ConfigError(f"REF: stage {target.stage!r} is not done in {runner.store.root}; run it first "
                          f"(podium run RECIPE --only {target.stage})")
    cfg = node.configs[0]
    ctx = StageContext(recipe, node, cfg, None, runs[0], runner.store, stage_seed(recipe, cfg), {target.stage: runs},
                       runner.console, runner.data_root(), runner.world)
    model, train_cfg = ctx.model(target)
    backbone = get_task(node.task).trained_backbone(model, train_cfg)
    with atomic_path(out) as tmp:
        torch.save(backbone.state_dict(), tmp)
    return Path(out)


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


def _metrics_csv(path: Path) -> Path:
    path = Path(path)
    candidate = path / "logs" / "metrics.csv" if path.is_dir() else path
    if not candidate.is_file():
        raise DataError(f"{path}: no metrics.csv (expected a train stage directory or a metrics CSV file)")
    return candidate


def compare(run_a: str | Path, run_b: str | Path) -> Comparison:
    """Two runs' per-epoch metrics: the first epoch where each metric differs and the max |difference|."""
    return compare_epochs(read_epochs(_metrics_csv(run_a)), read_epochs(_metrics_csv(run_b)))
