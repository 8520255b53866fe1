"""Fail fast: every problem a recipe has that can be seen without running a stage is reported when it
loads, all together, with exit 2, the file or dotted path, no traceback and nothing written."""

import sys
import time
from pathlib import Path

import pytest

from podium.cli import main

from .conftest import REPO

SEARCH = """
  tune:
    kind: search
    n_trials: 2
    trial: {trainer: {max_epochs: 1}}
    space: {lr: {type: float, low: 0.001, high: 0.5, log: true}}
"""
DIRTY, MASK, MRI = (str(REPO / "recipes" / f) for f in ("dirty-mnist.yaml", "mask-soup.yaml", "fastmri-varnet.yaml"))


def cli(monkeypatch, capsys, *argv) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["podium", *argv])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, " ".join(out.out.split()), " ".join(out.err.split())


def tiny(recipe: Path) -> str:
    recipe.write_text(recipe.read_text().replace("\nprofiles:", SEARCH + "profiles:"))
    return str(recipe)


def bad_space(recipe: Path) -> str:
    """A space key is a dotted path (``model.hidden``), which a command-line override cannot write."""
    space = SEARCH.replace("{lr: {type: float, low: 0.001, high: 0.5, log: true}}",
                           "{model.hidden: {type: categorical, choices: [wide]}}")
    recipe.write_text(recipe.read_text().replace("\nprofiles:", space + "profiles:"))
    return str(recipe)


def write(tmp: Path, text: str) -> str:
    path = tmp / "bad.yaml"
    path.write_text(text)
    return str(path)


# (recipe: "tiny" | a recipe path | a callable writing a file, overrides, expected fragments of stderr)
CASES = [
    ("yaml", [], ["bad.yaml", "line 3", "cannot parse"]),
    ("list", [], ["bad.yaml", "expected a mapping at the top of the recipe"]),
    ("empty", [], ["bad.yaml", "stages: the recipe has no stages"]),
    ("missing", [], ["nope.yaml: recipe file not found"]),
    ("tiny", ["stagez.fit.kind=train"], ["stagez: unknown key"]),
    ("tiny", ["seed=abc"], ["seed: Input should be a valid integer"]),
    ("tiny", ["data.rooot=/x"], ["data.rooot: unknown key"]),
    ("tiny", ["data.root=/no/such/folder"], ["data.root: /no/such/folder: no such directory"]),
    ("tiny", ["plugins=[nowhere.py]"], ["plugins[0]: cannot import 'nowhere.py'"]),
    ("tiny", ["stages.ghost.needs=[data]"], ["stages.ghost.kind: required key is missing"]),
    ("tiny", ["stages.fit.kind=trian"], ["stages.fit.kind: unknown stage kind 'trian'"]),
    ("tiny", ["stages.fit.trainer.precision=fp8"], ["stages.fit.trainer.precision: Input should be"]),
    ("tiny", ["stages.fit.trainer.strategy=ddp_spawn"], ["stages.fit.trainer.strategy", "use 'ddp'"]),
    ("tiny", ["stages.fit.trainer.strategy=fsdp"], ["stages.fit.trainer.strategy", "sharded checkpoints"]),
    ("tiny", ["stages.fit.members={nope: [1, 2]}"], ["stages.fit.nope: unknown key"]),
    ("tiny", ["stages.fit.members=[{lr: 0.1}, {lr: fast}]"], ["stages.fit.members[1].lr: Input should be a valid"]),
    ("tiny", ["stages.fit.members=[]"], ["stages.fit.members: expected a list of override maps"]),
    ("tiny", ["stages.pred.model=fit@epoch=9"], ["stages.pred.model: '@epoch=9' is past the end of 'fit'"]),
    ("tiny", ["stages.pred.model=fit@bestest"], ["stages.pred.model: bad selector '@bestest'"]),
    ("tiny", ["stages.pred.needs=[ghost]"], ["stages.pred.needs: unknown stage 'ghost'"]),
    ("tiny", ["stages.fit.init=pred@best"], ["stages.fit.init: 'pred' is a predict stage"]),
    ("tiny", ["stages.mix={kind: soup, members: pred@last}"], ["stages.mix.members: 'pred' is a predict stage"]),
    ("tiny", ["stages.fit.params_from=fit"], ["stages.fit.params_from: 'fit' is a train stage"]),
    ("tiny", ["stages.tune.space.lrr={type: float, low: 0.1, high: 1.0}"], ["stages.tune.space.lrr: unknown key"]),
    ("tiny", ["stages.tune.space.lr.low=2.0"], ["stages.tune.space.lr", "needs low <= high"]),
    ("tiny", ["stages.tune.space.lr={type: categorical}"], ["stages.tune.space.lr", "needs choices"]),
    ("bad_space", [], ["stages.tune.space.model.hidden: Input should be a valid integer"]),
    ("tiny", ["stages.tune.trial.init=fit@best"], ["stages.tune.trial", "init is not supported"]),
    ("tiny", ["stages.fit.trainer.num_nodes=2"], ["num_nodes", "start podium with srun"]),
    ("tiny", ["stages.fit.trainer.max_epochs=0", "stages.pred.model=fitt"],
     ["stages.fit.trainer.max_epochs: Input should be greater than or equal to 1",
      "stages.pred.model: unknown stage 'fitt'"]),
    (DIRTY, ["stages.effnet_s.model.name=nosuchnet"], ["stages.effnet_s.model.name", "not a timm model"]),
    (DIRTY, ["stages.effnet_s.model.pretrained_file=/no/weights.pth"],
     ["stages.effnet_s.model.pretrained_file: /no/weights.pth: no such file"]),
    (MASK, ["stages.members.model.name=vit_nonexistent"], ["stages.members.model.name", "not a timm model"]),
    (MASK, ["stages.tune.trial.model.name=vitt_base"], ["stages.tune.trial.model.name", "not a timm model"]),
    (MRI, ["stages.varnet.model={name: promptmr_plus}"],  # the profile-less varnet keys stay: a member's keys
     ["stages.varnet.model.chans: unknown key", "n_feat0"]),
    (MRI, ["stages.varnet.model.name=unet"],
     ["stages.varnet.model: Input tag 'unet' found using 'name'", "'fi_varnet'"]),
    (MRI, ["stages.recon.model=varnet@epoch=999"], ["stages.recon.model: '@epoch=999' is past the end"]),
]
FILES = {"yaml": "name: bad\nstages:\n  data: {kind: synth]\n  fit: {kind: train}\n",
         "list": "- name: bad\n- stages: {}\n", "empty": "name: bad\nstages: {}\n"}


