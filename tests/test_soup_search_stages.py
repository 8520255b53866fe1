"""The soup and search stage kinds on the tiny task: checkpoints, greedy path, Optuna continuation."""

import json

import pytest
import torch
from rich.console import Console

import podium
from podium.engine.checkpoint import load_checkpoint

QUIET = Console(quiet=True)
SWEEP = """
  sweep: {kind: train, members: {seed: [1, 2, 3]}, trainer: {max_epochs: 2}}
  greedy: {kind: soup, members: sweep@last, method: greedy}
  uniform: {kind: soup, members: sweep@last, method: uniform}
  pred_soup: {kind: predict, model: greedy@best}
"""


def add_stages(recipe, text):
    recipe.write_text(recipe.read_text().replace("\nprofiles:", text + "profiles:"))


def only_dir(store, stage):
    (d,) = [p for p in (store / "tiny" / stage).iterdir() if (p / "manifest.json").is_file()]
    return d


def test_uniform_and_greedy_soups(tiny_recipe, tmp_path):
    add_stages(tiny_recipe, SWEEP)
    store = tmp_path / "s"
    podium.run(tiny_recipe, [], store=store, console=QUIET, report=False,
               only=["data", "sweep", "greedy", "uniform", "pred_soup"])
    members = sorted((store / "tiny" / "sweep").glob("*/manifest.json"))
    states = []
    for m in members:
        manifest = json.loads(m.read_text())
        states.append(load_checkpoint(m.parent / manifest["checkpoints"]["epoch=2"]["file"])["state_dict"])
    uniform = load_checkpoint(only_dir(store, "uniform") / "checkpoints" / "soup.ckpt")["state_dict"]
    for k in uniform:
        expected = (states[0][k].double() + states[1][k].double() + states[2][k].double()) / 3
        assert torch.allclose(uniform[k].double(), expected, atol=1e-7), k

    g = json.loads((only_dir(store, "greedy") / "manifest.json").read_text())
    path = g["greedy_path"]
    assert len(path) == 3 and path[0]["accepted"] and g["ingredients"][0] == path[0]["member"]
    assert [s["score"] for s in path] == sorted((s["score"] for s in path), reverse=True)
    for before, step in zip(path, path[1:], strict=False):
        assert step["accepted"] == (step["candidate_score"] > before["soup_score"])
    assert g["metrics"]["ingredients"] == sum(s["accepted"] for s in path)
    pred = json.loads((only_dir(store, "pred_soup") / "manifest.json").read_text())
    assert pred["status"] == "done" and pred["metrics"]["items"] == 64


SEARCH = """
  tune:
    kind: search
    n_trials: 2
    trial: {trainer: {max_epochs: 1}}
    space: {lr: {type: float, low: 0.001, high: 0.5, log: true}, model.hidden: {type: categorical, choices: [4, 8]}}
  tuned: {kind: train, params_from: tune, trainer: {max_epochs: 1}}
  tuned_pred: {kind: predict, model: tuned@best}
"""


def test_search_continues_its_study_and_feeds_a_train_stage(tiny_recipe, tmp_path, monkeypatch):
    add_stages(tiny_recipe, SEARCH)
    store = tmp_path / "s"
    import podium.stages.search as search

    real_fit, calls = search.fit, []

    def flaky_fit(cfg, *args, **kwargs):
        calls.append(cfg.lr)
        if len(calls) == 2:
            raise RuntimeError("machine lost")
        return real_fit(cfg, *args, **kwargs)

    monkeypatch.setattr(search, "fit", flaky_fit)
    with pytest.raises(RuntimeError, match="machine lost"):
        podium.run(tiny_recipe, [], store=store, console=QUIET, report=False, only=["data", "tune"])
    monkeypatch.setattr(search, "fit", real_fit)
    podium.run(tiny_recipe, [], store=store, console=QUIET, report=False, only=["tune"])
    two = only_dir(store, "tune")
    best = json.loads((two / "best.json").read_text())
    assert [(t["number"], t["state"]) for t in best["trials"]] == [(0, "COMPLETE"), (2, "COMPLETE")]

    podium.run(tiny_recipe, ["stages.tune.n_trials=3"], store=store, console=QUIET, report=False, only=["tune"])
    (three,) = [p.parent for p in (store / "tiny" / "tune").glob("*/best.json") if p.parent != two]
    extended = json.loads((three / "best.json").read_text())
    assert [t["number"] for t in extended["trials"]] == [0, 2, 3]
    assert len(list((three / "trials").iterdir())) == 1, "only the new trial was trained"

    podium.run(tiny_recipe, [], store=store, console=QUIET, report=False, only=["tuned"])
    tuned = json.loads((only_dir(store, "tuned") / "manifest.json").read_text())
    assert tuned["status"] == "done"
    assert tuned["upstream"]["tune"] == [two.name]
    assert tuned["config"]["lr"] == pytest.approx(best["params"]["lr"])
    assert tuned["config"]["model"]["hidden"] == best["params"]["model.hidden"]
    podium.run(tiny_recipe, [], store=store, console=QUIET, report=False, only=["tuned_pred"])
    assert json.loads((only_dir(store, "tuned_pred") / "manifest.json").read_text())["status"] == "done"


def test_search_trial_config_is_validated_at_load(tiny_recipe):
    add_stages(tiny_recipe, SEARCH.replace("max_epochs: 1}}", "max_epoch: 1}}", 1))
    from podium.errors import ConfigError
    from podium.recipe import load_recipe
    with pytest.raises(ConfigError, match=r"stages.tune.trial.trainer.max_epoch: unknown key; did you mean"):
        load_recipe(tiny_recipe)


def test_search_trial_refuses_references_it_would_ignore(tiny_recipe):
    add_stages(tiny_recipe, SEARCH.replace("trial: {trainer: {max_epochs: 1}}", "trial: {init: fit@best}", 1))
    from podium.errors import ConfigError
    from podium.recipe import load_recipe
    with pytest.raises(ConfigError, match=r"stages\.tune\.trial: .*init is not supported in a search trial"):
        load_recipe(tiny_recipe)
