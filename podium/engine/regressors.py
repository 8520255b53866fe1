"""Regressors on frozen features: scikit-learn candidates over a small grid, chosen on a validation split.

Every candidate standardises the features and the target (fitted on the training items), so one grid
suits any feature scale and any target range. All are deterministic. Their cost on n items of d features:

- ``ridge``: linear, closed form, O(n d^2 + d^3);
- ``svr`` (RBF): O(n^2 d) kernel evaluations (libsvm, one core), the slow one at the real 49k images;
- ``kernel_ridge`` (RBF): an n x n kernel and an O(n^3) solve: small sets only (19 GB of kernel at 49k).

Why scikit-learn and not LightGBM (the other maintained choice): pooled deep features are dense vectors
whose information is spread over many coordinates, where linear and kernel models are the usual IQA
regressors and trees, splitting one coordinate at a time, are not; LightGBM would also bring a native
OpenMP library whose results depend on the thread count unless pinned. Not measured against each other.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ESTIMATORS = ("ridge", "svr", "kernel_ridge")
DEFAULT_GRID: dict[str, dict[str, list[Any]]] = {
    "ridge": {"alpha": [1.0, 10.0, 100.0, 1000.0]},
    "svr": {"C": [0.3, 1.0, 3.0]},
}


def _estimator(name: str) -> Any:
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.linear_model import Ridge
    from sklearn.svm import SVR

    return {"ridge": Ridge(), "svr": SVR(kernel="rbf"), "kernel_ridge": KernelRidge(kernel="rbf")}[name]


def candidates(grid: Mapping[str, Mapping[str, Sequence[Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Every (estimator, parameters) of a grid, in the grid's order (each parameter's values crossed)."""
    out = []
    for name, params in grid.items():
        keys = list(params)
        out += [(name, dict(zip(keys, values, strict=True))) for values in itertools.product(*params.values())]
    return out


def check_grid(grid: Mapping[str, Mapping[str, Sequence[Any]]]) -> None:
    """Raise ValueError naming an unknown estimator, an empty list or a parameter it does not take."""
    if not grid:
        raise ValueError(f"no candidates; expected some of {', '.join(ESTIMATORS)}")
    for name, params in grid.items():
        if name not in ESTIMATORS:
            raise ValueError(f"unknown regressor {name!r} (regressors: {', '.join(ESTIMATORS)})")
        accepted = _estimator(name).get_params()
        for key, values in params.items():
            if key not in accepted:
                raise ValueError(f"{name} takes no parameter {key!r} (it takes {', '.join(sorted(accepted))})")
            if not values:
                raise ValueError(f"{name}.{key}: empty list of values")


def build(name: str, params: Mapping[str, Any]) -> Any:
    """An unfitted candidate: standardised features -> estimator, on a standardised target."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    estimator = _estimator(name).set_params(**params)
    return TransformedTargetRegressor(make_pipeline(StandardScaler(), estimator), transformer=StandardScaler())


@dataclass(frozen=True)
class Trial:
    name: str
    params: dict[str, Any]
    score: float

    @property
    def label(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in self.params.items())})"


def select(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
           grid: Mapping[str, Mapping[str, Sequence[Any]]],
           score: Callable[[np.ndarray, np.ndarray], float]) -> tuple[Any, Trial, list[Trial]]:
    """(the candidate with the best validation ``score`` fitted on ``train``, its trial, every trial).
    A tie goes to the earlier candidate in the grid."""
    best: tuple[Any, Trial] | None = None
    trials = []
    for name, params in candidates(grid):
        model = build(name, params).fit(*train)
        trials.append(Trial(name, params, float(score(model.predict(val[0]), val[1]))))
        if best is None or trials[-1].score > best[1].score:
            best = (model, trials[-1])
    return best[0], best[1], trials
