"""Stage kinds: generic verbs (train, predict, ensemble, ...), one module each.

Each module registers its kind in ``podium.registry`` on import; ``podium.builtins`` imports them all.
The registry's names are re-exported here for plugins written against ``podium.stages``.
"""

from podium.registry import CHECKPOINT_KINDS, StageKind, register_stage, stage_kind, stage_kinds

__all__ = ["CHECKPOINT_KINDS", "StageKind", "register_stage", "stage_kind", "stage_kinds"]
