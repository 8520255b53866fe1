"""SLURM batch scripts for a sweep: one array task per member, then a job for everything after it.

Each array task runs its member and the stages the sweep needs (under their locks, the first task to
get there runs them and the others find them done).

Members share the run store, so a finished member is skipped and a killed one resumes when its array
task runs again; the dependent job starts once every member succeeded and runs the rest of the recipe
(the members are found done). The scripts call this Python (``sys.executable -m podium``), so they work
without activating the environment on the compute nodes.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from podium.engine.distributed import SINGLE, stage_processes
from podium.errors import ConfigError
from podium.recipe import Recipe, StageConfig


def _resources(cfgs: Sequence[StageConfig]) -> list[str]:
    """Nodes, tasks per node and GPUs for the train configs a job runs (one task per process)."""
    trainers = [c.trainer for c in cfgs if hasattr(c, "trainer")]
    nodes = max((t.num_nodes for t in trainers), default=1)
    per_node = max((stage_processes(t.devices, 1, SINGLE) for t in trainers), default=1)
    lines = [f"--nodes={nodes}", f"--ntasks-per-node={per_node}"]
    if any(t.accelerator in ("gpu", "cuda") for t in trainers):
        lines.append(f"--gpus-per-node={per_node}")
    return lines


def _script(name: str, sbatch: Sequence[str], command: str) -> str:
    head = "".join(f"#SBATCH {opt}\n" for opt in [f"--job-name={name}", *sbatch])
    return f"#!/usr/bin/env bash\n{head}set -euo pipefail\n{command}\n"


def slurm_scripts(recipe: Recipe, stage: str, profile: str | None, overrides: Sequence[str],
                  options: Sequence[str], store: Path, workdir: Path) -> dict[str, str]:
    """``{file name: text}``: ``<stage>.sbatch`` (the array), ``after.sbatch`` and ``submit.sh``."""
    if stage not in recipe.stages:
        raise ConfigError(f"--stage: unknown stage {stage!r} (stages: {', '.join(recipe.stages)})")
    node = recipe.stages[stage]
    if not node.is_sweep:
        raise ConfigError(f"--stage: {stage!r} is not a sweep (a train stage with members:); "
                          "run it with `podium run RECIPE --only STAGE`")
    source = recipe.source.resolve() if recipe.source else Path(f"{recipe.name}.yaml")
    podium = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "podium", "run", str(source),
                                               *(["--profile", profile] if profile else []), *overrides])
    logs = store / recipe.name / "slurm"
    common = [f"--chdir={workdir}", *options]
    export = f"export PODIUM_HOME={shlex.quote(str(store))}"
    after = [s for s in recipe.order if s != stage]
    # each task also runs what the sweep needs: the first to get there does it, the others find it done
    only = " ".join(f"--only {s}" for s in recipe.order if s in _ancestors(recipe, stage) or s == stage)
    array = _script(f"{recipe.name}-{stage}", [f"--array=0-{len(node.configs) - 1}", *_resources(node.configs),
                                              f"--output={logs}/%x-%A_%a.out", *common],
                    f"{export}\nsrun {podium} {only} --member \"$SLURM_ARRAY_TASK_ID\"")
    rest = _script(f"{recipe.name}-after-{stage}",
                   [*_resources([c for s in after for c in recipe.stages[s].configs]), f"--output={logs}/%x-%j.out",
                    *common],
                   f"{export}\nsrun {podium}")
    submit = ("#!/usr/bin/env bash\n# the member array, then the rest of the recipe once every member succeeded\n"
              f"set -euo pipefail\ncd \"$(dirname \"$0\")\"\nmkdir -p {shlex.quote(str(logs))}\n"
              f"array=$(sbatch --parsable {stage}.sbatch)\n"
              "sbatch --dependency=afterok:\"${array%%;*}\" after.sbatch\n")
    return {f"{stage}.sbatch": array, "after.sbatch": rest, "submit.sh": submit}


def _ancestors(recipe: Recipe, stage: str) -> set[str]:
    found: set[str] = set()
    todo = list(recipe.stages[stage].needs)
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(recipe.stages[name].needs)
    return found
