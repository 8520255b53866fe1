"""The runner: stages in topological order; skip what is done, resume what is partial, run the rest.

A stage (or one member of a sweep) lives at ``<store>/<recipe>/<stage>/<hash>`` where the hash covers
its resolved config, its seed, its upstream hashes and the versions of its kind and task. Change a
downstream stage and only it and its dependents get new hashes; everything upstream is found done.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from podium.engine.distributed import Coordinator, World, detect_world, stage_processes
from podium.errors import ConfigError, CorruptFileError, DataError, LaunchRequired, PodiumError
from podium.recipe import Recipe, Ref, StageConfig, StageNode, validate
from podium.registry import CHECKPOINT_KINDS, get_task, stage_kind
from podium.store import MANIFEST, RunStore, StageRun, content_hash, now, versions, write_json

FINGERPRINTS = ".data-roots.json"  # in the store root: real data roots' fingerprints by file listing


def hash_payload(cfg: StageConfig) -> dict[str, Any]:
    """The config as JSON data, minus fields that do not change results (workers, progress bars)."""
    data = cfg.model_dump(mode="json", exclude={"needs"})
    for dotted in type(cfg).unhashed:
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return data


def stage_seed(recipe: Recipe, cfg: StageConfig) -> int:
    return recipe.seed if cfg.seed is None else cfg.seed


def stage_hashes(recipe: Recipe, store: RunStore | None = None) -> dict[str, list[str]]:
    """Every stage's instance hashes (one per sweep member), computed without running anything."""
    hashes: dict[str, list[str]] = {}
    for name in recipe.order:
        node = recipe.stages[name]
        kind = stage_kind(node.kind)
        task_version = get_task(node.task).version if node.task else None
        upstream = {d: hashes[d] for d in node.needs}
        hashes[name] = [
            content_hash({
                "kind": node.kind, "kind_version": kind.version, "task": node.task,
                "task_version": task_version, "seed": stage_seed(recipe, cfg),
                "config": hash_payload(cfg),
                "upstream": upstream, "data_root": _data_fingerprint(recipe, node, store),
            })
            for cfg in node.configs
        ]
    return hashes


def _data_fingerprint(recipe: Recipe, node: StageNode, store: RunStore | None) -> str | None:
    """Real data is identified by its task's files (relative names and sizes), never by where it lives.

    Checking a real root (``check_data``) opens its files; its result is cached in the store by the
    root's listing (every file's name, size and mtime), so a command re-checks only changed data.
    """
    if node.kind != "synth" or recipe.data_root is None:
        return None
    root = Path(recipe.data_root)
    stats = sorted([p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns]
                   for p in root.rglob("*") if p.is_file() and (st := p.stat()))
    key, entry = content_hash(stats, length=64), f"{node.task}:{root.absolute()}"
    cache_path = store.root / FINGERPRINTS if store is not None else None
    cache: dict[str, list[str]] = {}
    if cache_path is not None and cache_path.is_file():
        with contextlib.suppress(ValueError):  # an unreadable cache is only rebuilt
            cache = json.loads(cache_path.read_text())
    if cache.get(entry, [None])[0] != key:
        files = get_task(node.task).check_data(root)
        cache[entry] = [key, content_hash([[p.relative_to(root).as_posix(), p.stat().st_size] for p in sorted(files)])]
        if cache_path is not None and store.writer:
            write_json(cache_path, cache)
    return cache[entry][1]