@pytest.mark.parametrize(("recipe", "overrides", "expected"), CASES)
def test_bad_recipe_exits_2_before_any_stage(monkeypatch, capsys, tmp_path, tiny_recipe, recipe, overrides,
                                             expected):
    path = {"tiny": lambda: tiny(tiny_recipe), "missing": lambda: str(tmp_path / "nope.yaml"),
            "bad_space": lambda: bad_space(tiny_recipe)}.get(
        recipe, lambda: write(tmp_path, FILES[recipe]) if recipe in FILES else recipe)()
    store = tmp_path / "store"
    t0 = time.perf_counter()
    code, _, err = cli(monkeypatch, capsys, "run", path, "--store", str(store), *overrides)
    assert time.perf_counter() - t0 < 5, "no stage ran"
    assert code == 2, err
    for fragment in expected:
        assert fragment in err, err
    assert "Traceback" not in err
    assert not store.exists(), "nothing may be written for an invalid recipe"


def test_check_validates_without_running(monkeypatch, capsys, tmp_path, tiny_recipe):
    store = tmp_path / "store"
    code, out, _ = cli(monkeypatch, capsys, "run", "--check", str(tiny_recipe), "--store", str(store))
    assert code == 0 and "tiny: 7 stages valid" in out
    assert not store.exists()
    code, _, err = cli(monkeypatch, capsys, "run", "--check", str(tiny_recipe), "--store", str(store),
                       "stages.fit.lr=fast")
    assert code == 2 and "stages.fit.lr" in err and not store.exists()


@pytest.mark.parametrize("recipe", [DIRTY, MASK, MRI])
def test_every_shipped_recipe_and_profile_checks(monkeypatch, capsys, tmp_path, recipe):
    for profile in ([], ["--profile", "tiny"]):
        code, out, err = cli(monkeypatch, capsys, "run", "--check", recipe, "--store", str(tmp_path), *profile)
        assert code == 0, err
        assert "stages valid" in out
