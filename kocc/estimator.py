r"""``OneClassSDF``: OCSDF as a scikit-learn outlier detector.

Follows scikit-learn's outlier-detection conventions (as ``IsolationForest``):

* ``score_samples(X)`` = :math:`f(x)`, the learnt signed-distance score: higher
  = more normal;
* ``decision_function(X)`` = :math:`f(x) - t` with ``t = offset_`` the
  threshold: negative = outlier;
* ``predict(X)`` = +1 (normal, :math:`f(x) \ge t`) or -1 (outlier);
* ``certified_radius(X)`` = :math:`|f(x) - t| / L`: no l2 perturbation smaller
  than this changes ``predict`` at ``x`` (Béthune et al., ICML 2023, Sec. 4).

Scores are computed in float64 by a copy of the trained (float32) network, so
that a sample's score does not depend on the other rows of the batch: in
float32, CPU matrix products round a row differently by its position in the
batch (a few 1e-8), which scikit-learn's invariance checks reject.

The threshold is the ``contamination`` quantile of the training scores (the
fraction of training samples to call outliers), or the fixed ``threshold``.

The estimator is safe to clone, pickle (its state is the parameters, the fitted
attributes and the weights as numpy arrays: no TensorFlow object is pickled) and
to :meth:`OneClassSDF.save` / :meth:`OneClassSDF.load` as a directory of JSON and
``.npz`` files.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

import kocc
from kocc.architectures import lipschitz_activation, lipschitz_mlp
from kocc.datasets.pipelines import without_autotuning
from kocc.export import (
    LOAD_ERRORS,
    CertificateError,
    ModelFileError,
    certify_network,
    save_for_serving,
    vanilla_network,
)
from kocc.safe_output import output_directory
from kocc.sampling import Ball, Box, Domain
from kocc.training import train_ocsdf

#: Files of a saved estimator directory.
PARAMS_FILE = "params.json"
STATE_FILE = "state.json"
WEIGHTS_FILE = "weights.npz"
#: Version of the saved-directory format.
SAVE_FORMAT = 1
#: Samples per forward pass when scoring.
SCORE_BATCH = 8192
_DOMAINS = ("box", "ball")


class OneClassSDF(OutlierMixin, BaseEstimator):
    r"""One-Class Signed Distance Function (OCSDF) outlier detector.

    Trains a 1-Lipschitz network (:func:`kocc.architectures.lipschitz_mlp`) with
    :class:`kocc.models.OCSDF` (hinge-KR loss against Newton-Raphson negatives,
    paper Algorithms 1 and 3). Scale the inputs first (e.g. a ``Pipeline`` with a
    ``StandardScaler``): ``margin`` and the certified radii are in input units.

    Args:
        widths: hidden layer widths of the network.
        activation: ``"fullsort"``, ``"groupsort2"`` or ``"groupsort<k>"``.
        margin: hinge margin ``m > 0`` (input units).
        lam: hinge weight :math:`\lambda > 0`.
        nr_steps: Newton-Raphson steps ``T >= 0`` per negative sampling.
        warmup_epochs: first epochs trained with ``T = 0``.
        epochs: training epochs ``>= 1``.
        batch_size: samples per step ``>= 1``.
        learning_rate: Adam learning rate ``> 0``.
        domain: where negatives are drawn: ``"box"``, the bounding box of the
            training data enlarged by ``domain_margin`` times its extent on each
            side (a constant feature: its value +- 0.5), or ``"ball"``, the
            ball around the data mean whose radius is ``1 + domain_margin``
            times the largest distance to the mean.
        domain_margin: enlargement of the domain, ``>= 0``.
        contamination: fraction in ``(0, 0.5]`` of training samples to call
            outliers: the threshold is that quantile of the training scores.
            ``None`` to use ``threshold`` instead.
        threshold: fixed threshold on the score, used when ``contamination`` is
            ``None`` (``None`` then means 0, the level between the training
            margins ``+m`` and ``-m``).
        random_state: seed (int) of the initialization, the negatives and the
            shuffling; ``None`` draws one from numpy's global generator.
        verbose: Keras ``fit`` verbosity.

    Attributes:
        network_: the trained 1-Lipschitz Keras network.
        domain_: the sampling domain used.
        offset_: the threshold ``t`` (scikit-learn's name); also ``threshold_``.
        lipschitz_constant_: ``L = max(1, bound)``, with ``bound`` proved on the
            network's weights (:mod:`kocc.lipschitz_bound`).
        n_features_in_: number of features seen in ``fit``.
        feature_names_in_: names of those features (DataFrame inputs only).
    """

    def __init__(
        self,
        widths: Sequence[int] = (128, 128, 128),
        activation: str = "fullsort",
        margin: float = 0.05,
        lam: float = 100.0,
        nr_steps: int = 4,
        warmup_epochs: int = 0,
        epochs: int = 30,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        domain: str = "box",
        domain_margin: float = 0.5,
        contamination: float | None = 0.1,
        threshold: float | None = None,
        random_state: int | None = None,
        verbose: int = 0,
    ) -> None:
        self.widths = widths
        self.activation = activation
        self.margin = margin
        self.lam = lam
        self.nr_steps = nr_steps
        self.warmup_epochs = warmup_epochs
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.domain = domain
        self.domain_margin = domain_margin
        self.contamination = contamination
        self.threshold = threshold
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------ validation
    _positive = Interval(Real, 0, None, closed="neither")
    #: scikit-learn's declarative parameter checks (``BaseEstimator._validate_params``
    #: raises ``InvalidParameterError``, a ``ValueError``, naming the parameter).
    _parameter_constraints: dict = {
        "widths": ["array-like"],
        "activation": [str],
        "margin": [_positive],
        "lam": [_positive],
        "nr_steps": [Interval(Integral, 0, None, closed="left")],
        "warmup_epochs": [Interval(Integral, 0, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [_positive],
        "domain": [StrOptions(set(_DOMAINS))],
        "domain_margin": [Interval(Real, 0, None, closed="left")],
        "contamination": [Interval(Real, 0, 0.5, closed="right"), None],
        "threshold": [Real, None],
        "random_state": [Interval(Integral, 0, 2**31 - 1, closed="both"), None],
        "verbose": [Interval(Integral, 0, None, closed="left")],
    }

    def _check_params(self) -> None:
        """Validate the hyper-parameters (scikit-learn validates in ``fit``).

        :attr:`_parameter_constraints` checks types and ranges; what that
        language cannot say is checked here: a finite threshold, the widths' entries,
        the activation against kocc's registry, contamination vs threshold.

        Raises:
            ValueError: naming the parameter, what was expected and what was given.
        """
        self._validate_params()

        def fail(name: str, expected: str) -> None:
            raise ValueError(
                f"OneClassSDF parameter {name!r} must be {expected}, "
                f"got {getattr(self, name)!r}"
            )

        widths = self.widths
        if (
            isinstance(widths, str | bytes)
            or len(widths) == 0
            or not all(isinstance(w, Integral) and w > 0 for w in widths)
        ):
            fail("widths", "a non-empty sequence of positive ints")
        try:
            lipschitz_activation(self.activation)
        except ValueError as err:
            raise ValueError(f"OneClassSDF parameter 'activation': {err}") from None
        c, t = self.contamination, self.threshold
        if t is not None and not np.isfinite(t):
            fail("threshold", "a finite float or None")
        if t is not None and c is not None:
            raise ValueError(
                "OneClassSDF got both contamination="
                f"{c!r} and threshold={t!r}: the threshold comes from one of them. "
                "Set contamination=None to use a fixed threshold."
            )

    # ------------------------------------------------------------- building
    def _build_domain(self, x: np.ndarray) -> Domain:
        """The sampling domain around ``x``.

        Raises:
            ValueError: if the domain does not fit in float32 (features of
                magnitude near 1e38).
        """
        low, high = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
        reach = np.abs(np.concatenate([low, high])).max()
        reach += (1.0 + self.domain_margin) * (high - low).max()
        if not reach < np.finfo(np.float32).max:
            raise ValueError(
                f"X's values reach {np.abs(np.concatenate([low, high])).max():.3g}: "
                "the sampling domain around them does not fit in float32. "
                "Standardize the features (e.g. StandardScaler in a Pipeline)."
            )
        if self.domain == "box":
            low, high = x.min(axis=0), x.max(axis=0)
            width = high - low
            # a constant feature gets the unit interval around its value
            pad = np.where(width > 0, self.domain_margin * width, 0.5)
            return Box(low - pad, high + pad)
        center = x.mean(axis=0)
        spread = float(np.sqrt(((x - center) ** 2).sum(axis=1)).max())
        return Ball(
            (1.0 + self.domain_margin) * (spread if spread > 0 else 1.0), center
        )

    # -------------------------------------------------------------- fitting
    def fit(self, X: Any, y: Any = None) -> OneClassSDF:  # noqa: N803
        """Train on (mostly normal) samples ``X``; ``y`` is ignored.

        Returns:
            ``self``.

        Raises:
            ValueError: on invalid hyper-parameters or ``X`` (NaN, inf, empty,
                not 2-D).
        """
        self._check_params()
        x = validate_data(self, X, dtype=np.float32, reset=True)
        seed = (
            int(check_random_state(None).randint(2**31 - 1))
            if self.random_state is None
            else int(self.random_state)
        )
        domain = self._build_domain(x)
        network = lipschitz_mlp(x.shape[1], tuple(self.widths), self.activation, seed)
        data = without_autotuning(
            tf.data.Dataset.from_tensor_slices(x)
            .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            .batch(int(self.batch_size))
        )
        train_ocsdf(  # the one training path (kocc.training)
            network,
            domain,
            data,
            epochs=int(self.epochs),
            verbose=int(self.verbose),
            margin=float(self.margin),
            lam=float(self.lam),
            nr_steps=int(self.nr_steps),
            warmup_epochs=int(self.warmup_epochs),
            optimizer="adam",
            learning_rate=float(self.learning_rate),
            seed=seed,
        )
        self.network_ = network
        plain = vanilla_network(network)  # once: the bound and the scorer
        self.domain_ = domain
        self.lipschitz_constant_ = _proven_lipschitz(plain)
        self._scorer = _float64_network(plain)
        if self.contamination is None:
            offset = 0.0 if self.threshold is None else float(self.threshold)
        else:
            scores = self._scores(x)
            offset = float(np.percentile(scores, 100.0 * self.contamination))
        self.offset_ = offset
        self.threshold_ = offset
        return self

    # -------------------------------------------------------------- scoring
    def _scores(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        parts = [
            self._scorer(x[i : i + SCORE_BATCH], training=False).numpy().reshape(-1)
            for i in range(0, len(x), SCORE_BATCH)
        ]
        return np.concatenate(parts)

    def score_samples(self, X: Any) -> np.ndarray:  # noqa: N803
        """Normality scores :math:`f(x)`, shape ``(n,)``: higher = more normal.

        Computed in float64 by a copy of the network (see the module's text).
        """
        check_is_fitted(self)
        x = validate_data(self, X, dtype=np.float64, reset=False)
        return self._scores(x)

    def decision_function(self, X: Any) -> np.ndarray:  # noqa: N803
        """:math:`f(x) - t`, shape ``(n,)``: negative = outlier."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        """+1 for normal samples (:math:`f(x) \\ge t`), -1 for outliers."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def certified_radius(self, X: Any) -> np.ndarray:  # noqa: N803
        """:math:`|f(x) - t| / L`: l2 radius within which ``predict`` cannot change."""
        return np.abs(self.decision_function(X)) / self.lipschitz_constant_

    # -------------------------------------------------------------- serving
    def export(self, path: str | os.PathLike, **kwargs: Any) -> Any:
        """Write a serving SavedModel with the fitted threshold.

        See :func:`kocc.export.save_for_serving` (``kwargs`` go there).
        """
        check_is_fitted(self)
        return save_for_serving(self.network_, path, threshold=self.offset_, **kwargs)

    # ------------------------------------------------- state, save and load
    def _fitted_state(self) -> dict[str, Any]:
        state = {
            "n_features_in_": int(self.n_features_in_),
            "offset_": float(self.offset_),
            "threshold_": float(self.threshold_),
            "lipschitz_constant_": float(self.lipschitz_constant_),
            "domain_": tf.keras.utils.serialize_keras_object(self.domain_),
        }
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in_"] = [str(n) for n in self.feature_names_in_]
        return state

    def _restore_fitted(self, state: dict[str, Any], weights: list[np.ndarray]) -> None:
        self.n_features_in_ = int(state["n_features_in_"])
        self.offset_ = float(state["offset_"])
        self.threshold_ = float(state["threshold_"])
        self.lipschitz_constant_ = float(state["lipschitz_constant_"])
        self.domain_ = tf.keras.utils.deserialize_keras_object(state["domain_"])
        if "feature_names_in_" in state:
            self.feature_names_in_ = np.asarray(
                state["feature_names_in_"], dtype=object
            )
        network = lipschitz_mlp(
            self.n_features_in_, tuple(self.widths), self.activation
        )
        network.set_weights(weights)
        self.network_ = network
        self._scorer = _float64_network(vanilla_network(network))

    def __getstate__(self) -> dict[str, Any]:
        """Picklable state: parameters, fitted attributes and numpy weights."""
        state = dict(super().__getstate__())  # object's may be __dict__ itself
        for key in ("network_", "domain_", "_scorer"):
            state.pop(key, None)
        if hasattr(self, "network_"):
            state["_kocc_fitted"] = self._fitted_state()
            state["_kocc_weights"] = [
                np.asarray(w) for w in self.network_.get_weights()
            ]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        fitted = state.pop("_kocc_fitted", None)
        weights = state.pop("_kocc_weights", None)
        super().__setstate__(state)
        if fitted is not None:
            self._restore_fitted(fitted, weights)

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Save a fitted estimator to a directory (JSON + ``.npz``, no pickle).

        Writes ``params.json`` (``get_params()``), ``state.json`` (fitted
        attributes) and ``weights.npz`` (the network's weights). The folder
        appears whole or not at all (:func:`kocc.safe_output.output_directory`).

        Args:
            path: the folder; it must not exist or be empty, unless
                ``overwrite``.
            overwrite: replace an earlier save at ``path``.

        Returns:
            The directory.

        Raises:
            kocc.safe_output.OutputExistsError: if ``path`` is a non-empty
                folder and ``overwrite`` is false.
            kocc.safe_output.OutputError: if ``path`` is a file or is being
                written by another process.
        """
        check_is_fitted(self)
        path = Path(path)
        params = self.get_params()
        params["widths"] = [int(w) for w in params["widths"]]
        state = {
            "format": SAVE_FORMAT,
            "kocc_version": kocc.__version__,
            **self._fitted_state(),
        }
        with output_directory(path, overwrite) as work:
            (work / PARAMS_FILE).write_text(json.dumps(params, indent=2))
            (work / STATE_FILE).write_text(json.dumps(state, indent=2))
            np.savez(work / WEIGHTS_FILE, *self.network_.get_weights())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> OneClassSDF:
        """Load an estimator written by :meth:`save`.

        Raises:
            FileNotFoundError: if a file of the directory is missing.
            kocc.export.ModelFileError: if a file is truncated or damaged.
            ValueError: if the directory was written by an unknown format.
        """
        path = Path(path)
        for name in (PARAMS_FILE, STATE_FILE, WEIGHTS_FILE):
            if not (path / name).is_file():
                raise FileNotFoundError(
                    f"{path} is not a saved OneClassSDF: {name} is missing"
                )
        try:
            params = json.loads((path / PARAMS_FILE).read_text())
            params["widths"] = tuple(params["widths"])
            state = json.loads((path / STATE_FILE).read_text())
        except (ValueError, KeyError, TypeError, OSError) as err:
            raise ModelFileError(
                f"{path}: {PARAMS_FILE} or {STATE_FILE} is damaged: {err}"
            ) from err
        if not isinstance(state, dict) or state.get("format") != SAVE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else None
            raise ValueError(
                f"{path}: unknown save format {found!r}, expected {SAVE_FORMAT}"
            )
        try:
            with np.load(path / WEIGHTS_FILE, allow_pickle=False) as archive:
                weights = [archive[f"arr_{i}"] for i in range(len(archive.files))]
            estimator = cls(**params)
            estimator._check_params()
            estimator._restore_fitted(state, weights)
        except (*LOAD_ERRORS, zipfile.BadZipFile) as err:
            raise ModelFileError(
                f"cannot load the OneClassSDF saved in {path}: "
                f"{type(err).__name__}: {err} (truncated or damaged files?)"
            ) from err
        return estimator


def _float64_network(plain: tf.keras.Model) -> tf.keras.Model:
    """A float64 copy of ``plain``, a network's plain-Keras form (a layer chain,
    :func:`kocc.export.vanilla_network`).

    It computes the same function as the network's inference-mode call, with
    float64 rounding: a row's score then no longer depends on the batch it is
    scored in (to ~1e-16 instead of ~1e-8).
    """
    inputs = tf.keras.Input(plain.input_shape[1:], dtype="float64")
    outputs = inputs
    for layer in plain.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        config = {**layer.get_config(), "dtype": "float64"}
        copy = layer.__class__.from_config(config)
        outputs = copy(outputs)
        copy.set_weights([np.asarray(w, np.float64) for w in layer.get_weights()])
    return tf.keras.Model(inputs, outputs, name=f"{plain.name}_float64")


def _proven_lipschitz(plain: tf.keras.Model) -> float:
    """``max(1, bound)`` with ``bound`` proved on the served weights: ``plain``
    is the network's plain-Keras form (:func:`kocc.export.vanilla_network`).

    Raises:
        ValueError: if training diverged (non-finite weights).
    """
    try:
        lipschitz, _ = certify_network(plain, np.inf)
    except CertificateError as err:
        raise ValueError(
            f"OneClassSDF training diverged: {err}. Features far from unit scale "
            "overflow float32 training (the margin and the sampling domain are in "
            "input units): standardize X, e.g. with StandardScaler in a Pipeline."
        ) from err
    return lipschitz
