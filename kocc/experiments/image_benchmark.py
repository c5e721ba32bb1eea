"""One-class image classification benchmark (Béthune et al., ICML 2023, §5.3, Table 3).

Protocol, for every normal class ``k`` of a data set:

* train on the images of class ``k`` of the training split (labels unused);
* evaluate on **all** test images: class ``k`` is normal (the positive class of
  the AUROC, scores = normality, higher = more normal), the nine other classes
  are anomalies.

With ``data.protocol: leave_one_out`` (the OMASGAN paper's protocol,
Dionelis et al., §4) the task of class ``k`` is the converse: train on the
training images of every class but ``k`` (capped by ``data.max_train``, a seeded
subset), evaluate on all test images with class ``k`` as the anomaly.

The shared CIFAR-10 is the test set only (decoded from JPEG): every class is
split in two with a seeded permutation (``data.cifar_train_fraction`` of it is
the "train" part); the model of class ``k`` trains on the train part of ``k`` and
is evaluated on the held-out parts of all classes. This deviates from the paper
(5,000 training images per class, official 10,000-image test set).

Reported per class (all AUROCs in ``[0, 1]``):

* OCSDF: AUROC; certified AUROC at every radius of ``evaluation.epsilons_255``
  (``eps = e / 255`` in the ``[-1, 1]`` pixel scale; paper Proposition 1,
  :func:`kocc.metrics.certified_auroc` with Lipschitz constant 1); the AUROC left
  by an l2 PGD attack at the same radii (:func:`kocc.attacks.attacked_auroc`;
  normal images pushed down, anomalies pushed up, clipped to ``[-1, 1]``). The
  attack runs on a seeded subset (``evaluation.attack.max_normal`` /
  ``max_anomalous``); the certified AUROC *of that subset* is reported beside it,
  so that "attacked >= certified" can be checked on the same images;
* baselines on the same images: One-Class SVM and Isolation Forest on the
  flattened pixels (scikit-learn), Deep SVDD (:class:`kocc.baselines.DeepSVDD`);
* optionally a grid of synthesized images (:func:`kocc.generation.synthesize`).

Entry point: :func:`run_image_benchmark` (``config`` is a recipe dictionary,
``recipes/mnist_one_class*.yaml``; the schema is :class:`ImageBenchmarkConfig`
and docs/images.md). It writes ``results.json`` and ``results.md`` into the
output directory and returns :class:`ImageBenchmarkResults`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from kocc.architectures import (
    PAPER_MLP_WIDTHS,
    PAPER_VGG_WIDTHS,
    lipschitz_mlp,
    lipschitz_vgg,
)
from kocc.attacks import attacked_auroc
from kocc.baselines.deep_svdd import DeepSVDD
from kocc.baselines.detectors import Detector
from kocc.datasets.images import (
    PIXEL_DOMAIN_BOUNDS,
    ImageDatasetSpec,
    image_spec,
    load_image_arrays,
)
from kocc.datasets.shards import sharded_dataset, write_tfrecord_shards
from kocc.experiments.competitor_detectors import NETWORK_DETECTORS, NetworkDetector
from kocc.experiments.progress import Progress
from kocc.experiments.recipes import (
    ACTIVATION_RULE,
    OPTIMIZER_CHOICES,
    DistributeConfig,
    Recipe,
    RecipeError,
    at_least,
    check_baselines,
    from_dict,
    non_negative,
    one_of,
    open_fraction,
    positive,
    unit_interval,
)
from kocc.experiments.training import (
    OCSDF_TRAINING_KEYS,
    certified_auroc_on_disk,
    run_directory,
    section_arguments,
    strategy_of,
)
from kocc.generation import (
    noise_starts,
    save_image_grid,
    synthesis_reach,
    synthesize,
)
from kocc.image_prior import (
    SYMMETRIES,
    DihedralBox,
    GradedBox,
    check_symmetries,
    select_symmetries,
)
from kocc.metrics import certified_auroc
from kocc.models import OCSDF
from kocc.sampling import Box
from kocc.training import compile_ocsdf, fit_ocsdf

#: The default baselines.
BASELINES = ("ocsvm", "isolation_forest", "deep_svdd")
#: Every baseline a recipe may list: the defaults, then the seed papers'
#: competitors on the flattened pixels (kocc.experiments.competitor_detectors).
BASELINE_CHOICES = BASELINES + ("iocn", "flow", "omasgan")
#: Recipe key ``data.protocol``: which classes are normal in the task of class k.
PROTOCOLS = ("one_class", "leave_one_out")


# ----------------------------------------------------------------------- config
@dataclass
class DataSettings:
    """Recipe section ``data``.

    Attributes:
        dataset: ``mnist``, ``fashion_mnist`` or ``cifar10``.
        normal_class: one class, a list, or ``None`` for every class: the
            normal class of each task (``one_class``) or the left-out,
            anomalous class of each task (``leave_one_out``).
        data_dir: shared data folder (``None``: ``$KOCC_DATA_DIR``).
        tfds_dir: where TFDS writes prepared copies (``None``:
            ``$KOCC_TFDS_DIR`` or TFDS' default).
        source: ``local`` (offline builders) or ``tfds`` (TFDS' download).
        max_train: cap on training images of the normal class (seeded subset).
        max_test: cap on test images (seeded subset, class proportions kept).
        cifar_train_fraction: share of each CIFAR-10 class used for training
            when only the CIFAR-10 test set is available (``source: local``).
        protocol: ``one_class`` (class k normal, the others anomalous) or
            ``leave_one_out`` (class k anomalous, the others normal).
    """

    dataset: str = "mnist"
    normal_class: Any = None
    data_dir: str | None = None
    tfds_dir: str | None = None
    source: str = field(default="local", metadata=one_of("local", "tfds"))
    max_train: int | None = field(default=None, metadata=at_least(1))
    max_test: int | None = field(default=None, metadata=at_least(1))
    cifar_train_fraction: float = field(default=0.5, metadata=open_fraction())
    #: one_class: for each class k of data.normal_class, train on class k and
    #: test it against every other class (the OCSDF paper, §5.3);
    #: leave_one_out: for each class k of data.normal_class, train on every
    #: class but k and test with k as the anomaly (the OMASGAN paper's protocol)
    protocol: str = field(default="one_class", metadata=one_of(*PROTOCOLS))

    def validate(self, key: str) -> None:
        try:
            spec = image_spec(self.dataset)
        except ValueError as err:
            raise RecipeError(
                key=f"{key}.dataset", expected=str(err), given=self.dataset
            ) from err
        self.dataset = spec.name
        self.normal_class = _normal_classes(self.normal_class, spec, key)


def _normal_classes(value: Any, spec: ImageDatasetSpec, key: str) -> list[int]:
    key = f"{key}.normal_class"
    if value is None:
        return list(range(spec.num_classes))
    values = [value] if not isinstance(value, (list, tuple)) else list(value)
    if not values:
        raise RecipeError(key=key, expected="a class, not an empty list", given=[])
    classes = []
    for item in values:
        if isinstance(item, str) and item in spec.class_names:
            item = spec.class_names.index(item)
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise RecipeError(
                key=key, expected="a class index >= 0 or a class name", given=item
            )
        if item >= spec.num_classes:
            raise RecipeError(
                key=key,
                expected=f"a class of {spec.name}, which has classes 0.."
                f"{spec.num_classes - 1} (class {item} does not exist)",
                given=item,
            )
        classes.append(item)
    return classes


#: Networks of recipe key ``model.architecture``: factory and default widths.
ARCHITECTURES = {
    "vgg": (lipschitz_vgg, PAPER_VGG_WIDTHS),
    "mlp": (lipschitz_mlp, PAPER_MLP_WIDTHS),
}


def _positive_ints(values: Any) -> bool:
    return all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in values
    )


@dataclass
class ModelSettings:
    """Recipe section ``model``: the 1-Lipschitz network that scores images.

    Attributes:
        architecture: ``vgg`` (the paper's Table 5 network,
            :func:`kocc.architectures.lipschitz_vgg`) or ``mlp`` (the dense
            network of :func:`kocc.architectures.lipschitz_mlp` on the
            flattened pixels: orthogonal dense layers and GroupSort, so that the
            gradient norm is 1 almost everywhere).
        widths: ``vgg``: conv channels per stage (default: the paper's Table 5);
            ``mlp``: hidden widths (default: four layers of 512, the paper's
            dense network). ``None`` picks the architecture's default.
        activation: ``groupsort2`` (paper), ``fullsort``, ``groupsort<k>``.
    """

    architecture: str = field(default="vgg", metadata=one_of(*ARCHITECTURES))
    widths: Any = None
    activation: str = field(default="groupsort2", metadata=ACTIVATION_RULE)

    def validate(self, key: str) -> None:
        key = f"{key}.widths"
        widths = self.widths
        if widths is None:
            widths = ARCHITECTURES[self.architecture][1]
        if not isinstance(widths, (list, tuple)) or not widths:
            raise RecipeError(key=key, expected="a non-empty list", given=self.widths)
        if self.architecture == "mlp":
            if not _positive_ints(widths):
                raise RecipeError(
                    key=key,
                    expected="a list of layer widths such as [512, 512] (mlp)",
                    given=widths,
                )
            self.widths = list(widths)
            return
        if not all(isinstance(stage, (list, tuple)) for stage in widths):
            raise RecipeError(
                key=key,
                expected="a list of stages such as [[8, 8], [16, 16], [16]] (vgg)",
                given=widths,
            )
        if any(not stage or not _positive_ints(stage) for stage in widths):
            raise RecipeError(
                key=key,
                expected="stages of widths >= 1, none of them an empty stage",
                given=widths,
            )
        self.widths = [list(stage) for stage in widths]

    def build(self, image_shape: Sequence[int], seed: int) -> tf.keras.Model:
        """The 1-Lipschitz network on images of ``image_shape``."""
        factory, _ = ARCHITECTURES[self.architecture]
        return factory(
            tuple(image_shape),
            widths=self.widths,
            activation=self.activation,
            seed=seed,
        )


DOMAIN_KINDS = {"box": Box, "graded_box": GradedBox, "dihedral_box": DihedralBox}


@dataclass
class DomainSettings:
    """Recipe section ``domain``: how negatives are drawn in ``B = [-1, 1]^d``.

    Attributes:
        kind: ``box`` (uniform in B, the paper's sampler), ``graded_box``
            (:class:`kocc.image_prior.GradedBox`: B with a random intensity per
            negative) or ``dihedral_box`` (:class:`kocc.image_prior.DihedralBox`:
            B mixed with the training images mirrored or turned by 90, 180,
            270 degrees); the last two deviate from the paper.
        box_fraction: ``dihedral_box`` only: the probability that a draw is
            uniform in B (the others are turned training images).
        symmetries: ``dihedral_box`` only: ``all`` (the seven symmetries of
            the square other than the identity), ``auto`` (those under which
            the class's training images do not look invariant,
            :func:`kocc.image_prior.select_symmetries`; no labels) or a list of
            names of :data:`kocc.image_prior.SYMMETRIES`. When ``auto`` keeps
            none, the domain is the plain box.
        symmetry_threshold: ``auto`` only: a symmetry is kept when its
            :func:`kocc.image_prior.symmetry_ratios` exceeds this.
    """

    kind: str = field(default="box", metadata=one_of(*DOMAIN_KINDS))
    box_fraction: float = field(default=0.5, metadata=unit_interval())
    symmetries: Any = "all"
    symmetry_threshold: float = field(default=1.1, metadata=positive())

    def validate(self, key: str) -> None:
        if self.symmetries in ("all", "auto"):
            return
        if not isinstance(self.symmetries, list):
            raise RecipeError(
                key=f"{key}.symmetries",
                expected=f"'all', 'auto' or a list of names among {list(SYMMETRIES)}",
                given=self.symmetries,
            )
        try:
            check_symmetries(self.symmetries)
        except ValueError as error:
            raise RecipeError(
                key=f"{key}.symmetries",
                expected=f"distinct names among {list(SYMMETRIES)}, at least one",
                given=self.symmetries,
            ) from error

    def symmetries_for(self, images: np.ndarray) -> tuple[str, ...]:
        """The symmetries of ``dihedral_box`` for these training images."""
        if self.symmetries == "all":
            return SYMMETRIES
        if self.symmetries == "auto":
            return select_symmetries(images, threshold=self.symmetry_threshold)
        return check_symmetries(self.symmetries)

    def build(
        self, image_shape: Sequence[int], images: np.ndarray | None = None
    ) -> Box:
        """The domain over images of ``image_shape``; ``dihedral_box`` needs the
        training ``images`` of the normal class."""
        shape = tuple(image_shape)
        if self.kind == "dihedral_box":
            if images is None:
                raise ValueError(
                    "domain.kind 'dihedral_box' draws turned training images: give "
                    "the training images"
                )
            symmetries = self.symmetries_for(images)
            if not symmetries:
                return Box(*PIXEL_DOMAIN_BOUNDS, shape=shape)
            return DihedralBox(
                images,
                *PIXEL_DOMAIN_BOUNDS,
                shape=shape,
                box_fraction=self.box_fraction,
                symmetries=symmetries,
            )
        return DOMAIN_KINDS[self.kind](*PIXEL_DOMAIN_BOUNDS, shape=shape)


@dataclass
class TrainingSettings:
    """Recipe section ``training`` (paper appendix G.1 values as defaults).

    Attributes:
        margin: hinge margin m (paper, MNIST: 0.02 * sqrt(28*28*2) = 0.792).
        lam: hinge weight lambda (paper: 200).
        batch_size: positives per step (paper: 128).
        nr_steps: Newton-Raphson steps T (paper: 16).
        epochs: epochs (paper: 70).
        warmup_epochs: first epochs with T = 0 (paper: 10).
        optimizer: ``rmsprop`` (paper), ``adam`` or ``sgd``.
        learning_rate: initial rate (paper: 1e-3).
        final_learning_rate: rate reached linearly at the last step (paper 1e-6).
        updates_per_sampling: parameter updates per negative sampling.
        negatives_per_batch: negatives per step (``None``: batch size).
    """

    margin: float = field(
        default=0.02 * float(np.sqrt(28 * 28 * 2)), metadata=positive()
    )
    lam: float = field(default=200.0, metadata=positive())
    batch_size: int = field(default=128, metadata=at_least(1))
    nr_steps: int = field(default=16, metadata=at_least(0))
    epochs: int = field(default=70, metadata=at_least(1))
    warmup_epochs: int = field(default=10, metadata=at_least(0))
    optimizer: str = field(default="rmsprop", metadata=one_of(*OPTIMIZER_CHOICES))
    learning_rate: float = field(default=1e-3, metadata=positive())
    final_learning_rate: float = field(default=1e-6, metadata=non_negative())
    updates_per_sampling: int = field(default=1, metadata=at_least(1))
    negatives_per_batch: int | None = field(default=None, metadata=at_least(1))
    #: 0: fit on the images in memory; N >= 1: write them as N TFRecord shards
    #: (a temporary folder in the run folder) and stream them
    #: (kocc.datasets.shards.sharded_dataset, docs/distributed.md)
    shards: int = field(default=0, metadata=at_least(0))
    #: OCSDF's AUROC and certified AUROC from sorted score shards on disk
    #: (kocc.score_shards, a temporary scores-* folder in the run folder)
    #: instead of the scores in memory: the same values, for test sets too
    #: large to hold
    score_shards: bool = False


@dataclass
class AttackSettings:
    """Recipe section ``evaluation.attack``: the l2 PGD attack.

    Attributes:
        enabled: run the attack.
        steps: PGD steps per run.
        restarts: random restarts (worst score kept).
        rel_stepsize: step length relative to eps.
        max_normal: normal test images attacked (seeded subset; ``None``: all).
        max_anomalous: anomalous test images attacked (seeded subset, class
            proportions kept; ``None``: all).
        batch_size: images attacked at once.
    """

    enabled: bool = True
    steps: int = field(default=20, metadata=at_least(1))
    restarts: int = field(default=3, metadata=at_least(1))
    rel_stepsize: float = field(default=0.25, metadata=positive())
    max_normal: int | None = field(default=500, metadata=at_least(1))
    max_anomalous: int | None = field(default=500, metadata=at_least(1))
    batch_size: int = field(default=256, metadata=at_least(1))


@dataclass
class EvaluationSettings:
    """Recipe section ``evaluation``.

    Attributes:
        epsilons_255: l2 radii times 255 (paper: 8, 16, 36, 72); the radius is
            ``e / 255`` in the ``[-1, 1]`` pixel scale.
        attack: :class:`AttackSettings`.
    """

    epsilons_255: list[float] = field(
        default_factory=lambda: [8.0, 16.0, 36.0, 72.0], metadata=positive()
    )
    attack: AttackSettings = field(default_factory=AttackSettings)

    def validate(self, key: str) -> None:
        if not self.epsilons_255:
            raise RecipeError(
                key=f"{key}.epsilons_255", expected="a non-empty list", given=[]
            )

    @property
    def epsilons(self) -> np.ndarray:
        return np.asarray(self.epsilons_255, dtype=np.float64) / 255.0


@dataclass
class DeepSVDDSettings:
    """Recipe section ``baselines.deep_svdd`` (Ruff et al. 2018 values as defaults).

    Attributes:
        epochs: one-class objective epochs (paper: 150).
        pretrain_epochs: autoencoder epochs (paper: 250; 0 = no pre-training).
        batch_size: batch size (paper: 200).
        learning_rate: Adam rate (paper: 1e-4).
        weight_decay: lambda (paper: 0.5e-6).
    """

    epochs: int = field(default=150, metadata=at_least(1))
    pretrain_epochs: int = field(default=250, metadata=at_least(0))
    batch_size: int = field(default=200, metadata=at_least(1))
    learning_rate: float = field(default=1e-4, metadata=positive())
    weight_decay: float = field(default=5e-7, metadata=non_negative())


@dataclass
class SynthesisSettings:
    """Recipe section ``synthesis``: a PNG grid of synthesized images per class.

    Attributes:
        n: images per class (0 = no synthesis).
        steps: Newton-Raphson steps (paper: 64).
    """

    n: int = field(default=0, metadata=at_least(0))
    steps: int = field(default=64, metadata=at_least(1))


@dataclass
class ImageBenchmarkConfig(Recipe):
    """``kind: images``: a validated image benchmark recipe (docs/images.md).

    Top-level keys: ``kind``, ``name``, ``description`` (free text), ``seed``
    (class ``k`` trains with seed ``seed + k``), ``data``, ``model``,
    ``domain``, ``training``, ``evaluation``, ``baselines`` (a mapping from
    ``ocsvm`` / ``isolation_forest`` / ``deep_svdd`` to its options; absent key =
    default set of all three, an empty mapping = none), ``synthesis``.
    """

    kind: str = field(default="images", metadata=one_of("images"))
    name: str = "image_one_class"
    benchmark: str = ""
    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    domain: DomainSettings = field(default_factory=DomainSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    #: the baselines fitted in the same run, a mapping name -> options: ocsvm,
    #: isolation_forest, deep_svdd (the default set) and iocn, flow, omasgan
    #: on the flattened pixels (options: docs/competitors.md); {} = none
    baselines: dict[str, Any] | None = field(
        default_factory=lambda: {name: {} for name in BASELINES}
    )
    #: ``baselines.deep_svdd`` validated (set from ``baselines``, not a key)
    deep_svdd: DeepSVDDSettings = field(
        default_factory=DeepSVDDSettings, metadata={"derived": True}
    )
    synthesis: SynthesisSettings = field(default_factory=SynthesisSettings)
    distribute: DistributeConfig = field(default_factory=DistributeConfig)

    def validate(self, key: str) -> None:
        if self.baselines is None:
            self.baselines = {name: {} for name in BASELINES}
        self.baselines = check_baselines(
            self.baselines,
            BASELINE_CHOICES,
            lambda name, options: name == "deep_svdd"
            or _make_baseline(name, options, 0),
        )
        self.deep_svdd = from_dict(
            DeepSVDDSettings, self.baselines.get("deep_svdd"), "baselines.deep_svdd."
        )
        if self.training.warmup_epochs > self.training.epochs:
            raise RecipeError(
                key="training.warmup_epochs",
                expected=f"at most training.epochs = {self.training.epochs}",
                given=self.training.warmup_epochs,
            )

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> ImageBenchmarkConfig:
        """Validate a recipe mapping (:func:`kocc.experiments.recipes.from_dict`).

        Raises:
            RecipeError: naming the key path, what was expected and what was
                given: an unknown key, a value of the wrong type or range, an
                unknown data set, class or baseline.
        """
        if not isinstance(config, Mapping):
            raise RecipeError(key="recipe", expected="a mapping", given=config)
        return from_dict(cls, dict(config))


#: This benchmark's settings of the detectors, under the recipe's (OMASGAN's
#: generators end in tanh: pixels are in [-1, 1]).
DETECTOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "ocsvm": {"nu": 0.1, "gamma": "scale"},
    "isolation_forest": {"n_estimators": 100},
    "omasgan": {"output_activation": "tanh"},
}


def _make_baseline(
    name: str, options: Mapping[str, Any], seed: int
) -> Detector | NetworkDetector:
    """A detector of :mod:`kocc.baselines.detectors` or, for ``iocn``, ``flow``
    and ``omasgan``, a :class:`~kocc.experiments.competitor_detectors.NetworkDetector`
    on the flattened pixels (higher = more normal)."""
    options = {**DETECTOR_DEFAULTS.get(name, {}), **options}
    if name in NETWORK_DETECTORS:
        return NetworkDetector(name, seed=seed, **options)
    return Detector(name, seed=seed, **options)


# -------------------------------------------------------------------- protocol
@dataclass
class OneClassSplit:
    """The task of one class: training images and labelled test images.

    Attributes:
        normal_class: the task's class: the normal class (``one_class``) or
            the left-out, anomalous class (``leave_one_out``).
        x_train: float32 ``(n, H, W, C)`` images of the normal class(es).
        x_test: float32 test images of every class.
        labels_test: their class labels.
        protocol: ``one_class`` or ``leave_one_out``.
    """

    normal_class: int
    x_train: np.ndarray
    x_test: np.ndarray
    labels_test: np.ndarray
    protocol: str = "one_class"

    @property
    def is_normal(self) -> np.ndarray:
        """Boolean per test image: is it normal in this task?"""
        if self.protocol == "leave_one_out":
            return self.labels_test != self.normal_class
        return self.labels_test == self.normal_class


def _seeded_subset(labels: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``cap`` items, class proportions kept (sorted)."""
    if cap is None or cap >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    # stratified: rank within class, keep the first share of every class
    keep = []
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts * cap / len(labels)).astype(int)
    remainder = cap - quota.sum()
    extra = rng.permutation(len(classes))[:remainder]
    quota[extra] += 1
    for c, q in zip(classes, quota, strict=True):
        members = order[labels[order] == c]
        keep.append(members[:q])
    return np.sort(np.concatenate(keep))


class ImageData:
    """Arrays of a data set loaded once, split per normal class.

    Args:
        settings: the ``data`` section.
        seed: seed of the CIFAR-10 per-class split and of the subsets.
    """

    def __init__(self, settings: DataSettings, seed: int = 0) -> None:
        self.settings = settings
        self.spec = image_spec(settings.dataset)
        self.seed = int(seed)
        kwargs = {
            "data_dir": settings.data_dir,
            "tfds_data_dir": settings.tfds_dir,
            "source": settings.source,
        }
        if settings.source == "tfds" or "train" in self.spec.local_splits:
            self.x_train, self.y_train = load_image_arrays(
                self.spec.name, "train", **kwargs
            )
            self.x_test, self.y_test = load_image_arrays(
                self.spec.name, "test", **kwargs
            )
            self.protocol = "train split / test split"
        else:
            x, y = load_image_arrays(self.spec.name, "test", **kwargs)
            train = self.per_class_split(y, settings.cifar_train_fraction, self.seed)
            self.x_train, self.y_train = x[train], y[train]
            self.x_test, self.y_test = x[~train], y[~train]
            self.protocol = (
                f"test set split per class: {settings.cifar_train_fraction:g} for "
                "training, the rest for evaluation"
            )
        test = _seeded_subset(self.y_test, settings.max_test, self.seed)
        self.x_test, self.y_test = self.x_test[test], self.y_test[test]
        if settings.protocol == "leave_one_out":
            self.protocol += (
                "; leave-one-out: class k is the anomaly, the other classes are "
                "normal"
            )

    @staticmethod
    def per_class_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
        """Boolean mask: the first ``round(fraction * n_c)`` images of every class
        ``c`` in a seeded permutation are the training part."""
        rng = np.random.default_rng(seed)
        mask = np.zeros(len(labels), bool)
        for c in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == c))
            mask[members[: int(round(fraction * len(members)))]] = True
        return mask

    def split(self, normal_class: int) -> OneClassSplit:
        """The :class:`OneClassSplit` of the task of one class.

        ``one_class``: the training images of ``normal_class``;
        ``leave_one_out``: the training images of every other class. Either
        way capped at ``max_train`` by a seeded subset (seed ``seed + k``).

        Raises:
            ValueError: if the task has no training image or the test set has
                no normal or no anomalous image.
        """
        leave_one_out = self.settings.protocol == "leave_one_out"
        if leave_one_out:
            train = np.flatnonzero(self.y_train != normal_class)
        else:
            train = np.flatnonzero(self.y_train == normal_class)
        if self.settings.max_train is not None and len(train) > self.settings.max_train:
            rng = np.random.default_rng(self.seed + normal_class)
            train = np.sort(rng.choice(train, self.settings.max_train, replace=False))
        if len(train) == 0:
            raise ValueError(f"the task of class {normal_class} has no training image")
        split = OneClassSplit(
            normal_class,
            self.x_train[train],
            self.x_test,
            self.y_test,
            self.settings.protocol,
        )
        normal = split.is_normal
        if normal.all() or not normal.any():
            raise ValueError(
                f"the test set needs normal and anomalous images in the task of "
                f"class {normal_class}, got {int(normal.sum())} of {len(normal)} "
                "normal"
            )
        return split


# --------------------------------------------------------------------- training
def build_ocsdf(
    image_shape: Sequence[int],
    model: ModelSettings,
    training: TrainingSettings,
    steps_per_epoch: int,
    seed: int,
    domain: DomainSettings | None = None,
    images: np.ndarray | None = None,
) -> OCSDF:
    """The OCSDF of a recipe, compiled with the linearly decaying optimizer.

    The learning rate decays linearly from ``learning_rate`` to
    ``final_learning_rate`` over ``epochs * steps_per_epoch`` updates.
    ``images`` (the training images) feed the ``dihedral_box`` sampler.
    """
    tf.keras.utils.set_random_seed(seed)
    backbone = model.build(image_shape, seed)
    domain = domain or DomainSettings()
    return compile_ocsdf(
        backbone,
        domain.build(image_shape, images),
        **section_arguments(training, OCSDF_TRAINING_KEYS),
        negatives_per_batch=training.negatives_per_batch,
        optimizer=training.optimizer,
        learning_rate=training.learning_rate,
        final_learning_rate=training.final_learning_rate,
        decay_steps=max(1, training.epochs * steps_per_epoch),
        seed=seed,
    )


def train_ocsdf(
    x_train: np.ndarray,
    model: ModelSettings,
    training: TrainingSettings,
    seed: int,
    domain: DomainSettings | None = None,
    strategy: tf.distribute.Strategy | None = None,
    work_dir: str | os.PathLike | None = None,
) -> OCSDF:
    """Build (:func:`build_ocsdf`) and fit OCSDF on the normal images.

    Built and fitted in ``strategy.scope()`` (default: the current strategy;
    ``training.batch_size`` is the global batch). With ``training.shards = N``
    the images are written as ``N`` TFRecord shards in a temporary folder of
    ``work_dir`` (removed after the fit) and streamed from them,
    ``ceil(n / batch)`` steps an epoch.
    """
    strategy = strategy or tf.distribute.get_strategy()
    batch_size = min(training.batch_size, len(x_train))
    steps_per_epoch = int(np.ceil(len(x_train) / batch_size))
    with (
        tempfile.TemporaryDirectory(prefix="shards-", dir=work_dir)
        if training.shards
        else contextlib.nullcontext()
    ) as folder:
        with strategy.scope():
            ocsdf = build_ocsdf(
                x_train.shape[1:],
                model,
                training,
                steps_per_epoch,
                seed,
                domain,
                x_train,
            )
            if training.shards:
                files = write_tfrecord_shards([x_train], folder, training.shards)
                data = sharded_dataset(files, x_train.shape[1:], batch_size, seed=seed)
                fit_ocsdf(
                    ocsdf, data, epochs=training.epochs, steps_per_epoch=steps_per_epoch
                )
            else:
                fit_ocsdf(
                    ocsdf,
                    x_train,
                    epochs=training.epochs,
                    batch_size=batch_size,
                    shuffle=True,
                )
    return ocsdf


def fit_deep_svdd(
    x_train: np.ndarray, settings: DeepSVDDSettings, seed: int
) -> DeepSVDD:
    """Deep SVDD on the normal images: optional pre-training, then the
    one-class objective (Adam)."""
    tf.keras.utils.set_random_seed(seed)
    model = DeepSVDD(x_train.shape[1:], weight_decay=settings.weight_decay, seed=seed)
    batch_size = min(settings.batch_size, len(x_train))
    if settings.pretrain_epochs:
        model.pretrain(
            x_train,
            settings.pretrain_epochs,
            batch_size=batch_size,
            learning_rate=settings.learning_rate,
        )
    model.compile(optimizer=tf.keras.optimizers.Adam(settings.learning_rate))
    model.fit(x_train, batch_size=batch_size, epochs=settings.epochs, verbose=0)
    return model


# ---------------------------------------------------------------------- results
@dataclass
class ClassResult:
    """Measured figures of one normal class (AUROCs in ``[0, 1]``).

    Attributes:
        normal_class: the task's class index (the normal class, or the
            left-out class under ``leave_one_out``); ``class_name`` its name.
        n_train, n_test_normal, n_test_anomalous: image counts.
        auroc: OCSDF AUROC on the whole test set.
        certified: certified AUROC per ``epsilons_255`` entry (whole test set).
        attacked: attacked AUROC per radius (attack subset), ``None`` if off.
        certified_attack_subset: certified AUROC on the attack subset.
        clean_attack_subset: AUROC of the attack subset without attack.
        n_attack_normal, n_attack_anomalous: sizes of the attack subset.
        baselines: AUROC per baseline.
        seconds: wall-clock seconds per stage (``ocsdf_train``, ``attack``,
            one per baseline, ``total``) and the process CPU seconds of the
            class (``cpu_total``; with one thread, the wall time on an idle
            core).
        synthesis_png: path of the synthesized grid, if any.
        synthesis_reach: :meth:`kocc.generation.SynthesisReach.to_dict` of
            that grid (how far the samples moved from the noise toward the
            training images), if any.
        symmetries: the symmetries the ``dihedral_box`` sampler drew from
            (``None`` for the other samplers; ``[]`` when ``auto`` kept none).
    """

    normal_class: int
    class_name: str
    n_train: int
    n_test_normal: int
    n_test_anomalous: int
    auroc: float
    certified: dict[str, float]
    attacked: dict[str, float] | None
    certified_attack_subset: dict[str, float] | None
    clean_attack_subset: float | None
    n_attack_normal: int
    n_attack_anomalous: int
    baselines: dict[str, float]
    seconds: dict[str, float]
    final_metrics: dict[str, float]
    synthesis_png: str | None = None
    synthesis_reach: dict[str, float] | None = None
    symmetries: list[str] | None = None


@dataclass
class ImageBenchmarkResults:
    """All classes of a run, with the configuration.

    Attributes:
        config: the validated recipe.
        protocol: how train and test images were chosen.
        classes: one :class:`ClassResult` per normal class.
        json_path, markdown_path: written files.
    """

    config: ImageBenchmarkConfig
    protocol: str
    classes: list[ClassResult]
    json_path: Path | None = None
    markdown_path: Path | None = None

    def mean(self) -> dict[str, Any]:
        """Mean over the classes of every figure (AUROC, certified, attacked,
        baselines)."""
        if not self.classes:
            return {}
        out: dict[str, Any] = {
            "auroc": float(np.mean([c.auroc for c in self.classes])),
            "certified": {
                k: float(np.mean([c.certified[k] for c in self.classes]))
                for k in self.classes[0].certified
            },
            "baselines": {
                k: float(np.mean([c.baselines[k] for c in self.classes]))
                for k in self.classes[0].baselines
            },
            "seconds_per_class": float(
                np.mean([c.seconds["total"] for c in self.classes])
            ),
        }
        if all(c.attacked is not None for c in self.classes):
            out["attacked"] = {
                k: float(np.mean([c.attacked[k] for c in self.classes]))
                for k in self.classes[0].attacked
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "dataset": self.config.data.dataset,
            "protocol": self.protocol,
            "config": _config_dict(self.config),
            "classes": [asdict(c) for c in self.classes],
            "mean": self.mean(),
        }


def _config_dict(config: ImageBenchmarkConfig) -> dict[str, Any]:
    raw = asdict(config)
    raw.pop("deep_svdd")  # already inside baselines, with defaults filled below
    if "deep_svdd" in raw["baselines"]:
        raw["baselines"]["deep_svdd"] = asdict(config.deep_svdd)
    return raw


def _eps_keys(config: ImageBenchmarkConfig) -> list[str]:
    return [f"{e:g}/255" for e in config.evaluation.epsilons_255]


# ---------------------------------------------------------------------- running
def _evaluate_class(
    split: OneClassSplit,
    config: ImageBenchmarkConfig,
    spec: ImageDatasetSpec,
    out: Path,
    log: Callable[[str], None],
    strategy: tf.distribute.Strategy | None = None,
) -> ClassResult:
    k = split.normal_class
    seed = config.seed + k
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    cpu_start = time.process_time()
    normal = split.is_normal
    keys = _eps_keys(config)
    eps = config.evaluation.epsilons

    tic = time.perf_counter()
    model = train_ocsdf(
        split.x_train,
        config.model,
        config.training,
        seed,
        config.domain,
        strategy,
        out,
    )
    seconds["ocsdf_train"] = time.perf_counter() - tic
    symmetries = None
    if config.domain.kind == "dihedral_box":
        symmetries = list(getattr(model.domain, "symmetries", ()))
        log(f"class {k}: dihedral_box symmetries {symmetries}")
    final = {
        name: float(value[-1])
        for name, value in model.history.history.items()
        if len(value)
    }
    _plot_curves(model.history.history, out / f"training_curves_class{k}.png", k)
    if config.training.score_shards:
        scores = None
        on_disk = certified_auroc_on_disk(
            model, split.x_test, normal, np.r_[0.0, eps], out
        )
        auroc, certified = float(on_disk[0]), on_disk[1:]
    else:
        scores = model.score_samples(split.x_test)
        auroc = float(roc_auc_score(normal, scores))
        certified = certified_auroc(scores[normal], scores[~normal], eps)
    log(f"class {k}: OCSDF AUROC {auroc:.4f} ({seconds['ocsdf_train']:.0f} s)")

    attacked = certified_subset = clean_subset = None
    n_att_normal = n_att_anomalous = 0
    attack = config.evaluation.attack
    if attack.enabled:
        rng_seed = seed + 7919
        idx_normal = np.flatnonzero(normal)
        idx_anomalous = np.flatnonzero(~normal)
        pick_n = idx_normal[
            _seeded_subset(np.zeros(len(idx_normal)), attack.max_normal, rng_seed)
        ]
        pick_a = idx_anomalous[
            _seeded_subset(
                split.labels_test[idx_anomalous], attack.max_anomalous, rng_seed
            )
        ]
        n_att_normal, n_att_anomalous = len(pick_n), len(pick_a)
        tic = time.perf_counter()
        values = attacked_auroc(
            model,
            split.x_test[pick_n],
            split.x_test[pick_a],
            eps,
            steps=attack.steps,
            restarts=attack.restarts,
            rel_stepsize=attack.rel_stepsize,
            bounds=PIXEL_DOMAIN_BOUNDS,
            batch_size=attack.batch_size,
            seed=seed,
        )
        seconds["attack"] = time.perf_counter() - tic
        attacked = dict(zip(keys, map(float, np.atleast_1d(values)), strict=True))
        if scores is None:  # score shards: only the attack subset is scored
            scores_n = model.score_samples(split.x_test[pick_n])
            scores_a = model.score_samples(split.x_test[pick_a])
        else:
            scores_n, scores_a = scores[pick_n], scores[pick_a]
        sub = certified_auroc(scores_n, scores_a, eps)
        certified_subset = dict(zip(keys, map(float, sub), strict=True))
        clean_subset = float(
            roc_auc_score(
                np.r_[np.ones(len(pick_n)), np.zeros(len(pick_a))],
                np.r_[scores_n, scores_a],
            )
        )
        log(f"class {k}: attack done ({seconds['attack']:.0f} s)")

    png = reach = None
    if config.synthesis.n:
        # from uniform noise (appendix G.2), whatever the training negatives
        noise = model.domain.uniform()
        images = synthesize(
            model,
            config.synthesis.n,
            steps=config.synthesis.steps,
            x_reference=split.x_train,
            domain=noise,
            seed=seed,
        )
        png = str(save_image_grid(images, out / f"synthesis_class{k}.png"))
        starts = noise_starts(model, config.synthesis.n, domain=noise, seed=seed)
        measured = synthesis_reach(starts, images, split.x_train)
        reach = measured.to_dict()
        log(
            f"class {k}: synthesis moved its samples {measured.moved:.1f}; their "
            f"nearest training image went from {measured.start_distance:.1f} to "
            f"{measured.end_distance:.1f} ({measured.closed:.0%} of the way closed)"
        )
        if measured.low:
            log(
                f"class {k}: WARNING: the synthesized images are still noise: f "
                "reaches the training images' mean score close to the noise "
                "(docs/images.md, 'Why the dihedral_box profiles synthesize noise')"
            )

    baselines: dict[str, float] = {}
    flat_train = split.x_train.reshape(len(split.x_train), -1)
    flat_test = split.x_test.reshape(len(split.x_test), -1)
    for name in config.baselines:
        tic = time.perf_counter()
        if name == "deep_svdd":
            svdd = fit_deep_svdd(split.x_train, config.deep_svdd, seed)
            baseline_scores = svdd.score_samples(split.x_test)
        else:
            estimator = _make_baseline(name, config.baselines[name], seed)
            baseline_scores = estimator.fit(flat_train).scores(flat_test)
            if getattr(estimator, "stopped_epoch", None) is not None:
                log(f"class {k}: {name} stopped at epoch {estimator.stopped_epoch}")
        baselines[name] = float(roc_auc_score(normal, baseline_scores))
        seconds[name] = time.perf_counter() - tic
        log(f"class {k}: {name} AUROC {baselines[name]:.4f} ({seconds[name]:.0f} s)")
    seconds["total"] = time.perf_counter() - start
    seconds["cpu_total"] = time.process_time() - cpu_start
    return ClassResult(
        normal_class=k,
        class_name=spec.class_names[k],
        n_train=len(split.x_train),
        n_test_normal=int(normal.sum()),
        n_test_anomalous=int((~normal).sum()),
        auroc=auroc,
        certified=dict(zip(keys, map(float, certified), strict=True)),
        attacked=attacked,
        certified_attack_subset=certified_subset,
        clean_attack_subset=clean_subset,
        n_attack_normal=n_att_normal,
        n_attack_anomalous=n_att_anomalous,
        baselines=baselines,
        seconds={name: round(v, 2) for name, v in seconds.items()},
        final_metrics=final,
        synthesis_png=png,
        synthesis_reach=reach,
        symmetries=symmetries,
    )


def run_image_benchmark(
    config: Mapping[str, Any] | ImageBenchmarkConfig,
    out_dir: str | os.PathLike,
    log: Callable[[str], None] | None = print,
) -> ImageBenchmarkResults:
    """Run the one-class protocol for every normal class of a recipe.

    Writes ``<out_dir>/results.json`` (configuration, per-class figures, means)
    after every class, so an interrupted run keeps the classes already done,
    ``<out_dir>/results.md`` (the table) at the end,
    ``training_curves_class<k>.png`` (OCSDF's History; its data in
    ``training_curves_class<k>.csv``) and ``synthesis_class<k>.png`` when
    ``synthesis.n > 0``.

    Args:
        config: recipe dictionary or a validated :class:`ImageBenchmarkConfig`.
        out_dir: output directory (created).
        log: progress printer (``None`` for silence).

    Returns:
        The :class:`ImageBenchmarkResults`.

    Raises:
        ValueError: on an invalid recipe.
        FileNotFoundError: if the data cannot be found.
    """
    if not isinstance(config, ImageBenchmarkConfig):
        config = ImageBenchmarkConfig.from_dict(config)
    log = log or (lambda message: None)
    strategy = strategy_of(config.distribute)
    out = run_directory(strategy, out_dir)
    data = ImageData(config.data, seed=config.seed)
    results = ImageBenchmarkResults(config, data.protocol, [])
    results.json_path = out / "results.json"
    progress = Progress("images", len(config.data.normal_class))
    for k in config.data.normal_class:
        progress.start(f"{config.data.dataset} normal class {k}")
        results.classes.append(
            _evaluate_class(data.split(k), config, data.spec, out, log, strategy)
        )
        progress.done()
        results.json_path.write_text(json.dumps(results.to_dict(), indent=2))
    results.markdown_path = out / "results.md"
    results.markdown_path.write_text(results_markdown(results))
    log(f"wrote {results.json_path} and {results.markdown_path}")
    return results


def _plot_curves(history: dict, path: Path, k: int) -> None:
    """OCSDF's training curves of normal class ``k`` (and their CSV)."""
    from kocc.experiments.plotting import plot_training_curves

    plot_training_curves(history, path, f"OCSDF, normal class {k}")


def results_markdown(results: ImageBenchmarkResults) -> str:
    """The per-class table (AUROC %, certified and attacked at each radius,
    baselines, seconds) and the means."""
    config = results.config
    keys = _eps_keys(config)
    attacked = config.evaluation.attack.enabled
    leave_one_out = config.data.protocol == "leave_one_out"
    header = ["left-out class" if leave_one_out else "class", "OCSDF"]
    header += [f"cert {k}" for k in keys]
    if attacked:
        header += [f"attacked {k}" for k in keys]
    header += list(config.baselines) + ["seconds"]
    lines = [
        f"# {config.name}: {config.data.dataset}, "
        + ("leave-one-out protocol" if leave_one_out else "one-class protocol"),
        "",
        f"Protocol: {results.protocol}. AUROC in %, normal images = positive.",
        "Certified AUROC on the whole test set"
        + (
            "; attacked AUROC on the attack subset "
            f"({config.evaluation.attack.max_normal} normal / "
            f"{config.evaluation.attack.max_anomalous} anomalous images at most)."
            if attacked
            else "."
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]

    def pct(value: float | None) -> str:
        return "" if value is None else f"{100 * value:.1f}"

    for c in results.classes:
        row = [f"{c.normal_class} ({c.class_name})", pct(c.auroc)]
        row += [pct(c.certified[k]) for k in keys]
        if attacked:
            row += [pct((c.attacked or {}).get(k)) for k in keys]
        row += [pct(c.baselines[b]) for b in config.baselines]
        row.append(f"{c.seconds['total']:.0f}")
        lines.append("| " + " | ".join(row) + " |")
    mean = results.mean()
    if mean:
        row = ["mean", pct(mean["auroc"])]
        row += [pct(mean["certified"][k]) for k in keys]
        if attacked:
            row += [pct(mean.get("attacked", {}).get(k)) for k in keys]
        row += [pct(mean["baselines"][b]) for b in config.baselines]
        row.append(f"{mean['seconds_per_class']:.0f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
