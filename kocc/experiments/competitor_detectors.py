"""IOCN, FLOW and OMASGAN as baselines of the image and tabular benchmarks.

The benchmarks fit every baseline through one interface, that of
:class:`kocc.baselines.detectors.Detector`: ``fit(x, seed=..., novelty=...)``
then ``scores(x, fitted_rows=...)``, **higher = more normal**.
:class:`NetworkDetector` gives the seed papers' competitors the same interface,
so a recipe lists them beside the scikit-learn detectors
(``baselines: {iocn: {steps: 600}, omasgan: {}}``) and the benchmark computes
them in the same run, on the same rows, into the same tables:

* ``iocn``: :class:`kocc.baselines.IOCN` (Schmier et al., eq. (1)-(4)), score
  :math:`-s(x)`, positive inside the learned support;
* ``flow``: :class:`kocc.baselines.FlowBaseline`, the same invertible network
  trained by maximum likelihood, score :math:`\\log p(x)`;
* ``omasgan``: :class:`kocc.baselines.OMASGAN` (Dionelis et al., Tasks 1-3),
  score :math:`-\\mathrm{logit}\\, J(x)`.

Images are flattened to vectors first (dense networks). The options of each
are a schema (:class:`FlowSettings`, :class:`IOCNSettings`,
:class:`OMASGANSettings`) validated by :func:`kocc.experiments.recipes.from_dict`,
so a bad option is a :class:`~kocc.experiments.recipes.RecipeError` naming
``baselines.<name>.<key>``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from kocc.baselines import IOCN, OMASGAN, FlowBaseline
from kocc.baselines.iocn import StopOnInverseError
from kocc.baselines.omasgan import DIVERGENCES
from kocc.experiments.recipes import (
    RecipeError,
    at_least,
    from_dict,
    non_negative,
    one_of,
    positive,
    unit_interval,
)


@dataclass
class FlowSettings:
    """Options of ``baselines.flow``: the invertible network and its training
    (paper appendix A.5: 12 blocks, hidden width 128)."""

    #: affine coupling blocks of the invertible network (paper: 12)
    num_blocks: int = field(default=12, metadata=at_least(1))
    #: width of each coupling subnetwork's hidden ReLU layer (paper: 128)
    hidden_units: int = field(default=128, metadata=at_least(1))
    #: soft clamp c of the coupling log-scales (c tanh(s / c))
    clamp: float = field(default=2.0, metadata=positive())
    #: std of the Gaussian noise added to every training batch (the paper's
    #: "small amount of noise"; needed when there are fewer rows than features)
    noise_std: float = field(default=0.0, metadata=non_negative())
    #: parameter updates (rounded to whole epochs, at least one)
    steps: int = field(default=600, metadata=at_least(1))
    #: rows per update (at most the number of training rows)
    batch_size: int = field(default=256, metadata=at_least(1))
    #: Adam learning rate (3e-4: at 1e-3 IOCN did not settle, docs/competitors.md)
    learning_rate: float = field(default=3e-4, metadata=positive())


@dataclass
class IOCNSettings(FlowSettings):
    """Options of ``baselines.iocn``: those of ``flow`` and the inverse guard."""

    #: stop when the mean inverse error exceeds this and keep the last weights
    #: below it (StopOnInverseError, label-free); null: never stop early
    inverse_error_threshold: float | None = field(default=1e-2, metadata=positive())


@dataclass
class OMASGANSettings:
    """Options of ``baselines.omasgan``: dense networks, the paper's weights
    (mu = 0.2, nu = 0.25, Q = 1024, alpha + gamma = 0.7, beta = 0.7,
    delta = 0.5) and the CPU budget of ``benchmarks/mnist_leave_one_out.py``."""

    #: dimension of the Gaussian latent z
    latent_dim: int = field(default=128, metadata=at_least(1))
    #: hidden widths of the generators G, B and G'
    generator_widths: list[int] = field(
        default_factory=lambda: [256, 512], metadata=at_least(1)
    )
    #: hidden widths of the critics D, C and the anomaly discriminator J
    critic_widths: list[int] = field(
        default_factory=lambda: [512, 256], metadata=at_least(1)
    )
    #: last activation of the generators: tanh for pixels in [-1, 1] (the image
    #: benchmark's default), null for standardized features
    output_activation: str | None = field(default=None, metadata=one_of("tanh"))
    #: f-divergence of Tasks 1 and 2
    divergence: str = field(default="gan", metadata=one_of(*DIVERGENCES))
    #: weight of the distance term d of eq. (3)
    mu: float = field(default=0.2, metadata=non_negative())
    #: weight of the dispersion term s of eq. (3)
    nu: float = field(default=0.25, metadata=non_negative())
    #: Q, the G samples the distance term is taken over
    num_reference: int = field(default=1024, metadata=at_least(1))
    #: weight of the data in the Task-3 critic, eq. (6)
    alpha: float = field(default=0.35, metadata=non_negative())
    #: weight of G'(z) and B(z) in the Task-3 critic, eq. (6)
    beta: float = field(default=0.7, metadata=non_negative())
    #: weight of G(z) in the Task-3 critic, eq. (6)
    gamma: float = field(default=0.35, metadata=non_negative())
    #: weight of the data against G'(z) in the anomaly discriminator, eq. (7)
    delta: float = field(default=0.5, metadata=unit_interval())
    #: Adam learning rate of every network (beta_1 = 0.5)
    learning_rate: float = field(default=2e-4, metadata=positive())
    #: epochs of Task 1 (GAN), Task 2 (boundary) and Task 3 (G'/C, then as many
    #: for J)
    task_epochs: list[int] = field(
        default_factory=lambda: [20, 5, 10], metadata=at_least(0)
    )
    #: samples per update (at most the number of training rows)
    batch_size: int = field(default=256, metadata=at_least(1))

    def validate(self, key: str) -> None:
        if len(self.task_epochs) != 3:
            raise RecipeError(
                key=f"{key}.task_epochs",
                expected="three epoch counts (Tasks 1, 2 and 3)",
                given=self.task_epochs,
            )


#: name -> (label, options schema) of the network competitors.
NETWORK_DETECTORS: dict[str, tuple[str, type]] = {
    "iocn": ("IOCN", IOCNSettings),
    "flow": ("FLOW", FlowSettings),
    "omasgan": ("OMASGAN", OMASGANSettings),
}


def _flat(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x.reshape(len(x), -1)


class NetworkDetector:
    """IOCN, FLOW or OMASGAN behind the benchmarks' detector interface.

    Args:
        name: ``iocn``, ``flow`` or ``omasgan``.
        seed: seed of the network (replaced by ``fit(seed=...)``).
        **options: the keys of the name's schema (:data:`NETWORK_DETECTORS`).

    Raises:
        ValueError: for an unknown name.
        RecipeError: for an unknown option or a value outside its rule (the
            key is ``baselines.<name>.<option>``).
    """

    def __init__(self, name: str, seed: int = 0, **options: Any) -> None:
        if name not in NETWORK_DETECTORS:
            raise ValueError(
                f"unknown network detector {name!r}: expected one of "
                f"{sorted(NETWORK_DETECTORS)}"
            )
        self.name, self.seed = name, int(seed)
        self.label, schema = NETWORK_DETECTORS[name]
        self.settings = from_dict(schema, dict(options), f"baselines.{name}.")
        self.model: tf.keras.Model | None = None
        #: IOCN: the epoch its inverse guard stopped at (``None``: ran to the end)
        self.stopped_epoch: int | None = None

    def is_randomized(self, n_fit: int) -> bool:
        """Always: the networks' initializations and draws follow the seed."""
        return True

    def fit(
        self, x: np.ndarray, seed: int | None = None, novelty: bool = True
    ) -> NetworkDetector:
        """Train on the normal rows ``x`` (images are flattened).

        ``novelty`` is accepted for the interface: the networks score new rows
        and fitted rows alike.
        """
        if seed is not None:
            self.seed = int(seed)
        x = _flat(x)
        s = self.settings
        tf.keras.utils.set_random_seed(self.seed)
        batch = min(s.batch_size, len(x))
        # the schema's network keys are the model's keyword arguments
        options = asdict(s)
        if self.name == "omasgan":
            del options["batch_size"]
            model = OMASGAN(x.shape[1], **options, seed=self.seed)
            model.compile()
            model.fit(x, batch_size=batch, verbose=0)
        else:
            cls = IOCN if self.name == "iocn" else FlowBaseline
            network = ("num_blocks", "hidden_units", "clamp", "noise_std")
            model = cls(x.shape[1], **{k: options[k] for k in network}, seed=self.seed)
            model.compile(optimizer=tf.keras.optimizers.Adam(s.learning_rate))
            epochs = max(1, round(s.steps / math.ceil(len(x) / batch)))
            guard = []
            threshold = getattr(s, "inverse_error_threshold", None)
            if threshold is not None:
                guard = [StopOnInverseError(threshold)]
            model.fit(x, batch_size=batch, epochs=epochs, verbose=0, callbacks=guard)
            self.stopped_epoch = guard[0].stopped_epoch if guard else None
        self.model = model
        return self

    def scores(self, x: np.ndarray, fitted_rows: bool = False) -> np.ndarray:
        """Normality scores (higher = more normal), 1-D."""
        if self.model is None:
            raise ValueError(f"detector {self.name!r} is not fitted")
        return np.asarray(self.model.score_samples(_flat(x))).reshape(-1)