@dataclass
class StageContext:
    """What a stage kind's ``run`` gets: its config, its directory, its upstream and the data root."""

    recipe: Recipe
    node: StageNode
    cfg: Any
    member: int | None
    run: StageRun
    store: RunStore
    seed: int
    upstream: dict[str, list[StageRun]]
    console: Console
    data_root: Path | None = None
    world: World = field(default_factory=World)
    attempt: int = -1  # this process's entry in the manifest's attempts

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def task(self):
        return get_task(self.node.task)

    def info(self, message: str) -> None:
        self.console.print(f"[dim]{self.name}:[/dim] {message}")

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]{self.name}: warning:[/yellow] {message}")

    def upstream_run(self, stage: str, member: int | None = None) -> StageRun:
        runs = self.upstream[stage]
        if member is not None:
            return runs[member]
        if len(runs) != 1:
            raise ConfigError(f"stages.{self.name}: {stage!r} is a sweep of {len(runs)} members; point at "
                              f"one as {stage}[i], or combine them through a soup or an ensemble stage")
        return runs[0]

    def checkpoint(self, ref: Ref) -> tuple[Path, StageConfig]:
        """Verified checkpoint file for a reference, with the train config that built the model."""
        from podium.engine.checkpoint import select_checkpoint

        if self.recipe.stages[ref.stage].kind not in CHECKPOINT_KINDS:
            raise ConfigError(f"stages.{self.name}: {ref} does not name a stage with checkpoints")
        run = self.upstream_run(ref.stage, ref.member)
        path = select_checkpoint(run, ref.select, ref.epoch)
        return path, self.trained_config(run)

    def model(self, ref: Ref) -> tuple[Any, StageConfig]:
        """The pure ``nn.Module`` a reference names, with its checkpoint's weights, in eval mode, and the
        train config that built it (a collected model is rebuilt from its parts' configs)."""
        from podium.engine.checkpoint import load_checkpoint
        from podium.ensemble.experts import COLLECTED
        from podium.stages.predict import load_model

        path, cfg = self.checkpoint(ref)
        ckpt = load_checkpoint(path)
        if COLLECTED not in ckpt:
            return load_model(get_task(self.recipe.stages[ref.stage].task), cfg, ckpt["state_dict"]), cfg
        from podium.stages.collect import assemble

        module = assemble(self, ckpt[COLLECTED])
        module.load_state_dict(ckpt["state_dict"])
        return module.eval(), cfg

    def trained_config(self, run: StageRun) -> StageConfig:
        """The train config that built a run's weights, as its manifest recorded it: with a search's best
        parameters when the stage took them (``params_from``); a soup records its members' (``model_config``)."""
        manifest = run.read_manifest()
        config_type = type(self.recipe.stages[manifest.get("model_stage", manifest["stage"])].config)
        return validate(config_type, manifest.get("model_config", manifest["config"]), f"{run.path / MANIFEST}:")


@dataclass
class StageOutcome:
    stage: str
    member: int | None
    hash: str
    state: str
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


