"""``synth``: write the task's synthetic data set in the competition's real on-disk layout.

Every file of the data set is recorded (name, size, sha256) in the stage's listing, ``files.json``.
Before a later stage reads the data the runner checks it against the listing (re-reading only files
written since they last verified) and regenerates damaged synthetic files: a task's synthesis is
deterministic and writes only the files that are missing, so deleting a file and synthesising again
gives it back byte for byte.

With ``data.root`` set in the recipe the stage writes no data: it checks the real data and records
the task's files of it, once; the stage's hash covers their names and sizes, so new data re-runs
everything downstream, and a file damaged later stops the run naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from podium.engine.progress import progress_bar
from podium.recipe import StageConfig
from podium.registry import register_stage
from podium.store import remove_stale_temps


class SynthConfig(StageConfig):
    kind: Literal["synth"] = "synth"


def _record(ctx, root: Path, files: list[Path]) -> int:
    with progress_bar() as bar:
        task = bar.add_task(f"checksums {root.name}", total=len(files))
        return ctx.run.record_files(root, files, lambda n: bar.advance(task, n))


@register_stage("synth", SynthConfig, version=2, uses_data=False)
def run(ctx) -> dict:
    if ctx.recipe.data_root is not None:
        root = Path(ctx.recipe.data_root)
        count = _record(ctx, root, ctx.task.check_data(root))
        ctx.info(f"using real data at {root} ({count} files checked and recorded)")
        return {"files": count}
    out = ctx.run.path / "data"
    ctx.task.synth(ctx.cfg, out, ctx.seed)
    for folder in [out, *(p for p in out.rglob("*") if p.is_dir())]:
        remove_stale_temps(folder)  # a killed attempt's partial writes are not part of the data set
    count = _record(ctx, out, sorted(p for p in out.rglob("*") if p.is_file()))
    ctx.info(f"synthetic data in {out} ({count} files recorded)")
    return {"files": count}
