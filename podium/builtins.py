"""podium's own stage kinds and tasks, registered as any plugin's are: every recipe imports this first.

The stage kinds register on import; the tasks are declared, and imported when a recipe first uses one
(their modules bring timm, h5py, OpenCV...).
"""

from podium import registry
from podium.stages import ensemble, evaluate, predict, search, soup, submit, synth, train  # noqa: F401

for _task in ("multilabel", "mri", "mask", "iqa"):
    registry.declare_task(_task, f"podium.tasks.{_task}")
