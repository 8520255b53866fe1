import sys

import pytest

from podium.cli import main
from podium.errors import ConfigError
from podium.recipe import Ref, load_recipe


def cli_exit(monkeypatch, capsys, *argv) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["podium", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("stages.fit.trainer.max_epoch=3",
         "stages.fit.trainer.max_epoch: unknown key; did you mean 'max_epochs'?"),
        ("stages.fit.trainer.max_epochs=many", "stages.fit.trainer.max_epochs: Input should be a valid integer"),
        ("stages.fit.trainer.max_epochs=0",
         "stages.fit.trainer.max_epochs: Input should be greater than or equal to 1"),
        ("stages.pred.model=fitt@best", "stages.pred.model: unknown stage 'fitt'; did you mean 'fit'?"),
        ("stages.pred.model=fit@epoch=0", "stages.pred.model: bad selector '@epoch=0'"),
        ("stages.pred.model=fit@epok=3", "stages.pred.model: bad selector '@epok=3'"),
        ("stages.pred.model=fit@epoch=7", "stages.pred.model: '@epoch=7' is past the end of 'fit' "
                                          "(trainer.max_epochs = 6)"),
        ("stages.pred.model=blend@best", "stages.pred.model: 'blend' is a ensemble stage"),
        ("stages.fit.kind=trian", "stages.fit.kind: unknown stage kind 'trian'; did you mean 'train'?"),
        ("stages.fit.needs=[score]", "dependency cycle"),
        ("stages.blend.inputs.nope=1.0", "stages.blend.inputs.nope: unknown stage 'nope'"),
        ("stages.data.num_points=ten",
         "stages.data.num_points: Input should be a valid integer, unable to parse string as an integer; found 'ten'"),
        ("task=tinny", "task: unknown task 'tinny'; did you mean 'tiny'?"),
    ],
)
def test_invalid_recipe_exits_2_with_dotted_path(monkeypatch, capsys, tmp_path, tiny_recipe, override, expected):
    store = tmp_path / "store"
    code, err = cli_exit(monkeypatch, capsys, "run", str(tiny_recipe), "--store", str(store), override)
    assert code == 2
    assert expected in " ".join(err.split())
    assert not store.exists(), "nothing may be written for an invalid recipe"


@pytest.mark.parametrize(("value", "expected"), [
    ("${nope:}", "Unsupported interpolation type nope full_key: stages.fit.lr"),
    ("${stages.missing}", "Interpolation key 'stages.missing' not found full_key: stages.fit.lr"),
])
def test_unresolvable_interpolation_exits_2_naming_file_and_key(monkeypatch, capsys, tmp_path, tiny_recipe, value,
                                                                 expected):
    text = tiny_recipe.read_text()
    tiny_recipe.write_text(text.replace("    kind: train\n", f'    kind: train\n    lr: "{value}"\n', 1))
    store = tmp_path / "store"
    code, err = cli_exit(monkeypatch, capsys, "run", str(tiny_recipe), "--store", str(store))
    assert code == 2
    assert f"{tiny_recipe}: cannot resolve an interpolation ({expected}" in " ".join(err.split())
    assert not store.exists()


def test_cycle_message_names_the_loop(tiny_recipe):
    with pytest.raises(ConfigError, match=r"dependency cycle (fit -> score|score -> .*) .*fit"):
        load_recipe(tiny_recipe, overrides=["stages.fit.needs=[score]"])


def test_unknown_profile_and_malformed_override(tiny_recipe):
    with pytest.raises(ConfigError, match="profiles.quik: no such profile; did you mean 'quick'"):
        load_recipe(tiny_recipe, profile="quik")
    with pytest.raises(ConfigError, match="override 'stages.fit' is not of the form key=value"):
        load_recipe(tiny_recipe, overrides=["stages.fit"])


def test_profile_then_overrides_apply_in_order(tiny_recipe):
    r = load_recipe(tiny_recipe, profile="quick")
    assert r.stages["fit"].config.trainer.max_epochs == 2
    r = load_recipe(tiny_recipe, profile="quick", overrides=["stages.fit.trainer.max_epochs=4", "stages.fit.lr=5e-3"])
    assert r.stages["fit"].config.trainer.max_epochs == 4
    assert r.stages["fit"].config.lr == 5e-3


def test_dag_order_and_implicit_dependencies(tiny_recipe):
    r = load_recipe(tiny_recipe)
    assert r.order == ["data", "fit", "pred", "pred_last", "blend", "score", "submission"]
    assert r.stages["fit"].needs == ["data"]
    assert r.stages["pred"].needs == ["data", "fit"]
    assert r.stages["blend"].needs == ["data", "pred", "pred_last"]


def test_members_expand_as_product_in_written_order(tiny_recipe):
    r = load_recipe(tiny_recipe, overrides=["stages.fit.members={seed: [1, 2], lr: [0.1, 0.01]}"])
    fit = r.stages["fit"]
    assert [(c.seed, c.lr) for c in fit.configs] == [(1, 0.1), (1, 0.01), (2, 0.1), (2, 0.01)]
    r = load_recipe(tiny_recipe, overrides=["stages.fit.members=[{seed: 3}, {model.hidden: 4}]"])
    assert [(c.seed, c.model.hidden) for c in r.stages["fit"].configs] == [(3, 16), (None, 4)]
    with pytest.raises(ConfigError, match=r"stages.fit.members\[1\].model.hiden: unknown key"):
        load_recipe(tiny_recipe, overrides=["stages.fit.members=[{seed: 3}, {model.hiden: 4}]"])


@pytest.mark.parametrize(("text", "ref"), [
    ("fit", Ref("fit", "best")), ("fit@best", Ref("fit", "best")), ("fit@last", Ref("fit", "last")),
    ("fit@epoch=30", Ref("fit", "epoch", 30)),
])
def test_ref_parse(text, ref):
    assert Ref.parse(text, "x") == ref
