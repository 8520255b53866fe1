"""Training on several processes (CPU, gloo): the three launch forms, exact resume after killing every
rank, validation that means the same on 1 or N processes, failures that stop every rank, refused
strategies, and one Optuna study shared by concurrent processes."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import podium
from podium.engine.distributed import World, detect_world, stage_processes
from podium.engine.seeding import EpochSampler, derive_seed
from podium.errors import LaunchRequired

from .conftest import REPO, podium_cli
from .test_runner import QUIET, assert_same_weights, manifest, metrics_rows, stage_dir, weights

DDP = ["stages.fit.trainer.devices=2", "stages.fit.trainer.accelerator=cpu", "stages.fit.trainer.max_epochs=5",
       "stages.fit.sleep=0.1"]
STAGES = ["--only", "data", "--only", "fit"]


def env_for(store, **extra):
    """One thread per rank, as podium's own launch gives each of 2 ranks on 2 cores (the last bits of a
    result depend on the thread count); no launcher variables inherited from the outside."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_"))
             and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    return {**clean, "PODIUM_HOME": str(store), "COLUMNS": "200", "OMP_NUM_THREADS": "1", **extra}


def podium_args(recipe, *extra):
    return ["-m", "podium", "run", str(recipe), *STAGES, *DDP, *extra]


