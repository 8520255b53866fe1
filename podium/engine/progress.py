"""Rich progress bars for podium's long loops (synthesis, prediction, scoring), on stderr."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def progress_bar(enabled: bool = True) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled)


def forked_map(fn: Callable[[Any], Any], jobs: Iterable[Any], total: int, workers: int, label: str,
               progress: bool = True, chunksize: int = 1) -> Iterator[Any]:
    """``fn`` over ``jobs``, results in job order, from a forked pool when ``workers`` > 1 (a fork has nothing
    to re-import), with a progress bar. The pool forks before the bar's thread starts."""
    with contextlib.ExitStack() as stack:
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")))
            results = pool.map(fn, jobs, chunksize=chunksize)
        else:
            results = map(fn, jobs)
        bar = stack.enter_context(progress_bar(progress))
        task = bar.add_task(label, total=total)
        for result in results:
            bar.advance(task)
            yield result
