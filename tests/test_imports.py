"""The house: the lower floors (recipe, store, runner, registry) import no stage kind and no task."""

import json
import subprocess
import sys

from .conftest import REPO

PROBE = """
import json, sys
import podium.recipe, podium.store, podium.runner, podium.registry
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("podium.stages", "podium.tasks", "podium.api",
                                                                  "podium.report", "podium.builtins")))))
"""


def test_lower_floors_import_no_stage_task_api_or_report():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_loading_a_recipe_registers_the_builtins_as_a_plugin(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nstages:\n  s: {kind: synth, task: mri}\n")
    probe = (f"import sys, podium.recipe as r; r.load_recipe({str(recipe)!r}); "
             "print('podium.stages.train' in sys.modules, 'podium.tasks.mri' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_report_does_not_import_the_api():
    probe = "import sys, podium.report; print('podium.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
