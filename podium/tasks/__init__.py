"""Task plugins: the domain knowledge (data formats, models, metrics) behind the generic stage kinds.

A task subclasses :class:`podium.registry.Task`, overrides the methods its recipes use and registers
an instance with ``@register_task``. Built-in tasks live in ``podium/tasks/<name>/`` and are declared by
``podium.builtins``; others (a test's toy task, a user's own) are imported through the recipe's
``plugins:`` list. The registry's names are re-exported here; importing this package declares the
built-in tasks, so ``get_task("mri")`` works from a notebook too.
"""

from podium.registry import Task, get_task, register_task

__all__ = ["Task", "get_task", "register_task"]

import podium.builtins  # noqa: E402,F401
