"""Core acceptance: exact resume after SIGKILL, checksums, partial re-runs, determinism, locking."""

import csv
import json
import random
import signal
import time

import pytest
import torch
from rich.console import Console

import podium
from podium.errors import CorruptFileError
from podium.store import RunStore

from .conftest import podium_cli, podium_popen

QUIET = Console(quiet=True)


def stage_dir(store, stage):
    dirs = [p for p in (store / "tiny" / stage).iterdir() if (p / "manifest.json").is_file()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def manifest(store, stage):
    return json.loads((stage_dir(store, stage) / "manifest.json").read_text())


def weights(store, stage, key):
    d = stage_dir(store, stage)
    entry = manifest(store, stage)["checkpoints"][key]
    return torch.load(d / entry["file"], weights_only=True)["state_dict"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def metrics_rows(store, stage="fit"):
    with open(stage_dir(store, stage) / "logs" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def run(recipe, store, *overrides, **kw):
    return podium.run(recipe, list(overrides), store=store, console=QUIET, report=False, **kw)


def test_sigkill_then_rerun_is_bit_identical(tiny_recipe, tmp_path):
    slow = ["stages.fit.sleep=0.03", "stages.fit.trainer.max_epochs=5"]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    run(tiny_recipe, ref, *slow, only=["data", "fit"])

    rng = random.Random(1234)
    for kill_round in range(2):
        proc = podium_popen("run", str(tiny_recipe), "--only", "data", "--only", "fit", *slow, store=killed)
        deadline = time.time() + 120
        while time.time() < deadline:
            fit = killed / "tiny" / "fit"
            ms = [json.loads(p.read_text()) for p in fit.glob("*/manifest.json")] if fit.is_dir() else []
            done_epochs = [k for m in ms for k in m.get("checkpoints", {}) if k.startswith("epoch=")]
            if len(done_epochs) > kill_round:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    out = podium_cli("run", str(tiny_recipe), "--only", "data", "--only", "fit", *slow, store=killed, check=True)
    assert "resuming from" in out.stdout

    m = manifest(killed, "fit")
    assert m["status"] == "done" and len(m["attempts"]) >= 2
    assert_same_weights(weights(ref, "fit", "epoch=5"), weights(killed, "fit", "epoch=5"))
    assert_same_weights(weights(ref, "fit", "best"), weights(killed, "fit", "best"))
    rows = metrics_rows(killed)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert rows == metrics_rows(ref)


def test_same_recipe_twice_from_scratch_is_identical(tiny_recipe, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ra, rb = run(tiny_recipe, a), run(tiny_recipe, b)
    assert_same_weights(weights(a, "fit", "best"), weights(b, "fit", "best"))
    assert_same_weights(weights(a, "fit", "epoch=6"), weights(b, "fit", "epoch=6"))
    assert metrics_rows(a) == metrics_rows(b)
    assert ra.leaderboard == rb.leaderboard
    assert ra.leaderboard["score"]["blend"]["accuracy"] > 0.8
    assert [o.hash for o in ra.outcomes] == [o.hash for o in rb.outcomes]
    assert ra.submission.read_bytes() == rb.submission.read_bytes()


def test_downstream_change_reruns_only_it_and_dependents(tiny_recipe, tmp_path):
    store = tmp_path / "s"
    first = run(tiny_recipe, store)
    assert all(o.state == "done" for o in first.outcomes)
    before = {s: manifest(store, s)["attempts"] for s in ("data", "fit", "pred", "pred_last")}
    second = run(tiny_recipe, store, "stages.blend.inputs.pred=1.0")
    states = {o.stage: o.state for o in second.outcomes}
    assert states == {"data": "skipped", "fit": "skipped", "pred": "skipped", "pred_last": "skipped",
                      "blend": "done", "score": "done", "submission": "done"}
    assert {s: manifest(store, s)["attempts"] for s in before} == before
    assert len(list((store / "tiny" / "blend").iterdir())) == 2
    third = run(tiny_recipe, store, "stages.blend.inputs.pred=1.0")
    assert {o.state for o in third.outcomes} == {"skipped"}


def test_corrupt_checkpoint_falls_back_or_stops_naming_the_file(tiny_recipe, tmp_path):
    store = tmp_path / "s"
    ref = tmp_path / "ref"
    run(tiny_recipe, ref, only=["data", "fit"])
    run(tiny_recipe, store, only=["data", "fit"])
    fit = stage_dir(store, "fit")
    m = manifest(store, "fit")
    last = fit / m["checkpoints"]["epoch=6"]["file"]
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0x40
    last.write_bytes(bytes(data))
    m["status"] = "running"
    (fit / "manifest.json").write_text(json.dumps(m))
    console = Console(record=True, width=200)
    podium.run(tiny_recipe, [], store=store, console=console, report=False, only=["fit"])
    log = console.export_text()
    assert f"{last}: checksum mismatch" in log and "falling back" in log and "epoch 5 of 6" in log
    assert_same_weights(weights(ref, "fit", "epoch=6"), weights(store, "fit", "epoch=6"))

    best = fit / manifest(store, "fit")["checkpoints"]["best"]["file"]
    best.write_bytes(best.read_bytes()[:1000])
    with pytest.raises(CorruptFileError, match=f"{best}: checksum mismatch"):
        run(tiny_recipe, store, only=["pred"])
    proc = podium_cli("run", str(tiny_recipe), "--only", "pred", store=store)
    assert proc.returncode == 2 and best.name in proc.stderr.replace("\n", "")
    assert not list((store / "tiny" / "pred").glob("*/predictions.npz"))


def test_two_concurrent_runs_never_train_a_stage_twice(tiny_recipe, tmp_path):
    store = tmp_path / "s"
    args = ("run", str(tiny_recipe), "stages.fit.sleep=0.02", "stages.fit.trainer.max_epochs=3")
    procs = [podium_popen(*args, store=store) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(manifest(store, "fit")["attempts"]) == 1
    assert sum("▶ fit train" in o for o in outs) == 1
    assert len(manifest(store, "submission")["attempts"]) == 1


def test_sweep_members_run_alone_and_init_from_epoch(tiny_recipe, tmp_path):
    store = tmp_path / "s"
    text = tiny_recipe.read_text().replace(
        "  pred: {kind: predict, model: fit@best}",
        "  sweep: {kind: train, members: {seed: [1, 2]}, trainer: {max_epochs: 2}}\n"
        "  warm: {kind: train, init: fit@epoch=3, lr: 0.0, trainer: {max_epochs: 1}}\n"
        "  pred: {kind: predict, model: fit@best}")
    tiny_recipe.write_text(text)
    out = run(tiny_recipe, store, only=["data", "sweep"], member=1)
    assert [(o.stage, o.member) for o in out.outcomes] == [("data", None), ("sweep", 1)]
    rows = {r.stage: r.state for r in podium.status(tiny_recipe, store=store)}
    assert rows["sweep"] == "1/2 done" and rows["fit"] == "missing"
    run(tiny_recipe, store, only=["sweep"])
    seeds = sorted(json.loads(p.read_text())["seed"] for p in (store / "tiny" / "sweep").glob("*/manifest.json"))
    assert seeds == [1, 2]
    run(tiny_recipe, store, only=["fit", "warm"])
    fit_e3 = weights(store, "fit", "epoch=3")
    warm = weights(store, "warm", "epoch=1")
    assert_same_weights(fit_e3, warm)


def test_init_state_full_continues_a_run_from_its_epoch(tiny_recipe, tmp_path):
    """A restart from epoch N (sMaRtIfy's "resume at epoch 20") carries the optimizer, scheduler and epoch
    counter: the continued stage ends where the original did, bit for bit."""
    store = tmp_path / "s"
    text = tiny_recipe.read_text().replace(
        "  pred: {kind: predict, model: fit@best}",
        "  contd: {kind: train, init: fit@epoch=3, init_state: full, trainer: {max_epochs: 6, batch_size: 32}}\n"
        "  pred: {kind: predict, model: fit@best}")
    tiny_recipe.write_text(text)
    run(tiny_recipe, store, only=["data", "fit", "contd"])
    assert_same_weights(weights(store, "fit", "epoch=6"), weights(store, "contd", "epoch=6"))
    assert "epoch=3" not in manifest(store, "contd")["checkpoints"]
    assert metrics_rows(store, "contd") == metrics_rows(store, "fit")[3:]


def test_a_sweep_initialised_from_a_sweep_pairs_the_members(tiny_recipe, tmp_path):
    store = tmp_path / "s"
    text = tiny_recipe.read_text().replace(
        "  pred: {kind: predict, model: fit@best}",
        "  sweep: {kind: train, members: {seed: [1, 2]}, trainer: {max_epochs: 2}}\n"
        "  again: {kind: train, init: sweep@last, members: {seed: [1, 2]}, lr: 0.0, trainer: {max_epochs: 1}}\n"
        "  one: {kind: train, init: 'sweep[1]@epoch=1', lr: 0.0, trainer: {max_epochs: 1}}\n"
        "  pred: {kind: predict, model: 'sweep[0]@last'}")
    tiny_recipe.write_text(text)
    run(tiny_recipe, store, only=["data", "sweep", "again", "one", "pred"])
    runs = {stage: sorted((store / "tiny" / stage).glob("*/manifest.json")) for stage in ("sweep", "again")}

    def member_weights(stage: str, member: int, key: str) -> dict:
        (path,) = [p for p in runs[stage] if json.loads(p.read_text())["member"] == member]
        entry = json.loads(path.read_text())["checkpoints"][key]
        return torch.load(path.parent / entry["file"], weights_only=True)["state_dict"]

    for member in (0, 1):
        assert_same_weights(member_weights("sweep", member, "epoch=2"), member_weights("again", member, "epoch=1"))
    assert_same_weights(member_weights("sweep", 1, "epoch=1"), weights(store, "one", "epoch=1"))
    assert manifest(store, "pred")["config"]["model"] == "sweep[0]@last"


def test_compare_reports_first_differing_epoch(tiny_recipe, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run(tiny_recipe, a, "stages.fit.trainer.max_epochs=3", only=["data", "fit"])
    run(tiny_recipe, b, "stages.fit.trainer.max_epochs=3", only=["data", "fit"])
    same = podium.compare(stage_dir(a, "fit"), stage_dir(b, "fit"))
    assert same.epochs == 3 and all(v is None for v in same.first_difference.values())
    assert same.max_abs_difference["train_loss"] == 0.0
    run(tiny_recipe, b, "stages.fit.trainer.max_epochs=3", "stages.fit.lr=0.01", only=["fit"])
    other = [p for p in (b / "tiny" / "fit").iterdir() if p.name != stage_dir(a, "fit").name]
    diff = podium.compare(stage_dir(a, "fit"), other[0])
    assert diff.first_difference["train_loss"] == 1
    with open(other[0] / "logs" / "metrics.csv") as f:
        ra, rb = metrics_rows(a), list(csv.DictReader(f))
    expected = max(abs(float(x["train_loss"]) - float(y["train_loss"])) for x, y in zip(ra, rb, strict=True))
    assert diff.max_abs_difference["train_loss"] == expected


def test_relative_store_path(tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = podium.run(tiny_recipe, [], store="relative-runs", console=QUIET, report=False, only=["data"])
    assert out.outcomes[0].state == "done"
    listing = stage_dir(tmp_path / "relative-runs", "data") / "files.json"
    assert manifest(tmp_path / "relative-runs", "data")["outputs"].keys() == {"files.json"}
    assert list(json.loads(listing.read_text())) == ["test.csv", "train.csv", "val.csv"]


def test_status_cli_lists_every_stage(tiny_recipe, tmp_path, podium_main):
    store = tmp_path / "s"
    run(tiny_recipe, store, "stages.fit.trainer.max_epochs=2", only=["data", "fit"])
    code, out, _ = podium_main("status", str(tiny_recipe), "stages.fit.trainer.max_epochs=2", store=store)
    assert code == 0
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert "done" in lines["fit"] and "best_val_acc=" in lines["fit"]
    assert "missing" in lines["pred"]
    assert RunStore(store).stage_run("tiny", "fit", stage_dir(store, "fit").name).status == "done"


def test_pinned_threads_do_not_leak_into_the_rest_of_the_run(tiny_recipe, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        run(tiny_recipe, tmp_path / "s", "stages.fit.trainer.threads=1", "stages.fit.trainer.max_epochs=1")
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_a_best_found_at_an_epoch_end_is_that_epochs_file(tiny_recipe, tmp_path):
    run(tiny_recipe, tmp_path, "stages.fit.trainer.keep_last=1", only=["data", "fit"])
    ckpts = manifest(tmp_path, "fit")["checkpoints"]
    best = ckpts["best"]
    assert best["file"] == f"checkpoints/epoch={best['epoch']:04d}.ckpt" and best["monitor"] == "val_acc"
    assert set(ckpts) == {"best", "epoch=6"}
    on_disk = {p.name for p in (stage_dir(tmp_path, "fit") / "checkpoints").iterdir()}
    assert on_disk == {c["file"].removeprefix("checkpoints/") for c in ckpts.values()}, "pruning kept best's file"
    rows = metrics_rows(tmp_path)
    scores = [float(r["val_acc"]) for r in rows]
    assert best["epoch"] == scores.index(max(scores)) + 1 and best["score"] == pytest.approx(max(scores))


def test_best_checkpoint_by_a_training_metric_is_judged_at_each_epochs_end(tiny_recipe, tmp_path):
    """GeekSeek's rule: the best epoch is the lowest epoch-mean training loss, not a validation score."""
    store = tmp_path / "s"
    run(tiny_recipe, store, "stages.fit.trainer.monitor=train_loss", "stages.fit.trainer.mode=min",
        "stages.fit.trainer.save_every_n_epochs=2", only=["data", "fit"])
    rows = metrics_rows(store)
    losses = [float(r["train_loss"]) for r in rows]
    best = manifest(store, "fit")["checkpoints"]["best"]
    epoch = losses.index(min(losses)) + 1
    assert best["monitor"] == "train_loss" and best["epoch"] == epoch
    assert best["score"] == pytest.approx(min(losses), rel=1e-6)
    saved = manifest(store, "fit")["checkpoints"].get(f"epoch={epoch}")  # every second epoch is saved anyway
    assert best["file"] == (saved["file"] if saved else f"checkpoints/best-step={best['step']:07d}.ckpt")


def test_a_skipped_stage_rereads_only_outputs_written_since_they_verified(tiny_recipe, tmp_path, monkeypatch):
    """Skipping costs a stat per output (a feature store can hold 50 GiB); a rewritten output is read and,
    when damaged, its stage runs again; ``podium verify`` reads every byte, even of an output whose size
    and mtime were put back."""
    import os

    import podium.store

    store = tmp_path / "s"
    run(tiny_recipe, store, only=["data", "fit", "pred"])
    pred = stage_dir(store, "pred")
    hashed = []
    original = podium.store.sha256_file
    monkeypatch.setattr(podium.store, "sha256_file", lambda path: hashed.append(str(path)) or original(path))
    outcomes = run(tiny_recipe, store, only=["data", "fit", "pred"]).outcomes
    assert {o.state for o in outcomes} == {"skipped"} and hashed == []

    out = pred / next(iter(manifest(store, "pred")["outputs"]))
    st = out.stat()
    data = bytearray(out.read_bytes())
    data[-1] ^= 0x01
    out.write_bytes(bytes(data))
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same size and mtime: not read on a skip
    assert {o.state for o in run(tiny_recipe, store, only=["pred"]).outcomes} == {"skipped"} and hashed == []
    checked, damaged = podium.api.verify(tiny_recipe, store=store, stages=["pred"], progress=False)
    assert [str(out) in d.problem for d in damaged] == [True]

    out.write_bytes(bytes(data))  # written again (a new mtime): read, found damaged, the stage runs again
    (outcome,) = run(tiny_recipe, store, only=["pred"]).outcomes
    assert outcome.state == "done" and str(out) in hashed
    assert podium.api.verify(tiny_recipe, store=store, stages=["pred"], progress=False)[1] == []
