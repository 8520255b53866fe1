"""podium's own stage kinds and tasks, registered as any plugin's are: every recipe imports this first.

The stage kinds register on import; the tasks are declared, and imported when a recipe first uses one
(their modules bring timm, h5py, OpenCV...).
"""

from podium import registry
from podium.stages import (  # noqa: F401
    collect,
    ensemble,
    evaluate,
    extract,
    predict,
    regress,
    search,
    soup,
    submit,
    synth,
    train,
)

for _task in ("multilabel", "mri", "mask", "iqa"):
    registry.declare_task(_task, f"podium.tasks.{_task}")
registry.declare_task("mri_router", "podium.tasks.mri.router")
registry.declare_task("iqa_mos", "podium.tasks.iqa.mos")
