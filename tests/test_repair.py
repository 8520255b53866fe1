"""Damaged data: synthetic files are regenerated alone and verified; real ones stop the run naming them."""

import shutil
from pathlib import Path

import h5py
import pytest
from rich.console import Console

import podium
from podium import api
from podium.errors import CorruptFileError, DataError
from podium.recipe import load_recipe
from podium.registry import get_task
from podium.runner import Runner
from podium.store import RunStore

from .conftest import podium_cli

REPO = Path(__file__).resolve().parents[1]


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def only_dir(path: Path) -> Path:
    (found,) = [p for p in path.iterdir() if (p / "manifest.json").is_file()]
    return found


def test_damaged_synthetic_file_is_found_then_regenerated_and_the_run_matches(tiny_recipe, tmp_path):
    ref, store = tmp_path / "ref", tmp_path / "s"
    podium_cli("run", str(tiny_recipe), store=ref, check=True)
    podium_cli("run", str(tiny_recipe), "--only", "data", store=store, check=True)
    data = only_dir(store / "tiny" / "data") / "data"
    flip(data / "val.csv", 50)
    (data / "test.csv").unlink()
    out = podium_cli("verify", str(tiny_recipe), store=store)
    assert out.returncode == 2 and "2 of 4 recorded files are damaged" in " ".join(out.stderr.split())

    out = podium_cli("run", str(tiny_recipe), store=store, check=True)
    log = " ".join(out.stdout.split())
    assert "data: 2 synthetic data file(s) damaged, regenerating them" in log
    assert f"{data / 'val.csv'}: checksum mismatch" in log and f"{data / 'test.csv'}: missing" in log
    assert "data: 2 file(s) regenerated and verified" in log
    assert tree(data) == tree(only_dir(ref / "tiny" / "data") / "data")
    for stage, name in (("submission", "submission.csv"), ("pred", "predictions.npz")):
        assert (only_dir(store / "tiny" / stage) / name).read_bytes() == (
            only_dir(ref / "tiny" / stage) / name).read_bytes()
    podium_cli("verify", str(tiny_recipe), store=store, check=True)

    predictions = only_dir(store / "tiny" / "pred") / "predictions.npz"  # a stage output: recomputed, never used
    expected = predictions.read_bytes()
    flip(predictions, 40)
    out = podium_cli("run", str(tiny_recipe), store=store, check=True)
    log = " ".join(out.stdout.split())
    assert f"{predictions}: checksum mismatch" in log and "running the stage again" in log
    assert predictions.read_bytes() == expected


def test_damage_that_synthesis_cannot_reproduce_stops_the_run(tiny_recipe, tmp_path, monkeypatch):
    recipe = load_recipe(tiny_recipe)
    store = RunStore(tmp_path / "s")
    quiet = Console(quiet=True)
    podium.run(recipe, [], store=store, console=quiet, report=False, only=["data"])
    data = only_dir(store.root / "tiny" / "data") / "data"
    flip(data / "train.csv", 7)
    task = type(get_task("tiny"))
    monkeypatch.setattr(task, "synth", lambda self, cfg, out, seed: (out / "train.csv").write_text("0,1\n"))
    with pytest.raises(CorruptFileError, match=r"(?s)regenerated synthetic data does not match what stage 'data' "
                                               r"recorded .*train.csv: \d+ bytes, recorded with \d+"):
        podium.run(recipe, [], store=store, console=quiet, report=False, only=["fit"])
    assert not list((store.root / "tiny" / "fit").glob("*/manifest.json"))