def run_plain(recipe, store, *extra, **kwargs):
    return subprocess.run([sys.executable, *podium_args(recipe, *extra)], env=env_for(store), cwd=REPO,
                          capture_output=True, text=True, timeout=300, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 2-process run started by a plain ``podium run``."""
    from .conftest import TESTS

    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "tinytask.py").write_text((TESTS / "tinytask.py").read_text())
    (tmp / "tiny.yaml").write_text((TESTS / "recipes" / "tiny.yaml").read_text().replace("../tinytask.py",
                                                                                         "tinytask.py"))
    store = tmp / "store"
    proc = ok(run_plain(tmp / "tiny.yaml", store))
    return tmp / "tiny.yaml", store, proc


def test_plain_podium_run_trains_on_two_processes_once(reference):
    _, store, proc = reference
    assert "starting 2 processes" in proc.stdout
    m = manifest(store, "fit")
    assert m["status"] == "done" and len(m["attempts"]) == 1 and m["attempts"][0]["processes"] == 2
    rows = metrics_rows(store)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    # 256 points, batch 32 per process, 2 processes: 4 optimizer steps per epoch (8 on one process)
    assert [int(r["step"]) for r in rows] == [4, 8, 12, 16, 20]
    assert proc.stdout.count("fit: epoch 5:") == 1, "only rank 0 reports"
    files = sorted(p.name for p in (stage_dir(store, "fit") / "checkpoints").iterdir())
    assert files == sorted({c["file"].split("/")[-1] for c in m["checkpoints"].values()}), "written once"


def test_torchrun_and_srun_give_the_same_weights(reference, tmp_path):
    recipe, store, _ = reference
    torchrun = tmp_path / "torchrun"
    ok(subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                       *podium_args(recipe)], env=env_for(torchrun), cwd=REPO, capture_output=True, text=True,
                      timeout=300))
    srun = tmp_path / "srun"
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, *podium_args(recipe)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=env_for(srun, SLURM_NTASKS="2", SLURM_PROCID=str(r), SLURM_LOCALID=str(r),
                                          SLURM_NODEID="0", SLURM_NTASKS_PER_NODE="2", SLURM_NNODES="1",
                                          SLURM_JOB_ID="4242", SLURM_JOB_NAME="podium",
                                          SLURM_NODELIST="127.0.0.1", MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for r in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for other in (torchrun, srun):
        assert len(manifest(other, "fit")["attempts"]) == 1
        assert_same_weights(weights(store, "fit", "epoch=5"), weights(other, "fit", "epoch=5"))
        assert metrics_rows(other) == metrics_rows(store)


def test_kill_every_rank_then_resume_is_identical(reference, tmp_path):
    recipe, store, _ = reference
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *podium_args(recipe)], env=env_for(killed), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        fit = killed / "tiny" / "fit"
        ms = [json.loads(p.read_text()) for p in fit.glob("*/manifest.json")] if fit.is_dir() else []
        if any("epoch=2" in m.get("checkpoints", {}) for m in ms):
            break
        time.sleep(0.02)
    time.sleep(random.Random(7).uniform(0.0, 0.6))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert manifest(killed, "fit")["status"] == "running"
    out = ok(run_plain(recipe, killed))
    assert "resuming from" in out.stdout
    m = manifest(killed, "fit")
    assert m["status"] == "done" and len(m["attempts"]) == 2
    for key in ("epoch=5", "best"):
        assert_same_weights(weights(store, "fit", key), weights(killed, "fit", key))
    assert metrics_rows(killed) == metrics_rows(store)


def test_validation_is_the_whole_set_and_best_is_its_argmax(reference):
    recipe, store, _ = reference
    from .tinytask import MLP, _load

    x, y = _load(stage_dir(store, "data") / "data" / "val.csv")
    model = MLP(16, 0.2).eval()
    rows = metrics_rows(store)
    for row in rows:
        state = weights(store, "fit", f"epoch={row['epoch']}")
        model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
        with torch.no_grad():
            acc = (model(torch.tensor(x, dtype=torch.float32)).argmax(1).numpy() == y).mean()
        assert float(row["val_acc"]) == pytest.approx(acc, abs=1e-7)
    scores = [float(r["val_acc"]) for r in rows]
    assert manifest(store, "fit")["checkpoints"]["best"]["epoch"] == int(np.argmax(scores)) + 1


def test_a_failing_rank_stops_every_rank(reference, tmp_path):
    recipe, _, _ = reference
    t0 = time.time()
    proc = run_plain(recipe, tmp_path / "s", "stages.fit.fail_on_rank=1")
    assert proc.returncode != 0 and time.time() - t0 < 120
    assert "injected failure on rank 1" in proc.stdout + proc.stderr
    assert manifest(tmp_path / "s", "fit")["status"] != "done"

    proc = run_plain(recipe, tmp_path / "t", "stages.data.fail=true")
    assert proc.returncode == 2, proc.stderr
    assert "injected synth failure" in proc.stderr and "data failed on rank 0" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("strategy, hint", [("ddp_spawn", "use 'ddp'"), ("ddp_notebook", "use 'ddp'"),
                                            ("fsdp", "sharded checkpoints"), ("deepspeed_stage_2", "sharded"),
                                            ("horovod", "expected one of auto, ddp")])
def test_refused_strategies_exit_2_naming_the_path(tiny_recipe, tmp_path, podium_main, strategy, hint):
    code, _, stderr = podium_main("run", str(tiny_recipe), f"stages.fit.trainer.strategy={strategy}",
                                  "stages.fit.trainer.devices=2", store=tmp_path / "s")
    stderr = " ".join(stderr.split())
    assert code == 2
    assert f"stages.fit.trainer.strategy: {strategy!r}" in stderr or "unknown strategy" in stderr
    assert "stages.fit.trainer.strategy" in stderr and hint in stderr and "Traceback" not in stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("overrides, message", [
    (["stages.fit.members={trainer.devices: [2, 3]}"], "want different numbers of processes"),
    (["stages.fit.trainer.num_nodes=2"], "start podium with srun"),
    (["stages.tune.trial.trainer.devices=2"], "a trial trains in one process"),
])
def test_process_counts_that_cannot_work_exit_2(tiny_recipe, tmp_path, podium_main, overrides, message):
    tiny_recipe.write_text(tiny_recipe.read_text().replace("\nprofiles:", SEARCH + "profiles:"))
    code, _, stderr = podium_main("run", str(tiny_recipe), *overrides, store=tmp_path / "s")
    stderr = " ".join(stderr.split())
    assert code == 2 and message in stderr and "Traceback" not in stderr, stderr


def test_python_api_asks_for_a_launcher(tiny_recipe, tmp_path):
    with pytest.raises(LaunchRequired, match="torchrun --nproc-per-node 2"):
        podium.run(tiny_recipe, ["stages.fit.trainer.devices=2"], store=tmp_path, console=QUIET)
    assert not tmp_path.joinpath("tiny").exists()


def test_epoch_sampler_shards_one_order_without_changing_sample_seeds():
    single = list(EpochSampler(10, seed=3, shuffle=True))
    for epoch in (0, 1):
        full = EpochSampler(10, seed=3)
        full.set_epoch(epoch)
        order = [key.index for key in full]
        shards = []
        for rank in range(3):
            s = EpochSampler(10, seed=3, rank=rank, world_size=3)
            s.set_epoch(epoch)
            shards.append(list(s))
            assert len(shards[-1]) == len(s) == 4
            assert all(key == (key.index, derive_seed(3, "sample", epoch, key.index), epoch) for key in shards[-1])
        padded = order + order[:2]
        assert [shards[r][k][0] for k in range(4) for r in range(3)] == padded
    assert single == [(i, derive_seed(3, "sample", 0, i), 0) for i, _, _ in single]


def test_detect_world_reads_each_launcher():
    assert detect_world({}) == World()
    assert detect_world({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}) == \
        World(3, 8, 1, 4, "torchrun")
    slurm = {"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "4(x2)",
             "SLURM_JOB_NAME": "train"}
    assert detect_world(slurm) == World(5, 8, 1, 4, "slurm")
    assert detect_world(slurm).num_nodes == 2
    assert detect_world({**slurm, "SLURM_JOB_NAME": "interactive"}) == World()
    assert stage_processes("auto", 1, World(0, 4, 0, 4, "torchrun")) == 4
    assert stage_processes("auto", 1, World()) == 1
    assert stage_processes([0, 1], 2, World()) == 4
    assert stage_processes("0,1,2", 1, World()) == 3


SEARCH = """
  tune:
    kind: search
    n_trials: 6
    trial: {trainer: {max_epochs: 2}, sleep: 0.05}
    space: {lr: {type: float, low: 0.001, high: 0.5, log: true}}
"""


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_concurrent_search_processes_share_one_study(tiny_recipe, tmp_path, storage):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    tiny_recipe.write_text(tiny_recipe.read_text().replace("\nprofiles:", SEARCH + "profiles:"))
    store = tmp_path / "s"
    extra = ["stages.tune.storage=journal"] if storage == "journal" else []
    ok(podium_cli("run", str(tiny_recipe), "--only", "data", store=store))
    procs = [subprocess.Popen([sys.executable, "-m", "podium", "run", str(tiny_recipe), "--only", "tune", *extra],
                              env=env_for(store), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    if storage == "journal":
        (path,) = (store / "tiny" / "tune").glob("optuna.journal")
        backend = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    else:
        (path,) = (store / "tiny" / "tune").glob("optuna.db")
        backend = f"sqlite:///{path}"
    (name,) = optuna.get_all_study_names(backend)
    trials = optuna.load_study(study_name=name, storage=backend).trials
    kept = [t for t in trials if t.state != optuna.trial.TrialState.FAIL]
    assert len(kept) == 6 and all(t.state.is_finished() for t in kept)
    assert len({t.user_attrs["owner"][1] for t in kept}) == 2, "both processes ran trials"
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    m = manifest(store, "tune")
    assert m["status"] == "done" and m["trials"] == 6
    best = json.loads((stage_dir(store, "tune") / "best.json").read_text())
    assert [t["number"] for t in best["trials"]] == [t.number for t in kept]
    assert {(t["number"], t["value"]) for t in best["trials"]} == {(t.number, t.value) for t in kept}


def test_a_killed_search_process_leaves_no_trial_running_forever(tiny_recipe, tmp_path):
    import optuna

    tiny_recipe.write_text(tiny_recipe.read_text().replace("\nprofiles:", SEARCH.replace("n_trials: 6", "n_trials: 2")
                                                           + "profiles:"))
    store = tmp_path / "s"
    ok(podium_cli("run", str(tiny_recipe), "--only", "data", store=store))
    proc = subprocess.Popen([sys.executable, "-m", "podium", "run", str(tiny_recipe), "--only", "tune"],
                            env=env_for(store), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((store / "tiny" / "tune").glob("*/trials/0000/logs/metrics.csv")):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    ok(podium_cli("run", str(tiny_recipe), "--only", "tune", store=store))
    (db,) = (store / "tiny" / "tune").glob("optuna.db")
    (name,) = optuna.get_all_study_names(f"sqlite:///{db}")
    states = [t.state.name for t in optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials]
    assert states[0] == "FAIL" and states.count("COMPLETE") + states.count("PRUNED") == 2
    assert "RUNNING" not in states and manifest(store, "tune")["status"] == "done"
