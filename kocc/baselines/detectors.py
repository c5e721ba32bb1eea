"""The scikit-learn detectors OCSDF is compared with, as one table.

Isolation Forest, One-Class SVM, Local Outlier Factor and the distance to the
k-th nearest neighbour, behind one interface with one score convention:
**higher = more normal**, as :meth:`kocc.models.OCSDF.score_samples` and
scikit-learn's own ``score_samples``/``decision_function``. Every experiment
(toys, tabular, images) builds its detectors here.

``scores(x)`` scores new rows (LOF with ``novelty=True``); ``scores(x,
fitted_rows=True)`` scores the rows it was fitted on (``x``), transductively for
LOF (``negative_outlier_factor_``, fitted with ``novelty=False``) and kNN (a row
is not its own neighbour): the anomaly-detection protocol of the paper's
Table 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.svm import OneClassSVM


@dataclass(frozen=True)
class DetectorSpec:
    """A row of :data:`DETECTORS`: label, estimator, whether it takes a seed."""

    label: str
    estimator: Callable[..., Any]
    seeded: bool


#: name -> detector. The recipe names of every experiment.
DETECTORS: dict[str, DetectorSpec] = {
    "isolation_forest": DetectorSpec("IF", IsolationForest, seeded=True),
    "one_class_svm": DetectorSpec("OC-SVM", OneClassSVM, seeded=False),
    "local_outlier_factor": DetectorSpec("LOF", LocalOutlierFactor, seeded=False),
    "knn": DetectorSpec("kNN", NearestNeighbors, seeded=False),
}
#: Other names accepted for a detector (the image recipes' ``ocsvm``).
ALIASES = {"ocsvm": "one_class_svm"}


class Detector:
    """A scikit-learn detector scoring higher for more normal rows.

    Args:
        name: a key of :data:`DETECTORS` (or :data:`ALIASES`).
        seed: ``random_state`` of the seeded detectors and of the row subset.
        max_fit_rows: fit on a seeded subset of at most this many rows (the
            kernel SVM is O(n^2)); ``None``: all rows.
        **options: keyword arguments of the scikit-learn estimator, e.g.
            ``n_neighbors``: ``k`` of ``knn`` (default 5) or of LOF.

    Raises:
        ValueError: unknown name, invalid options (checked at construction),
            ``novelty`` for LOF (set by the protocol) or a bad ``max_fit_rows``.
    """

    def __init__(
        self,
        name: str,
        seed: int = 0,
        max_fit_rows: int | None = None,
        **options: Any,
    ) -> None:
        name = ALIASES.get(name, name)
        if name not in DETECTORS:
            raise ValueError(
                f"unknown detector {name!r}: expected one of {sorted(DETECTORS)}"
            )
        if "novelty" in options:
            raise ValueError(f"{name}.novelty is set by the protocol; remove it")
        if max_fit_rows is not None and (
            isinstance(max_fit_rows, bool)
            or not isinstance(max_fit_rows, int | np.integer)
            or max_fit_rows < 1
        ):
            raise ValueError(
                f"{name}.max_fit_rows must be a positive integer, got {max_fit_rows!r}"
            )
        self.name, self.seed, self.max_fit_rows = name, int(seed), max_fit_rows
        self.options = dict(options)
        if name == "knn":
            self.n_neighbors = self.options.pop("n_neighbors", 5)
            if isinstance(self.n_neighbors, bool) or not isinstance(
                self.n_neighbors, int | np.integer
            ):
                raise ValueError(
                    f"knn.n_neighbors must be a positive integer, got "
                    f"{self.n_neighbors!r}"
                )
        self._estimator(novelty=False)  # invalid option names fail here
        self.fitted_: Any = None

    @property
    def spec(self) -> DetectorSpec:
        return DETECTORS[self.name]

    def is_randomized(self, n_fit: int) -> bool:
        """Whether the scores depend on the seed when fitting ``n_fit`` rows."""
        subsampled = self.max_fit_rows is not None and n_fit > self.max_fit_rows
        return self.spec.seeded or subsampled

    def _estimator(self, novelty: bool) -> Any:
        options = dict(self.options)
        if self.spec.seeded:
            options.setdefault("random_state", self.seed)
        if self.name == "local_outlier_factor":
            options["novelty"] = novelty
        if self.name == "knn":
            options["n_neighbors"] = self.n_neighbors
        try:
            return self.spec.estimator(**options)
        except TypeError as err:
            raise ValueError(f"bad options for detector {self.name!r}: {err}") from err

    def fit(
        self, x: np.ndarray, seed: int | None = None, novelty: bool = True
    ) -> Detector:
        """Fit on ``x`` (``seed`` replaces the constructor's); ``novelty=False``
        keeps LOF transductive (``scores(x, fitted_rows=True)``)."""
        if seed is not None:
            self.seed = int(seed)
        if self.max_fit_rows is not None and len(x) > self.max_fit_rows:
            rows = np.random.default_rng(self.seed).choice(
                len(x), self.max_fit_rows, replace=False
            )
            x = x[rows]
        self.fitted_ = self._estimator(novelty).fit(x)
        return self

    def scores(self, x: np.ndarray, fitted_rows: bool = False) -> np.ndarray:
        """Normality scores (higher = more normal) of ``x``.

        With ``fitted_rows``, ``x`` are the rows the detector was fitted on:
        kNN does not count a row as its own neighbour and LOF returns its
        ``negative_outlier_factor_``.
        """
        if self.fitted_ is None:
            raise ValueError(f"detector {self.name!r} is not fitted")
        estimator = self.fitted_
        if self.name == "knn":
            # X=None queries the fitted rows without counting each row as its
            # own neighbour (scikit-learn semantics)
            distances, _ = estimator.kneighbors(None if fitted_rows else x)
            return -distances[:, -1]
        if self.name == "local_outlier_factor" and fitted_rows:
            return estimator.negative_outlier_factor_
        return estimator.decision_function(x)


def fit_detector(
    name: str, x: np.ndarray, seed: int = 0, **options: Any
) -> Callable[[np.ndarray], np.ndarray]:
    """A fitted detector's score function (higher = more normal)."""
    detector = Detector(name, seed=seed, **options).fit(x)
    return detector.scores