def test_damaged_real_data_stops_with_exit_2_and_its_fingerprint_is_cached(tiny_recipe, tmp_path, monkeypatch):
    synthetic = tmp_path / "synthetic"
    podium_cli("run", str(tiny_recipe), "--only", "data", store=synthetic, check=True)
    real = tmp_path / "real"
    shutil.copytree(only_dir(synthetic / "tiny" / "data") / "data", real)
    store = tmp_path / "s"
    override = f"data.root={real}"

    calls = []
    recipe = load_recipe(tiny_recipe, overrides=[override])
    task = type(get_task("tiny"))
    original = task.check_data
    monkeypatch.setattr(task, "check_data", lambda self, root: calls.append(root) or original(self, root))
    quiet = Console(quiet=True)
    podium.run(recipe, [], store=store, console=quiet, report=False, only=["data"])
    Runner(recipe, RunStore(store), console=quiet)
    assert len(calls) == 2  # the first hash computation, and the stage itself; the second Runner used the cache
    (real / "notes.txt").write_text("a file the task does not read")
    Runner(recipe, RunStore(store), console=quiet)
    assert len(calls) == 3  # the listing changed: checked again, same fingerprint
    assert (only_dir(store / "tiny" / "data") / "manifest.json").is_file()

    flip(real / "val.csv", 50)
    with pytest.raises(DataError, match=r"1 file\(s\) of the data set at .* changed since stage 'data' recorded"):
        podium.run(recipe, [], store=store, console=quiet, report=False, only=["fit"])
    out = podium_cli("run", str(tiny_recipe), override, "--only", "fit", store=store)
    err = " ".join(out.stderr.split())
    assert out.returncode == 2 and f"{real / 'val.csv'}: checksum mismatch" in err and "--force data" in err
    assert "Traceback" not in out.stderr
    assert not list((store / "tiny" / "fit").glob("*/manifest.json"))
    assert (real / "val.csv").read_bytes() != (only_dir(synthetic / "tiny" / "data") / "data" / "val.csv").read_bytes()


SYNTH_ONLY = {
    "dirty-mnist": ["stages.data.num_images=12", "stages.data.num_val=4", "stages.data.num_test=4",
                    "stages.data.canvas_size=48", "stages.data.glyphs_per_letter=4"],
    "mask-soup": ["stages.data.num_people=4", "stages.data.num_eval_people=2", "stages.data.width=40",
                  "stages.data.height=48"],
    "fastmri-varnet": ["stages.data.num_train=1", "stages.data.num_val=1", "stages.data.num_leaderboard=1",
                       "stages.data.slices=3"],
}


def _damage(recipe: str, data: Path) -> list[str]:
    """Flip one byte in an image, a CSV and (MRI) an HDF5 chunk of each kind; delete one more file."""
    if recipe == "dirty-mnist":
        victims = [data / "dirty_mnist_2nd" / "00003.png", data / "val_dirty_mnist_2nd_answer.csv",
                   data / "mnist_data" / "train.csv"]
    elif recipe == "mask-soup":
        person = sorted((data / "train" / "images").iterdir())[1]
        victims = [sorted(person.iterdir())[2], data / "eval" / "info.csv", data / "train" / "train.csv"]
    else:
        victims = [data / "leaderboard" / "acc4" / "kspace" / "brain_test1.h5",
                   data / "val" / "image" / "knee_acc8_2.h5", data / "train" / "kspace" / "knee_acc4_1.h5"]
    for path in victims[:2]:
        if path.suffix == ".h5":
            with h5py.File(path, "r") as f:
                key = "kspace" if "kspace" in f else "image_label"
                offset = f[key].id.get_chunk_info(1).byte_offset + 20
        else:
            offset = path.stat().st_size // 2
        flip(path, offset)
    victims[2].unlink()
    return [p.relative_to(data).as_posix() for p in victims]


@pytest.mark.parametrize("name", list(SYNTH_ONLY))
def test_each_task_regenerates_damaged_synthetic_files_byte_for_byte(name, tmp_path):
    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml", profile="tiny", overrides=SYNTH_ONLY[name])
    store = RunStore(tmp_path / "s")
    quiet = Console(quiet=True)
    podium.run(recipe, [], store=store, console=quiet, report=False, only=["data"])
    runner = Runner(recipe, store, console=quiet)
    data = runner.data_root()
    before = tree(data)
    damaged = _damage(name, data)
    count, problems = api.verify(recipe, store=store, progress=False)
    assert sorted(p.problem.split(":")[0] for p in problems) == sorted(str(data / rel) for rel in damaged)
    assert count == len(before) + 1  # every data file and the listing

    assert sorted(runner.check_data()) == sorted(damaged)
    assert tree(data) == before
    assert runner.check_data() == {}
    assert api.verify(recipe, store=store, progress=False)[1] == []