class Runner:
    """Runs a recipe's stages in one process, or as one rank of several (see ``engine.distributed``):
    only rank 0 locks and writes; the other ranks join the train stages that use every process and wait
    for rank 0 through the rest."""

    def __init__(self, recipe: Recipe, store: RunStore, console: Console | None = None,
                 world: World | None = None):
        self.recipe = recipe
        self.world = world or detect_world()
        self.store = store if self.world.is_zero else RunStore(store.root, writer=False)
        self.console = (console or Console()) if self.world.is_zero else Console(quiet=True)
        self.hashes = stage_hashes(recipe, self.store)
        self.coordinator: Coordinator | None = None
        self._data_checked = False

    def runs_of(self, name: str) -> list[StageRun]:
        return [self.store.stage_run(self.recipe.name, name, h) for h in self.hashes[name]]

    def data_root(self) -> Path | None:
        if self.recipe.data_root is not None:
            return Path(self.recipe.data_root)
        synth = self._synth_stage()
        run = self.runs_of(synth)[0] if synth else None
        return self.data_dir(run) if run is not None and run.status == "done" else None

    def data_dir(self, synth_run: StageRun | None) -> Path:
        """Where a synth stage's data set lives: the real data root, or its own ``data/``."""
        return Path(self.recipe.data_root) if self.recipe.data_root is not None else synth_run.path / "data"

    def _synth_stage(self) -> str | None:
        return next((n for n in self.recipe.order if self.recipe.stages[n].kind == "synth"), None)

    def check_data(self) -> dict[str, str]:
        """Check the data set against its synth stage's listing (only files written since they last
        verified are read) before a stage reads it: damaged synthetic files are regenerated and
        verified, damaged real files stop the run. Returns what was repaired (name -> problem)."""
        synth, root = self._synth_stage(), self.data_root()
        if synth is None or root is None:
            return {}
        node, run = self.recipe.stages[synth], self.runs_of(synth)[0]
        with run.lock():
            damaged = run.check_files(root)
            if not damaged:
                return {}
            listing = "\n".join(f"  {problem}" for problem in damaged.values())
            if self.recipe.data_root is not None:
                raise DataError(f"{len(damaged)} file(s) of the data set at {root} changed since stage "
                                f"{node.name!r} recorded them:\n{listing}\nrestore them, or accept the data as "
                                f"it is now with: podium run RECIPE --force {node.name}")
            self.console.print(f"[yellow]{node.name}: {len(damaged)} synthetic data file(s) damaged, "
                               f"regenerating them:\n{listing}[/yellow]")
            for rel in damaged:
                (root / rel).unlink(missing_ok=True)
            get_task(node.task).synth(node.configs[0], root, stage_seed(self.recipe, node.configs[0]))
            still = run.check_files(root)
            if still:
                listing = "\n".join(f"  {problem}" for problem in still.values())
                raise CorruptFileError(f"regenerated synthetic data does not match what stage {node.name!r} "
                                       f"recorded (the libraries changed since? see its manifest's versions):\n"
                                       f"{listing}\nrun it again with: podium run RECIPE --force {node.name}")
            self.console.print(f"[green]✓[/green] {node.name}: {len(damaged)} file(s) regenerated and verified")
        return damaged

    def _selection(self, only: Sequence[str], force: Sequence[str], member: int | None):
        """(stage, member index or None, config, run, forced) for every instance this run covers."""
        for name in [*only, *force]:
            if name not in self.recipe.stages:
                raise ConfigError(f"--only/--force: unknown stage {name!r} (stages: "
                                  f"{', '.join(self.recipe.stages)})")
        selected = list(only) or self.recipe.order
        force = self._with_dependents(force)
        if member is not None and not any(self.recipe.stages[s].is_sweep for s in selected):
            raise ConfigError("--member: none of the selected stages is a sweep (a train stage with members:)")
        for name in self.recipe.order:
            if name not in selected:
                continue
            node = self.recipe.stages[name]
            for i, (cfg, run) in enumerate(zip(node.configs, self.runs_of(name), strict=True)):
                if member is not None and node.is_sweep and i != member:
                    continue
                yield node, (i if node.is_sweep else None), cfg, run, name in force

    def processes(self, only: Sequence[str] = (), force: Sequence[str] = (), member: int | None = None) -> int:
        """How many processes the stages still to run need: 1, or the one count their train stages
        share. Under a launcher it must be the launched count (or 1: those stages run on rank 0)."""
        wanted: dict[str, int] = {}
        for node, idx, cfg, run, forced in self._selection(only, force, member):
            if node.kind != "train" or (run.status == "done" and not forced):
                continue
            n = stage_processes(cfg.trainer.devices, cfg.trainer.num_nodes, self.world)
            where = f"stages.{node.name}" + (f".members[{idx}]" if idx is not None else "") + ".trainer"
            if cfg.trainer.num_nodes > 1 and self.world.size == 1:
                raise ConfigError(f"{where}.num_nodes: {cfg.trainer.num_nodes} nodes need one launch per node: "
                                  "start podium with srun (SLURM) or torchrun --nnodes on each node")
            if n > 1:
                wanted[where] = n
        counts = sorted(set(wanted.values()))
        if len(counts) > 1:
            listing = ", ".join(f"{w}: {n} processes" for w, n in wanted.items())
            raise ConfigError(f"these stages want different numbers of processes ({listing}); "
                              "run them one at a time with --only")
        if counts and self.world.size > 1 and counts[0] != self.world.size:
            where = next(iter(wanted))
            raise ConfigError(f"{where}.devices: {counts[0]} processes, but this run was started with "
                              f"{self.world.size} ({self.world.launcher}); launch {counts[0]} or set "
                              f"devices to match")
        return counts[0] if counts else 1

    def run(self, only: Sequence[str] = (), force: Sequence[str] = (),
            member: int | None = None) -> list[StageOutcome]:
        wanted = self.processes(only, force, member)
        if wanted > self.world.size:
            raise LaunchRequired(wanted)
        if self.coordinator is None:
            self.coordinator = Coordinator(self.world)
        outcomes = []
        for node, idx, cfg, run, forced in list(self._selection(only, force, member)):
            self._require_upstream(node)
            label = node.name + (f"[{idx}]" if idx is not None else "")
            if self.world.size > 1 and not self._joined(node, cfg):
                outcome = self.coordinator.on_zero(label, functools.partial(self._run_one, node, cfg, idx, run, forced))
            else:
                outcome = self._run_one(node, cfg, idx, run, forced)
                self.coordinator.barrier()
            outcomes.append(outcome)
        return outcomes

    def _joined(self, node: StageNode, cfg: StageConfig) -> bool:
        """Does every rank take part in this stage (a train stage over all launched processes)?"""
        return (node.kind == "train" and self.world.size > 1
                and stage_processes(cfg.trainer.devices, cfg.trainer.num_nodes, self.world) == self.world.size)

    def _with_dependents(self, stages: Sequence[str]) -> list[str]:
        """A stage run again from scratch takes everything downstream of it along."""
        out = list(stages)
        for name in self.recipe.order:
            if any(dep in out for dep in self.recipe.stages[name].needs) and name not in out:
                out.append(name)
        return out

    def _require_upstream(self, node: StageNode) -> None:
        for dep in node.needs:
            missing = [r for r in self.runs_of(dep) if r.status != "done"]
            if missing:
                raise PodiumError(f"stage {node.name!r} needs {dep!r}, which is not done "
                                  f"({len(missing)} of {len(self.runs_of(dep))} runs missing); "
                                  f"run it first (podium run RECIPE --only {dep})")

    def _run_one(self, node: StageNode, cfg: StageConfig, member: int | None, run: StageRun,
                 force: bool) -> StageOutcome:
        """Skip, resume or run one stage instance under its lock. Ranks other than 0 (of a stage they
        join) follow rank 0's decision. A kind marked ``shared`` (search) runs outside the lock, so
        several processes can work on it at once; it coordinates them itself."""
        label = node.name + (f"[{member}]" if member is not None else "")
        joined = self._joined(node, cfg)
        if not self.world.is_zero:
            skipped = self.coordinator.broadcast(None)
            return skipped or self._finish(*self._call(self._begin(node, cfg, member, run, label), label))
        run.path.mkdir(parents=True, exist_ok=True)
        shared = stage_kind(node.kind).shared
        with run.lock(on_wait=lambda: self.console.print(f"{label}: waiting for another podium process")):
            skipped = self._skip(node, member, run, force, label)
            if not skipped and stage_kind(node.kind).uses_data and not self._data_checked:
                self.check_data()
                self._data_checked = True
            if joined:
                self.coordinator.broadcast(skipped)
            if skipped:
                return skipped
            ctx = self._begin(node, cfg, member, run, label)
            if not shared:
                return self._finish(*self._call(ctx, label))
        called = self._call(ctx, label, relock=True)
        with run.lock():
            return self._finish(*called)

    def _skip(self, node: StageNode, member: int | None, run: StageRun, force: bool,
              label: str) -> StageOutcome | None:
        """The outcome of a finished stage whose outputs verify; otherwise clear the way for a run."""
        manifest = run.read_manifest()
        if manifest.get("status") == "done" and not force:
            try:
                run.verify_outputs()
                self.console.print(f"[green]✓[/green] {label} done ({run.path.name}), skipped")
                return StageOutcome(node.name, member, run.path.name, "skipped",
                                    metrics=manifest.get("metrics", {}), path=run.path)
            except CorruptFileError as e:
                self.console.print(f"[yellow]{label}: {e}; running the stage again[/yellow]")
                force = True
        if force:
            for child in run.path.iterdir():
                if child.name != ".lock":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        return None

    def _begin(self, node, cfg, member, run, label) -> StageContext:
        manifest = run.read_manifest()
        attempts = manifest.get("attempts", [])
        attempts.append({"started": now(), "pid": os.getpid(), "processes": self.world.size})
        upstream = {d: self.runs_of(d) for d in node.needs}
        manifest.update({
            "recipe": self.recipe.name, "stage": node.name, "kind": node.kind, "task": node.task,
            "member": member, "hash": run.path.name, "status": "running",
            "seed": stage_seed(self.recipe, cfg), "config": cfg.model_dump(mode="json"),
            "upstream": {d: [r.path.name for r in rs] for d, rs in upstream.items()},
            "versions": versions(), "attempts": attempts,
        })
        manifest.setdefault("started", attempts[0]["started"])
        run.write_manifest(manifest)
        resumed = " (resuming)" if len(attempts) > 1 else ""
        self.console.print(f"[bold]▶ {label}[/bold] {node.kind} → {run.path}{resumed}")
        return StageContext(self.recipe, node, cfg, member, run, self.store, stage_seed(self.recipe, cfg),
                            upstream, self.console, self.data_root(), self.world, len(attempts) - 1)

    def _call(self, ctx: StageContext, label: str, relock: bool = False) -> tuple[StageContext, dict, float, str]:
        """Run the stage kind; a failure is recorded in the manifest (under the lock again when the
        kind ran outside it) and raised."""
        t0 = time.perf_counter()
        try:
            metrics = stage_kind(ctx.node.kind).run(ctx) or {}
        except BaseException as e:
            with ctx.run.lock() if relock else contextlib.nullcontext():
                failed = ctx.run.read_manifest()
                if failed and ctx.run.writer:
                    failed["status"] = "failed"
                    failed["attempts"][ctx.attempt].update(ended=now(), error=f"{type(e).__name__}: {e}",
                                                           traceback=traceback.format_exc(limit=20))
                    ctx.run.write_manifest(failed)
            raise
        return ctx, metrics, time.perf_counter() - t0, label

    def _finish(self, ctx: StageContext, metrics: dict, seconds: float, label: str) -> StageOutcome:
        done = ctx.run.read_manifest()
        if ctx.run.writer and done.get("status") != "done":  # a shared stage may have been finished by another process
            done["attempts"][ctx.attempt].update(ended=now(), seconds=round(seconds, 3))
            done.update(status="done", finished=now(), metrics=metrics)
            ctx.run.write_manifest(done)
        self.console.print(f"[green]✓[/green] {label} finished in {seconds:.1f}s")
        return StageOutcome(ctx.name, ctx.member, ctx.run.path.name, "done", seconds, done.get("metrics", metrics),
                            ctx.run.path)
