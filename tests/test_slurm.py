"""``podium slurm``: the array and dependent-job scripts run a sweep member per task on a shared store."""

import json
import os
import re
import subprocess

from .conftest import podium_cli
from .test_soup_search_stages import SWEEP, add_stages


def test_array_tasks_then_the_dependent_job_run_the_recipe(tiny_recipe, tmp_path):
    add_stages(tiny_recipe, SWEEP)
    store, out = tmp_path / "store", tmp_path / "slurm"
    proc = podium_cli("slurm", str(tiny_recipe), "--stage", "sweep", "--sbatch=--partition=cpu",
                      "stages.sweep.trainer.max_epochs=1", "--out", str(out), store=store, check=True)
    assert "submit with: bash" in proc.stdout
    array, after, submit = ((out / n).read_text() for n in ("sweep.sbatch", "after.sbatch", "submit.sh"))
    assert "#SBATCH --array=0-2\n" in array and "#SBATCH --partition=cpu\n" in array
    assert "#SBATCH --ntasks-per-node=1\n" in array and "--array" not in after
    assert "stages.sweep.trainer.max_epochs=1" in array
    assert '--only data --only sweep --member "$SLURM_ARRAY_TASK_ID"' in array
    assert re.search(r"sbatch --dependency=afterok:.* after\.sbatch", submit)
    assert all(os.access(out / n, os.X_OK) for n in ("sweep.sbatch", "after.sbatch", "submit.sh"))

    bin_dir = tmp_path / "bin"  # srun of a one-task step: run the command as it is
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_dir / "srun").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("PODIUM_HOME", None)
    for task in (2, 0, 1, 2):  # out of order, and task 2 twice: the second time it is found done
        ran = subprocess.run(["bash", str(out / "sweep.sbatch")], env={**env, "SLURM_ARRAY_TASK_ID": str(task)},
                             capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0, ran.stderr
    assert "sweep[2] done" in ran.stdout and "skipped" in ran.stdout
    ran = subprocess.run(["bash", str(out / "after.sbatch")], env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.count("skipped") >= 4, "data and the three members were found done"
    members = [json.loads(p.read_text()) for p in (store / "tiny" / "sweep").glob("*/manifest.json")]
    assert len(members) == 3 and all(m["status"] == "done" and len(m["attempts"]) == 1 for m in members)
    assert sorted(m["member"] for m in members) == [0, 1, 2]


def test_slurm_refuses_a_stage_that_is_not_a_sweep(tiny_recipe, tmp_path, podium_main):
    code, _, stderr = podium_main("slurm", str(tiny_recipe), "--stage", "fit", store=tmp_path)
    assert code == 2 and "'fit' is not a sweep" in " ".join(stderr.split())
