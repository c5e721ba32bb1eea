"""The tabular anomaly-detection benchmark (Béthune et al., ICML 2023, §5.2, Table 2).

For every data set of a recipe, :func:`run_tabular_benchmark` trains OCSDF and, in
the same run and on the same rows, four scikit-learn baselines (Isolation Forest,
One-Class SVM, Local Outlier Factor, a k-nearest-neighbour distance detector); it
reports the AUROC (anomaly = positive class) of each, mean ± std over ``runs``
independent runs, the average rank of each method over the data sets, and the
paper's own Table 2 figures beside ours (:data:`PAPER_TABLE2`, reference values
copied from the paper, never used in a computation other than the printed gap).

Protocols (recipe key ``protocol``):

* ``anomaly_detection`` (the paper's, as in ADBench's unsupervised setting): every
  model is fitted on *all* rows, labels unseen, and scores the same rows.
  Features are standardized with the mean/std of all rows.
* ``one_class``: the normal rows are split; models are fitted on the training
  normals only (standardization fitted on them too) and score the held-out normals
  plus all anomalies. ``test_fraction`` is the share of normals held out.

Label-free defaults: no OCSDF setting of the default recipe
(``recipes/tabular_odds.yaml``) is chosen by looking at the labels. One margin
``m = 0.2`` for every data set, λ = 1, 3 x 64 FullSort networks of 6,000 steps,
the mean ``f`` of five of them; the prior and the feature scaling are picked
per data set by the sparsity rule below from the rows alone (measured in
docs/tabular.md, "Sparsity rule"; ``recipes/tabular_odds_one_network.yaml``
gives every set one network, the box prior and ``tail_stretch``). The labels
only enter the AUROC.

Feature scaling: every method gets the standardized rows; with
``model.feature_scaling: tail_stretch`` (the shipped recipe's), ``heavy_tail``
or ``robust``, OCSDF alone sees them scaled again
(:func:`kocc.datasets.tabular.scaled_rows`, fitted on the training rows:
heavy-tailed features stretched at most 4-fold, only the features at that cap
stretched 4-fold, or median / IQR), and its prior, margin rule and scores live
on those rows.

With a grid, OCSDF's margin ``m`` (the hinge margin of the HKR loss, Eq. (4) of
the paper) is trained for every value in ``training.margins`` (the paper's grid
is {0.01, 0.05, 0.2, 1.0}) and one value per data set is reported, chosen by
``training.margin_selection``:

* ``best_auroc``: the margin with the best mean AUROC over the runs. This uses the
  labels; it is how the paper's Table 2 reports its numbers (per-data-set choice of
  the margin over the grid).
* ``knn_scale``: label-free. ``s`` = median distance from a training row to its
  ``k``-th nearest training neighbour (standardized features); the chosen margin is
  the grid value closest to ``s / 4`` on a log scale. Rationale: with a 1-Lipschitz
  ``f``, a negative sitting between two normal points ``s`` apart can satisfy the
  hinge (``f >= m`` on normals, ``f <= -m`` on negatives) only if ``s >= 4 m``; a
  margin near ``s / 4`` keeps negatives out of the gaps of the sample while staying
  as small as possible.

``training.margin_per_dataset`` fixes the margin of a data set (only that margin is
trained), which is how a known per-data-set choice is replayed.

Sparsity rule (``domain.kind: auto``, ``model.feature_scaling: auto``): the prior
and OCSDF's feature scaling are chosen per data set and run from the training
rows alone, by their sparsity ``s / r`` (:func:`row_sparsity` on the
``tail_stretch`` rows: the median distance from a row to its 10th nearest other
row over the median distance from a row to the rows' mean). Near 1 the sample
is too thin for the local shape of its support, which is what the covering
ball's negatives teach, so ``auto`` keeps the box above ``box_above`` (0.7) and
takes the covering ball elsewhere; ``auto`` scaling is ``tail_stretch`` above
``tail_stretch_above`` (0.6) and ``heavy_tail`` elsewhere (thresholds set on
the 18 ODDS sets, not per set: docs/tabular.md, "Sparsity rule").

Members (``training.members = K > 1``): OCSDF's score is the mean of ``K``
networks' ``f`` (seeds ``1000 * seed + k``). A mean of 1-Lipschitz functions is
1-Lipschitz, so the certificate of one network holds for the mean.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors

from kocc.architectures import lipschitz_mlp
from kocc.baselines.detectors import DETECTORS, Detector
from kocc.datasets.shards import (
    FeatureStatistics,
    feature_statistics,
    max_standardized_norm,
    shard_blocks,
    shard_files,
    sharded_dataset,
    write_tfrecord_shards,
)
from kocc.datasets.tabular import (
    FEATURE_SCALINGS,
    fit_standardizer,
    load_tabular,
    scaled_rows,
    streamed_dataset,
)
from kocc.experiments.competitor_detectors import NETWORK_DETECTORS, NetworkDetector
from kocc.experiments.paper_reference import PAPER_TABLE2
from kocc.experiments.progress import Progress
from kocc.experiments.recipes import (
    ACTIVATION_RULE,
    OPTIMIZER_CHOICES,
    DistributeConfig,
    Recipe,
    RecipeError,
    Rule,
    at_least,
    check_baselines,
    check_steps,
    from_dict,
    non_negative,
    one_of,
    open_fraction,
    positive,
)
from kocc.experiments.tabular_worker import run_dataset_in_process
from kocc.experiments.training import (
    certified_auroc_on_disk,
    run_directory,
    strategy_of,
)
from kocc.models import XLA_MAPS_PER_UPDATE, xla_updates_room
from kocc.score_shards import certified_auroc_from_shards, write_score_shards
from kocc.tabular_prior import PRIOR_KINDS, prior_from_statistics, tabular_prior
from kocc.training import fit_ocsdf
from kocc.training import train_ocsdf as train_ocsdf_on

PROTOCOLS = ("anomaly_detection", "one_class")
#: ``domain.kind`` and ``model.feature_scaling`` value that leaves the choice to
#: the recipe's ``sparsity_rule`` (:func:`rule_choice`).
AUTO = "auto"
MARGIN_SELECTIONS = ("best_auroc", "knn_scale")
#: The recipe's ``domain.pad`` when it is not given, per prior kind (standard
#: deviations): the box widened by 2 on each side; the covering ball as it is.
PRIOR_PADS = {"box": 2.0, "ball": 0.0}
#: The default baselines: isolation_forest, one_class_svm, lof, knn.
BASELINES = tuple(DETECTORS)
#: Every baseline a recipe may list: the defaults, then the invertible networks
#: of the IOCN paper (kocc.experiments.competitor_detectors).
BASELINE_CHOICES = BASELINES + ("iocn", "flow")
METHOD_LABELS = (
    {"ocsdf": "OCSDF"}
    | {n: d.label for n, d in DETECTORS.items()}
    | {n: NETWORK_DETECTORS[n][0] for n in ("iocn", "flow")}
)


# --------------------------------------------------------------------------- recipe
@dataclass
class TabularModelConfig:
    """Recipe section ``model``: the 1-Lipschitz MLP ``d -> widths -> 1``."""

    widths: list[int] = field(
        default_factory=lambda: [64, 64, 64], metadata=at_least(1)
    )
    activation: str = field(default="fullsort", metadata=ACTIVATION_RULE)
    #: OCSDF's inputs: "standard" (the standardized rows the baselines see),
    #: "robust" (those rows scaled by their median and interquartile range),
    #: "tail_stretch" (heavy-tailed features stretched at most 4-fold) or
    #: "heavy_tail" (only the features at tail_stretch's cap, stretched 4-fold)
    #: or "auto" (section sparsity_rule: tail_stretch or heavy_tail per data set)
    feature_scaling: str = field(
        default="standard", metadata=one_of(*FEATURE_SCALINGS, AUTO)
    )


@dataclass
class TabularDomainConfig:
    """Recipe section ``domain``: the negatives' prior on standardized features
    (:func:`kocc.tabular_prior.tabular_prior`)."""

    #: box, ball, gaussian, or auto (section sparsity_rule: box or ball per data set)
    kind: str = field(default="box", metadata=one_of(*PRIOR_KINDS, AUTO))
    #: box: added on each side of every feature; ball: added to the radius
    #: (standard deviations); None: PRIOR_PADS[kind] (of the kind auto picks)
    pad: float | None = field(default=None, metadata=non_negative())
    scale: float = field(default=1.0, metadata=positive())


@dataclass
class SparsityRule:
    """Recipe section ``sparsity_rule``: the label-free choice, per data set and
    run, of the prior (``domain.kind: auto``) and of OCSDF's feature scaling
    (``model.feature_scaling: auto``) from the rows' sparsity ``s / r``
    (:func:`row_sparsity`, :func:`rule_choice`); unused when neither is
    ``auto``."""

    #: k of s / r: the distance to the k-th nearest other row
    neighbors: int = field(default=10, metadata=at_least(1))
    #: domain.kind auto: the box where s / r > box_above, the covering ball elsewhere
    box_above: float = field(default=0.7, metadata=positive())
    #: feature_scaling auto: tail_stretch where s / r > tail_stretch_above,
    #: heavy_tail elsewhere
    tail_stretch_above: float = field(default=0.6, metadata=positive())


@dataclass
class TabularTrainingConfig:
    """Recipe section ``training``: the HKR loss, its margin rule, the optimizer."""

    #: one margin (label-free); a grid is chosen by ``margin_selection``
    margins: list[float] | float = field(
        default_factory=lambda: [0.2], metadata=positive()
    )
    margin_selection: str = field(
        default="best_auroc", metadata=one_of(*MARGIN_SELECTIONS)
    )
    margin_per_dataset: dict[str, float] = field(default_factory=dict)
    knn_scale_neighbors: int = field(default=10, metadata=at_least(1))
    #: λ of the HKR loss (the paper's 100 scores worse on the AD protocol)
    lam: float = field(default=3.0, metadata=positive())
    nr_steps: int = field(default=4, metadata=at_least(1))
    batch_size: int = field(default=256, metadata=at_least(1))
    steps: int = field(default=1000, metadata=at_least(1))
    #: networks per run whose mean f is OCSDF's score (seeds 1000 * seed + k)
    members: int = field(default=1, metadata=at_least(1))
    epochs: int = 1
    learning_rate: float = field(default=1e-3, metadata=positive())
    #: None: a constant rate; a number: linear decay from ``learning_rate`` to it
    #: over the ``steps`` updates (kocc.training.make_optimizer)
    final_learning_rate: float | None = field(default=None, metadata=non_negative())
    optimizer: str = field(default="rmsprop", metadata=one_of(*OPTIMIZER_CHOICES))
    #: the update as one XLA program (kocc.models.OCSDF.compile(jit_compile=True))
    jit_compile: bool = False
    allow_long_runs: bool = False
    #: 0: train from the rows in memory; N >= 1: write the training rows as N
    #: TFRecord shards (a temporary folder in the run folder) and stream them
    #: with kocc.datasets.shards.sharded_dataset (docs/distributed.md)
    shards: int = field(default=0, metadata=at_least(0))
    #: OCSDF's AUROC from sorted score shards on disk (kocc.score_shards) instead
    #: of the scores in memory: the same value, for test sets too large to hold
    score_shards: bool = False

    def validate(self, key: str) -> None:
        check_steps(self, key)
        if self.epochs != 1:
            raise RecipeError(
                key=f"{key}.epochs",
                expected="1 (the tabular benchmark counts steps)",
                given=self.epochs,
            )
        if isinstance(self.margins, list) and not self.margins:
            raise RecipeError(key=f"{key}.margins", expected="a margin", given=[])
        if self.members > 1 and self.score_shards:
            raise RecipeError(
                key=f"{key}.score_shards",
                expected="false with members > 1 (the score shards hold one "
                "network's scores)",
                given=self.score_shards,
            )
        for name, margin in self.margin_per_dataset.items():
            Rule("a finite number > 0", _finite_positive).check(
                margin, f"{key}.margin_per_dataset.{name}"
            )


@dataclass
class TabularShardFilesConfig:
    """Recipe section ``shard_files``: one data set larger than memory, read from
    TFRecord shards (written by ``kocc shards`` or
    :func:`kocc.datasets.shards.write_tfrecord_shards`) and streamed: OCSDF trains
    from the ``train`` files, the feature statistics (standardization, prior)
    come from one streaming pass over them, and the ``normal`` and ``anomalous``
    files are scored shard by shard into sorted score files whose merge gives
    the AUROC (docs/distributed.md). The files are the split: ``protocol``,
    ``test_fraction`` and ``data_dir`` do not apply; ``datasets`` is the one
    name the tables show; no baseline runs (they need the rows in memory)."""

    #: glob of the training rows' shards (e.g. "data/mine/train-*.tfrecord",
    #: relative to the working directory); empty: the data sets are loaded
    #: into memory
    train: str = ""
    #: glob of the normal test rows' shards
    normal: str = ""
    #: glob of the anomalous test rows' shards
    anomalous: str = ""
    #: rows scored at once (one batch of rows and one shard's scores in memory)
    score_batch_size: int = field(default=65536, metadata=at_least(1))

    @property
    def enabled(self) -> bool:
        return bool(self.train)

    def validate(self, key: str) -> None:
        given = {
            "train": self.train,
            "normal": self.normal,
            "anomalous": self.anomalous,
        }
        if any(given.values()):
            for name, pattern in given.items():
                if not pattern:
                    raise RecipeError(
                        key=f"{key}.{name}",
                        expected="a glob of TFRecord shards (train, normal and "
                        "anomalous are given together)",
                        given=pattern,
                    )


def _check_shard_files(recipe: TabularRecipe) -> None:
    """What a ``shard_files`` run cannot combine with (it never loads the rows)."""
    if not recipe.shard_files.enabled:
        return
    datasets = (
        [recipe.datasets] if isinstance(recipe.datasets, str) else recipe.datasets
    )
    if len(datasets) != 1:
        raise RecipeError(
            key="datasets",
            expected="one name (the label of the shard_files data set in the tables)",
            given=list(datasets),
        )
    if recipe.baselines:
        raise RecipeError(
            key="baselines",
            expected="none with shard_files (the baselines need the rows in "
            "memory): baselines: []",
            given=sorted(recipe.baselines),
        )
    if recipe.model.feature_scaling != "standard":
        raise RecipeError(
            key="model.feature_scaling",
            expected="standard with shard_files (the quantiles of robust scaling "
            "need the rows in memory)",
            given=recipe.model.feature_scaling,
        )
    if recipe.domain.kind == AUTO:
        raise RecipeError(
            key="domain.kind",
            expected="box, ball or gaussian with shard_files (auto measures the "
            "rows' neighbour distances in memory)",
            given=AUTO,
        )
    if recipe.training.members != 1:
        raise RecipeError(
            key="training.members",
            expected="1 with shard_files (one network is streamed and scored)",
            given=recipe.training.members,
        )
    if recipe.training.shards:
        raise RecipeError(
            key="training.shards",
            expected="0 with shard_files (the files are streamed as they are)",
            given=recipe.training.shards,
        )
    margins = recipe.training.margins
    if (
        recipe.training.margin_selection == "knn_scale"
        and isinstance(margins, list)
        and len(margins) > 1
    ):
        raise RecipeError(
            key="training.margin_selection",
            expected="best_auroc with shard_files and several margins (knn_scale "
            "needs the rows in memory)",
            given="knn_scale",
        )


def _finite_positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@dataclass
class TabularRecipe(Recipe):
    """``kind: tabular``: the schema of ``recipes/tabular_odds.yaml``."""

    kind: str = field(default="tabular", metadata=one_of("tabular"))
    name: str = "tabular"
    datasets: list[str] | str = field(default_factory=list)
    data_dir: str | None = None
    protocol: str = field(default="anomaly_detection", metadata=one_of(*PROTOCOLS))
    test_fraction: float = field(default=0.5, metadata=open_fraction())
    runs: int = field(default=3, metadata=at_least(1))
    model: TabularModelConfig = field(default_factory=TabularModelConfig)
    domain: TabularDomainConfig = field(default_factory=TabularDomainConfig)
    sparsity_rule: SparsityRule = field(default_factory=SparsityRule)
    training: TabularTrainingConfig = field(default_factory=TabularTrainingConfig)
    #: the baselines fitted in the same run: a list of names or a mapping name ->
    #: options; isolation_forest, one_class_svm, local_outlier_factor, knn
    #: (scikit-learn options), iocn and flow (options: docs/competitors.md)
    baselines: dict[str, Any] | list[str] = field(
        default_factory=lambda: {name: {} for name in BASELINES}
    )
    paper_reference: bool = True
    distribute: DistributeConfig = field(default_factory=DistributeConfig)
    #: project every row onto the unit sphere (x / |x|) before standardizing:
    #: the IOCN paper's hypersphere projection of image features
    l2_normalize: bool = False
    shard_files: TabularShardFilesConfig = field(
        default_factory=TabularShardFilesConfig
    )

    def validate(self, key: str) -> None:
        datasets = [self.datasets] if isinstance(self.datasets, str) else self.datasets
        if not datasets:
            raise RecipeError(
                key="datasets", expected="a non-empty list of names", given=datasets
            )
        lowered = [d.lower() for d in datasets]
        if len(set(lowered)) != len(lowered):
            raise RecipeError(
                key="datasets", expected="no duplicates", given=list(datasets)
            )
        self.datasets = lowered
        self.baselines = check_baselines(
            self.baselines, BASELINE_CHOICES, _make_baseline
        )
        _check_shard_files(self)
        if self.training.jit_compile and self.distribute.strategy == "multi_worker":
            # each data set trains in a child process, which cannot join the
            # parent's cluster (and the XLA update compiles one replica's)
            raise RecipeError(
                key="training.jit_compile",
                expected="false under distribute.strategy multi_worker",
                given=True,
            )


@dataclass(frozen=True)
class OCSDFSettings:
    """OCSDF settings of the benchmark (recipe sections ``model`` and ``training``).

    Attributes:
        widths: hidden widths of the 1-Lipschitz MLP.
        activation: its activation (deel-lip name, e.g. ``"fullsort"``).
        feature_scaling: OCSDF's inputs, ``"standard"`` (the standardized rows),
            ``"robust"``, ``"tail_stretch"`` or ``"heavy_tail"``
            (:func:`kocc.datasets.tabular.scaled_rows`), or ``"auto"``
            (:func:`rule_choice`).
        margins: margin grid ``m`` of the HKR loss.
        margin_selection: ``"best_auroc"`` or ``"knn_scale"`` (module docstring).
        margin_per_dataset: fixed margin per data set, overriding the grid.
        knn_scale_neighbors: ``k`` of the ``knn_scale`` rule.
        lam: weight λ of the hinge term of the HKR loss.
        nr_steps: Newton-Raphson steps T of Algorithm 1.
        batch_size: rows per gradient step.
        steps: gradient steps per training.
        members: networks per run; OCSDF's score is the mean of their ``f``
            (:func:`member_seeds`).
        learning_rate: optimizer step size (the first step's, with a decay).
        final_learning_rate: ``None`` for a constant rate, else the rate the
            step size decays to, linearly over the ``steps`` updates.
        optimizer: ``"rmsprop"``, ``"adam"`` or ``"sgd"``.
        jit_compile: the update as one XLA program
            (:meth:`kocc.models.OCSDF.compile`).
        shards: TFRecord shards the training rows are streamed from (0: memory).
        score_shards: AUROC from score shards on disk.
    """

    widths: tuple[int, ...] = (64, 64, 64)
    activation: str = "fullsort"
    feature_scaling: str = "standard"
    margins: tuple[float, ...] = (0.2,)
    margin_selection: str = "best_auroc"
    margin_per_dataset: dict[str, float] = field(default_factory=dict)
    knn_scale_neighbors: int = 10
    lam: float = 3.0
    nr_steps: int = 4
    batch_size: int = 256
    steps: int = 1000
    members: int = 1
    learning_rate: float = 1e-3
    final_learning_rate: float | None = None
    optimizer: str = "rmsprop"
    jit_compile: bool = False
    shards: int = 0
    score_shards: bool = False

    def margin_grid(self, dataset: str) -> tuple[float, ...]:
        """The margins OCSDF trains on ``dataset``: its ``margin_per_dataset``
        entry alone, else the grid."""
        fixed = self.margin_per_dataset.get(dataset)
        return (fixed,) if fixed is not None else self.margins

    def picks_margin(self, grid: Sequence[float]) -> bool:
        """Whether the ``knn_scale`` rule picks one margin of ``grid`` per run
        (label-free), so that each run trains that one only."""
        return self.margin_selection == "knn_scale" and len(grid) > 1


@dataclass(frozen=True)
class TabularBenchmarkConfig:
    """A validated ``tabular`` benchmark recipe (see ``recipes/tabular_odds.yaml``).

    Attributes:
        datasets: data set names for :func:`kocc.datasets.tabular.load_tabular`.
        data_dir: data directory; ``None`` reads ``$KOCC_DATA_DIR``.
        protocol: ``"anomaly_detection"`` or ``"one_class"``.
        test_fraction: share of normal rows held out (``one_class`` only).
        runs: independent runs per data set (seeds ``seed .. seed + runs - 1``).
        seed: base seed.
        prior_kind: ``"box"``, ``"ball"`` or ``"gaussian"``
            (:func:`kocc.tabular_prior.tabular_prior`), or ``"auto"``
            (:func:`rule_choice`).
        prior_pad: box or ball padding in standardized units; ``None`` (with
            ``auto`` only): the picked kind's :data:`PRIOR_PADS` (:meth:`pad_of`).
        prior_scale: Gaussian std multiplier.
        sparsity_rule: the thresholds of ``auto``.
        ocsdf: OCSDF settings.
        baselines: baseline name -> keyword arguments (``max_fit_rows`` for
            ``one_class_svm`` caps the rows it is fitted on; ``n_neighbors`` for
            ``local_outlier_factor`` and ``knn``).
        name: recipe name, the stem of the written files.
        paper_reference: print the paper's Table 2 figures beside ours.
        distribute: the ``tf.distribute`` strategy OCSDF trains under
            (``training.batch_size`` is the global batch).
        shard_files: a data set larger than memory, streamed from TFRecord
            shards (section ``shard_files``; unused when its ``train`` is empty).
    """

    datasets: tuple[str, ...]
    data_dir: str | None = None
    protocol: str = "anomaly_detection"
    test_fraction: float = 0.5
    runs: int = 3
    seed: int = 0
    prior_kind: str = "box"
    prior_pad: float | None = 2.0
    prior_scale: float = 1.0
    sparsity_rule: SparsityRule = field(default_factory=SparsityRule)
    ocsdf: OCSDFSettings = field(default_factory=OCSDFSettings)
    baselines: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {name: {} for name in BASELINES}
    )
    name: str = "tabular"
    paper_reference: bool = True
    distribute: DistributeConfig = field(default_factory=DistributeConfig)
    l2_normalize: bool = False
    shard_files: TabularShardFilesConfig = field(
        default_factory=TabularShardFilesConfig
    )

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> TabularBenchmarkConfig:
        """Validate a recipe mapping (as parsed from YAML) with :class:`TabularRecipe`.

        Raises:
            RecipeError: naming the key path, what was expected and what was given.
        """
        if not isinstance(config, Mapping):
            raise RecipeError(key="recipe", expected="a mapping", given=config)
        recipe = from_dict(TabularRecipe, dict(config))
        training = recipe.training
        margins = training.margins
        ocsdf = OCSDFSettings(
            widths=tuple(recipe.model.widths),
            activation=recipe.model.activation,
            feature_scaling=recipe.model.feature_scaling,
            margins=tuple([margins] if isinstance(margins, float) else margins),
            margin_selection=training.margin_selection,
            margin_per_dataset={
                str(k).lower(): float(v) for k, v in training.margin_per_dataset.items()
            },
            knn_scale_neighbors=training.knn_scale_neighbors,
            lam=training.lam,
            nr_steps=training.nr_steps,
            batch_size=training.batch_size,
            steps=training.steps,
            members=training.members,
            learning_rate=training.learning_rate,
            final_learning_rate=training.final_learning_rate,
            optimizer=training.optimizer,
            jit_compile=training.jit_compile,
            shards=training.shards,
            score_shards=training.score_shards,
        )
        return cls(
            datasets=tuple(recipe.datasets),
            data_dir=recipe.data_dir,
            protocol=recipe.protocol,
            test_fraction=recipe.test_fraction,
            runs=recipe.runs,
            seed=recipe.seed,
            prior_kind=recipe.domain.kind,
            prior_pad=(
                recipe.domain.pad
                if recipe.domain.pad is not None or recipe.domain.kind == AUTO
                else PRIOR_PADS.get(recipe.domain.kind, 0.0)
            ),
            prior_scale=recipe.domain.scale,
            sparsity_rule=recipe.sparsity_rule,
            ocsdf=ocsdf,
            baselines={
                name: dict(recipe.baselines[name] or {})
                for name in BASELINE_CHOICES
                if name in recipe.baselines
            },
            name=recipe.name,
            paper_reference=recipe.paper_reference,
            distribute=recipe.distribute,
            l2_normalize=recipe.l2_normalize,
            shard_files=recipe.shard_files,
        )

    def pad_of(self, kind: str) -> float:
        """The box or ball padding of prior ``kind``: the recipe's ``domain.pad``,
        else :data:`PRIOR_PADS` (``kind`` is the one ``auto`` picked, if auto)."""
        return (
            self.prior_pad if self.prior_pad is not None else PRIOR_PADS.get(kind, 0.0)
        )

    @property
    def methods(self) -> tuple[str, ...]:
        """OCSDF followed by the configured baselines, in table order."""
        return ("ocsdf",) + tuple(
            name for name in BASELINE_CHOICES if name in self.baselines
        )


# ------------------------------------------------------------------------ baselines
#: This benchmark's settings on top of scikit-learn's defaults: the kernel SVM
#: is fitted on at most 10,000 rows (seeded subset).
DETECTOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "one_class_svm": {"max_fit_rows": 10000}
}


def _make_baseline(name: str, options: Mapping[str, Any]) -> Detector | NetworkDetector:
    """The detector of :mod:`kocc.baselines.detectors` (or, for ``iocn`` and
    ``flow``, :class:`~kocc.experiments.competitor_detectors.NetworkDetector`)
    with this benchmark's defaults (:data:`DETECTOR_DEFAULTS`) under the
    recipe's options."""
    if name in NETWORK_DETECTORS:
        return NetworkDetector(name, **options)
    return Detector(name, **{**DETECTOR_DEFAULTS.get(name, {}), **options})


# ----------------------------------------------------------------------------- OCSDF
def knn_scale_margin(
    x: np.ndarray,
    margins: Sequence[float],
    n_neighbors: int = 10,
    max_queries: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Label-free margin choice: the grid value closest (log scale) to ``s / 4``.

    ``s`` is the median, over at most ``max_queries`` seeded training rows, of the
    distance to their ``n_neighbors``-th nearest neighbour among all training rows
    (self excluded). See the module docstring for the rationale.

    Args:
        x: standardized training rows ``(n, d)``, ``n > n_neighbors``.
        margins: candidate margins, all ``> 0``.
        n_neighbors: ``k``.
        max_queries: rows whose neighbour distance is measured.
        seed: seed of the query subsample.

    Returns:
        ``(margin, s)``.
    """
    if x.shape[0] <= n_neighbors:
        raise ValueError(
            f"knn_scale needs more than {n_neighbors} rows, got {x.shape[0]}."
        )
    queries = np.random.default_rng(seed).choice(
        x.shape[0], min(max_queries, x.shape[0]), replace=False
    )
    index = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(x)
    distances, neighbours = index.kneighbors(x[queries])
    # Drop the query row itself (or one zero-distance duplicate of it).
    not_self = neighbours != queries[:, None]
    keep = np.cumsum(not_self, axis=1) <= n_neighbors
    kth = np.where(not_self & keep, distances, -np.inf).max(axis=1)
    scale = float(np.median(kth))
    grid = np.asarray(margins, dtype=np.float64)
    target = max(scale / 4.0, 1e-12)
    return float(grid[np.argmin(np.abs(np.log(grid) - np.log(target)))]), scale


def row_sparsity(
    x: np.ndarray, n_neighbors: int = 10, max_queries: int = 2000, seed: int = 0
) -> float:
    """The rows' sparsity ``s / r``, scale-free and label-free.

    ``s`` is :func:`knn_scale_margin`'s: the median distance from a row (at most
    ``max_queries`` seeded query rows) to its ``n_neighbors``-th nearest other
    row; ``r`` is the median distance from a row to the rows' mean. Near 1, a
    row's ``k``-th neighbour is as far as the bulk's radius: the sample is too
    thin to show the local shape of its support.

    Args:
        x: rows ``(n, d)``, ``n > n_neighbors``.
        n_neighbors: ``k``.
        max_queries: rows whose neighbour distance is measured.
        seed: seed of the query subsample.

    Returns:
        ``s / r``.

    Raises:
        ValueError: if there are not more than ``k`` rows, or all rows are equal.
    """
    _, kth = knn_scale_margin(x, [1.0], n_neighbors, max_queries, seed)
    radius = float(np.median(np.linalg.norm(x - x.mean(axis=0), axis=1)))
    if radius <= 0.0:
        raise ValueError("row_sparsity needs rows that are not all equal.")
    return kth / radius


def rule_choice(
    x: np.ndarray,
    prior_kind: str,
    feature_scaling: str,
    rule: SparsityRule,
    seed: int = 0,
) -> tuple[str, str, float | None]:
    """The prior and feature scaling of one run, ``auto`` resolved by the sparsity
    rule on the standardized training rows ``x`` (labels unused).

    ``s / r`` (:func:`row_sparsity`) is measured on the ``tail_stretch`` rows.
    ``auto`` prior: ``"box"`` where ``s / r > rule.box_above``, else ``"ball"``
    (the covering ball). ``auto`` scaling: ``"tail_stretch"`` where ``s / r >
    rule.tail_stretch_above``, else ``"heavy_tail"``.

    Args:
        x: standardized training rows ``(n, d)``.
        prior_kind: the recipe's ``domain.kind``.
        feature_scaling: the recipe's ``model.feature_scaling``.
        rule: the thresholds.
        seed: seed of :func:`row_sparsity`'s query rows.

    Returns:
        ``(prior_kind, feature_scaling, s / r)``; ``s / r`` is ``None`` when
        neither setting is ``auto`` (nothing measured).
    """
    if AUTO not in (prior_kind, feature_scaling):
        return prior_kind, feature_scaling, None
    stretched, _ = scaled_rows(x, None, "tail_stretch")
    sparsity = row_sparsity(stretched, rule.neighbors, seed=seed)
    if prior_kind == AUTO:
        prior_kind = "box" if sparsity > rule.box_above else "ball"
    if feature_scaling == AUTO:
        feature_scaling = (
            "tail_stretch" if sparsity > rule.tail_stretch_above else "heavy_tail"
        )
    return prior_kind, feature_scaling, sparsity


def member_seeds(seed: int, members: int) -> list[int]:
    """The seeds of a run's networks: ``[seed]`` for one, ``1000 * seed + k``
    (``k < members``) for several (the lever script's ensembles,
    benchmarks/tabular_levers.py ``--members``)."""
    if members == 1:
        return [seed]
    return [1000 * seed + k for k in range(members)]


#: Points on a tabular run's training curve (Keras epochs per fit).
CURVE_POINTS = 20


def curve_epochs(steps: int, points: int = CURVE_POINTS) -> int:
    """The largest number of equal Keras epochs, at most ``points``, that
    ``steps`` updates split into (1 when ``steps`` is prime and > ``points``)."""
    return max(k for k in range(1, max(1, min(points, steps)) + 1) if steps % k == 0)


def train_ocsdf(
    x_train: np.ndarray,
    settings: OCSDFSettings,
    margin: float,
    domain: Any,
    seed: int,
    strategy: tf.distribute.Strategy | None = None,
    work_dir: str | os.PathLike | None = None,
    curve_points: int = CURVE_POINTS,
    model: Any = None,
):
    """Train OCSDF on standardized rows streamed by :func:`streamed_dataset`.

    The ``settings.steps`` updates run as :func:`curve_epochs` Keras epochs of
    equal length, so that ``model.history`` holds a training curve. The data
    stream repeats endlessly, the negatives' seed follows the optimizer's step
    and the protocol has no warm-up, so the split does not change the training
    (tested: the same weights as one epoch of ``settings.steps`` updates).

    With ``settings.shards = N >= 1`` the rows are first written as ``N``
    TFRecord shards (a temporary folder in ``work_dir``, removed after the fit)
    and streamed by :func:`kocc.datasets.shards.sharded_dataset`, the path of
    training data larger than memory.

    Args:
        x_train: float32 ``(n, d)`` training rows (not copied).
        settings: network and optimisation settings.
        margin: HKR margin ``m``.
        domain: negative prior with ``sample(n, seed)``/``project(z)``.
        seed: seed of the initialisation, the batches and the negatives.
        strategy: the ``tf.distribute`` strategy the model is built and
            trained under (default: the current one); ``settings.batch_size``
            is the global batch.
        work_dir: where the shards' temporary folder goes (default: the
            system's temporary directory).
        curve_points: at most this many points on the training curve.
        model: an OCSDF an earlier call returned for the same rows' width,
            settings, margin and domain, to train the new network on
            (:func:`fit_on_batches`): no new tracing or compilation.

    Returns:
        The trained :class:`kocc.models.OCSDF` (``model`` when given).
    """
    tf.keras.utils.set_random_seed(seed)
    strategy = strategy or tf.distribute.get_strategy()
    batch_size = min(settings.batch_size, x_train.shape[0])
    with (
        tempfile.TemporaryDirectory(prefix="shards-", dir=work_dir)
        if settings.shards
        else contextlib.nullcontext()
    ) as folder:
        if settings.shards:
            files = write_tfrecord_shards([x_train], folder, settings.shards)
            data = sharded_dataset(files, x_train.shape[1:], batch_size, seed=seed)
        else:
            data = streamed_dataset(x_train, batch_size, seed=seed)
        return fit_on_batches(
            data,
            x_train.shape[1],
            settings,
            margin,
            domain,
            seed,
            strategy,
            curve_points,
            model,
        )


def fit_on_batches(
    data: tf.data.Dataset,
    n_features: int,
    settings: OCSDFSettings,
    margin: float,
    domain: Any,
    seed: int,
    strategy: tf.distribute.Strategy | None = None,
    curve_points: int = CURVE_POINTS,
    model: Any = None,
):
    """Build OCSDF in ``strategy.scope()`` and fit it on an endless stream of
    batches for ``settings.steps`` updates (:func:`curve_epochs` epochs): the
    one training path of the in-memory, sharded and ``shard_files`` runs.

    With ``model`` (an OCSDF an earlier call returned, for the same
    ``n_features``, ``settings``, ``margin``, ``domain`` and strategy), the
    new network is trained on it (:meth:`kocc.models.OCSDF.restart`: a new
    backbone's weights and ``seed``): the same network to the bit as a new
    model's, without tracing and compiling the update again.
    """
    tf.keras.utils.set_random_seed(seed)
    strategy = strategy or tf.distribute.get_strategy()
    epochs = curve_epochs(settings.steps, curve_points)
    with strategy.scope():
        backbone = lipschitz_mlp(
            n_features, widths=settings.widths, activation=settings.activation
        )
        if model is not None:
            if model.margin != margin or model.domain is not domain:
                raise ValueError(
                    f"fit_on_batches(model=...) restarts a model of the same "
                    f"margin and domain: the model has m={model.margin}, the "
                    f"call m={margin}"
                    + ("" if model.domain is domain else " and another domain")
                )
            model.restart(backbone.get_weights(), seed)
            fit_ocsdf(
                model, data, epochs=epochs, steps_per_epoch=settings.steps // epochs
            )
            return model
        model, _ = train_ocsdf_on(
            backbone,
            domain,
            data,
            epochs=epochs,
            steps_per_epoch=settings.steps // epochs,
            margin=margin,
            lam=settings.lam,
            nr_steps=settings.nr_steps,
            optimizer=settings.optimizer,
            learning_rate=settings.learning_rate,
            final_learning_rate=settings.final_learning_rate,
            decay_steps=settings.steps,
            jit_compile=settings.jit_compile,
            seed=seed,
        )
    return model


def sharded_auroc(
    model: Any,
    x_test: np.ndarray,
    y_test: np.ndarray,
    work_dir: str | os.PathLike | None = None,
    batch_size: int = 65536,
) -> float:
    """OCSDF's AUROC (anomaly = positive, score ``-f``) from score shards on disk
    (:func:`kocc.experiments.training.certified_auroc_on_disk` at ``eps = 0``):
    the same pairs as ``roc_auc_score(y_test, -f)``, ties counted one half.

    Returns:
        The AUROC, equal to the in-memory value.
    """
    return float(
        certified_auroc_on_disk(model, x_test, y_test == 0, 0.0, work_dir, batch_size)
    )


def standardized_batches(path: str, statistics: FeatureStatistics, rows: int) -> Any:
    """The rows of one shard, standardized with ``statistics``, ``rows`` at a
    time (float32; each shard checked by :func:`kocc.datasets.shards.shard_blocks`
    against the training files' feature count)."""
    mean = statistics.mean.astype(np.float32)
    scale = statistics.scale.astype(np.float32)
    pending: list[np.ndarray] = []
    held = 0
    reference = f"in the training shards, e.g. {statistics.files[0]!r}"
    for block in shard_blocks(path, statistics.features, reference):
        pending.append(block)
        held += len(block)
        if held >= rows:
            values = np.concatenate(pending)
            for start in range(0, held - held % rows, rows):
                yield (values[start : start + rows] - mean) / scale
            rest = values[held - held % rows :]
            pending, held = [rest], len(rest)
    if held:
        yield (np.concatenate(pending) - mean) / scale


def shard_files_auroc(
    model: Any,
    normal: list[str],
    anomalous: list[str],
    statistics: FeatureStatistics,
    work_dir: str | os.PathLike | None = None,
    rows: int = 65536,
) -> tuple[float, int, int]:
    """OCSDF's AUROC on test rows in TFRecord shards, in bounded memory.

    Every shard is scored ``rows`` rows at a time into its own sorted score file
    (:func:`kocc.score_shards.write_score_shards`, a temporary ``scores-*``
    folder in ``work_dir``); :func:`kocc.score_shards.certified_auroc_from_shards`
    merges them at ``eps = 0``: the AUROC of ``-f`` with anomalies positive,
    ties counted one half, as ``roc_auc_score``.

    Returns:
        ``(auroc, normal rows, anomalous rows)``.
    """

    def scores(path: str):
        for batch in standardized_batches(path, statistics, rows):
            # predict_on_batch: no tf.data pipeline per call (model.predict's
            # grow the peak memory with the number of calls)
            yield np.asarray(model.predict_on_batch(batch)).reshape(-1)

    with tempfile.TemporaryDirectory(prefix="scores-", dir=work_dir) as folder:
        normal_scores = [
            score
            for i, path in enumerate(normal)
            for score in write_score_shards(scores(path), folder, f"normal-{i:05d}")
        ]
        anomalous_scores = [
            score
            for i, path in enumerate(anomalous)
            for score in write_score_shards(scores(path), folder, f"anomalous-{i:05d}")
        ]
        auroc = float(certified_auroc_from_shards(normal_scores, anomalous_scores, 0.0))
        sizes = [
            sum(int(np.load(f, mmap_mode="r").size) for f in group)
            for group in (normal_scores, anomalous_scores)
        ]
    return auroc, sizes[0], sizes[1]


def _reported_margin(
    grid: Sequence[float], fixed: float | None, by_margin: dict[float, list[float]]
) -> tuple[float, str]:
    """The margin a data set reports and its rule: the fixed one, the only one,
    or the best mean AUROC over the grid (labels)."""
    if fixed is not None:
        return fixed, "fixed"
    if len(grid) == 1:
        return grid[0], "single"
    margin = max(grid, key=lambda m: float(np.mean(by_margin[m])))
    return margin, "best_auroc (labels)"


def _run_shard_files(
    name: str,
    config: TabularBenchmarkConfig,
    log: Callable[[str], None],
    strategy: tf.distribute.Strategy | None = None,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> tuple[DatasetResult, list[dict[str, Any]]]:
    """The benchmark of one data set on disk (recipe section ``shard_files``).

    Nothing grows with the data set: the feature statistics come from one
    streaming pass (:func:`kocc.datasets.shards.feature_statistics`), the test
    shards are checked in another (feature count, NaN: before any training), OCSDF
    trains from :func:`kocc.datasets.shards.sharded_dataset` (files interleaved,
    standardized in the pipeline) and the test shards are scored shard by
    shard (:func:`shard_files_auroc`).
    """
    files = config.shard_files
    train = shard_files(files.train, "recipe key 'shard_files.train'")
    normal = shard_files(files.normal, "recipe key 'shard_files.normal'")
    anomalous = shard_files(files.anomalous, "recipe key 'shard_files.anomalous'")
    statistics = feature_statistics(train)
    # the test shards checked (feature count, NaN) before any training
    reference = f"in the training shards, e.g. {train[0]!r}"
    counts = {
        kind: sum(
            len(block)
            for path in paths
            for block in shard_blocks(path, statistics.features, reference)
        )
        for kind, paths in (("normal", normal), ("anomalous", anomalous))
    }
    log(
        f"{name}: {statistics.count} training rows of {statistics.features} "
        f"features in {len(train)} shard(s); {counts['normal']} normal and "
        f"{counts['anomalous']} anomalous test rows"
    )
    mean = tf.constant(statistics.mean, tf.float32)
    scale = tf.constant(statistics.scale, tf.float32)
    domain = prior_from_statistics(
        statistics,
        config.prior_kind,
        config.prior_pad,
        config.prior_scale,
        max_norm=(
            max_standardized_norm(train, statistics)
            if config.prior_kind == "ball"
            else None
        ),
    )
    settings = config.ocsdf
    fixed = settings.margin_per_dataset.get(name)
    grid = settings.margin_grid(name)
    batch_size = min(settings.batch_size, statistics.count)
    by_margin: dict[float, list[float]] = {}
    rows: list[dict[str, Any]] = []
    seconds = 0.0
    for run in range(config.runs):
        if progress is not None:
            progress.start(f"{name} run {run + 1}/{config.runs}")
        seed = config.seed + run
        for margin in grid:
            start = time.perf_counter()
            tf.keras.utils.set_random_seed(seed)  # the shuffle's global seed
            data = sharded_dataset(
                train,
                (statistics.features,),
                batch_size,
                seed=seed,
                transform=lambda block: (block - mean) / scale,
            )
            model = fit_on_batches(
                data, statistics.features, settings, margin, domain, seed, strategy
            )
            if run == 0 and margin == grid[0] and work_dir is not None:
                _plot_curves(model.history.history, Path(work_dir), name, log)
            value, _, _ = shard_files_auroc(
                model, normal, anomalous, statistics, work_dir, files.score_batch_size
            )
            seconds += time.perf_counter() - start
            by_margin.setdefault(margin, []).append(value)
            rows.append(
                {"dataset": name, "method": "ocsdf", "run": run, "seed": seed}
                | {"margin": margin, "auroc": value}
            )
            log(f"{name} run {run} OCSDF m={margin:g}: AUROC {value:.4f}")
            del model
            tf.keras.backend.clear_session()
        if progress is not None:
            progress.done()
    margin, rule = _reported_margin(grid, fixed, by_margin)
    result = DatasetResult(
        dataset=name,
        n_rows=statistics.count + counts["normal"] + counts["anomalous"],
        n_features=statistics.features,
        n_anomalies=counts["anomalous"],
        margin=float(margin),
        margin_rule=rule,
        auroc={"ocsdf": list(by_margin[margin])},
        ocsdf_by_margin=by_margin,
        seconds={"ocsdf": seconds},
    )
    return result, rows


# --------------------------------------------------------------------------- running
@dataclass
class DatasetResult:
    """Measured AUROCs of one data set.

    Attributes:
        dataset: name.
        n_rows, n_features, n_anomalies: size of the table.
        margin: the reported OCSDF margin.
        margin_rule: how it was chosen (``best_auroc``, ``knn_scale (s=...)``,
            ``fixed``).
        auroc: method -> AUROC per run (OCSDF at the reported margin).
        ocsdf_by_margin: margin -> OCSDF AUROC per run.
        seconds: method -> total wall time over the runs (fit + score).
        deterministic: methods computed once and reused for every run.
        setting: the prior and scaling the sparsity rule picked, with ``s / r``
            (each distinct pick over the runs; empty without ``auto``).
    """

    dataset: str
    n_rows: int
    n_features: int
    n_anomalies: int
    margin: float
    margin_rule: str
    auroc: dict[str, list[float]]
    ocsdf_by_margin: dict[float, list[float]]
    seconds: dict[str, float]
    deterministic: list[str] = field(default_factory=list)
    setting: str = ""

    def mean(self, method: str) -> float:
        """Mean AUROC of ``method`` over the runs."""
        return float(np.mean(self.auroc[method]))

    def std(self, method: str) -> float:
        """Standard deviation (ddof=0) of ``method``'s AUROC over the runs."""
        return float(np.std(self.auroc[method]))


@dataclass
class TabularBenchmarkResults:
    """What :func:`run_tabular_benchmark` measured and wrote.

    Attributes:
        config: the validated recipe.
        datasets: one :class:`DatasetResult` per data set, recipe order.
        average_ranks: method -> mean rank over the data sets (1 = best AUROC,
            ties share the average rank).
        csv_path, runs_csv_path, markdown_path: the written files.
    """

    config: TabularBenchmarkConfig
    datasets: list[DatasetResult]
    average_ranks: dict[str, float]
    csv_path: Path
    runs_csv_path: Path
    markdown_path: Path


def average_ranks(
    means: Sequence[Mapping[str, float]], methods: Sequence[str]
) -> dict[str, float]:
    """Mean rank of each method over data sets, 1 = highest AUROC, ties averaged.

    Args:
        means: per data set, method -> mean AUROC.
        methods: methods to rank.

    Returns:
        method -> average rank.
    """
    if not means:
        raise ValueError("average_ranks needs at least one data set.")
    ranks = np.array(
        [rankdata([-row[m] for m in methods], method="average") for row in means]
    )
    return {m: float(r) for m, r in zip(methods, ranks.mean(axis=0), strict=True)}


def _split(
    y: np.ndarray, protocol: str, test_fraction: float, seed: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Row indices (train, test) of the one-class protocol; ``(None, None)`` for AD."""
    if protocol == "anomaly_detection":
        return None, None
    normal = np.flatnonzero(y == 0)
    train, held_out = train_test_split(
        normal, test_size=test_fraction, random_state=seed, shuffle=True
    )
    return np.sort(train), np.sort(np.concatenate([held_out, np.flatnonzero(y == 1)]))


def _prepare(
    x: np.ndarray, y: np.ndarray, config: TabularBenchmarkConfig, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The rows of one run: ``(x_train, x_test, y_test, same_rows)``.

    AD protocol: ``x`` (already standardized in place, once) is both train and
    test. One-class protocol: the seeded split, standardized with the training
    normals' mean/std.
    """
    train, test = _split(y, config.protocol, config.test_fraction, seed)
    if train is None:
        return x, x, y, True
    x_train = x[train]
    scaler = fit_standardizer(x_train)
    scaler.transform(x_train)
    return x_train, scaler.transform(x[test]), y[test], False


def load_rows(
    name: str, config: TabularBenchmarkConfig
) -> tuple[np.ndarray, np.ndarray]:
    """A data set's rows and labels (1 = anomaly), projected onto the unit
    sphere (``x / |x|``, in place) when the recipe sets ``l2_normalize``."""
    x, y = load_tabular(name, config.data_dir)
    if config.l2_normalize:
        x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    return x, y


def _run_dataset(
    name: str,
    config: TabularBenchmarkConfig,
    log: Callable[[str], None],
    strategy: tf.distribute.Strategy | None = None,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> tuple[DatasetResult, list[dict[str, Any]]]:
    x, y = load_rows(name, config)
    if config.protocol == "anomaly_detection":
        fit_standardizer(x).transform(x)  # once, in place: no second copy
    settings = config.ocsdf
    fixed = settings.margin_per_dataset.get(name)
    grid = settings.margin_grid(name)
    label_free = settings.picks_margin(grid)
    baselines = {n: _make_baseline(n, o) for n, o in config.baselines.items()}
    by_margin: dict[float, list[float]] = {}
    auroc: dict[str, list[float]] = {n: [] for n in baselines}
    seconds: dict[str, float] = {n: 0.0 for n in ["ocsdf", *baselines]}
    cache: dict[str, float] = {}
    deterministic: list[str] = []
    rows: list[dict[str, Any]] = []
    picks: list[float] = []
    scales: list[float] = []
    picked_auroc: list[float] = []
    choices: list[str] = []
    for run in range(config.runs):
        if progress is not None:
            progress.start(f"{name} run {run + 1}/{config.runs}")
        seed = config.seed + run
        x_train, x_test, y_test, same_rows = _prepare(x, y, config, seed)
        kind, scaling, sparsity = rule_choice(
            x_train,
            config.prior_kind,
            settings.feature_scaling,
            config.sparsity_rule,
            seed,
        )
        if sparsity is not None:
            choices.append(f"{kind}, {scaling} (s/r {sparsity:.3f})")
            log(f"{name} run {run} sparsity s/r {sparsity:.4f}: {kind}, {scaling}")
        # OCSDF's own rows (robust / tail_stretch: new arrays; the baselines
        # keep theirs)
        ocsdf_train, ocsdf_test = scaled_rows(x_train, x_test, scaling)
        margins = grid
        if label_free:
            pick, scale = knn_scale_margin(
                ocsdf_train, grid, settings.knn_scale_neighbors, seed=seed
            )
            picks.append(pick)
            scales.append(scale)
            margins = (pick,)
        domain = tabular_prior(
            ocsdf_train, kind, config.pad_of(kind), config.prior_scale
        )
        for margin in margins:
            start = time.perf_counter()
            scores = np.zeros(len(ocsdf_test))
            # the members share one compiled model (OCSDF.restart): one trace
            # and one XLA compilation per run and margin, not per network
            model = None
            for member, member_seed in enumerate(member_seeds(seed, settings.members)):
                model = train_ocsdf(
                    ocsdf_train,
                    settings,
                    margin,
                    domain,
                    member_seed,
                    strategy,
                    work_dir,
                    model=model,
                )
                first = run == 0 and member == 0 and margin == margins[0]
                if first and work_dir is not None:
                    _plot_curves(model.history.history, Path(work_dir), name, log)
                if settings.score_shards:  # one member (validated)
                    value = sharded_auroc(model, ocsdf_test, y_test, work_dir)
                else:
                    scores -= np.asarray(model.score_samples(ocsdf_test)).reshape(-1)
            del model
            tf.keras.backend.clear_session()
            if not settings.score_shards:
                scores /= settings.members  # minus the members' mean f
                value = float(roc_auc_score(y_test, scores))
            seconds["ocsdf"] += time.perf_counter() - start
            by_margin.setdefault(margin, []).append(value)
            if label_free:
                picked_auroc.append(value)
            rows.append(
                {"dataset": name, "method": "ocsdf", "run": run, "seed": seed}
                | {"margin": margin, "auroc": value}
            )
            log(f"{name} run {run} OCSDF m={margin:g}: AUROC {value:.4f}")
        for method, baseline in baselines.items():
            fixed_scores = same_rows and not baseline.is_randomized(len(x_train))
            reuse = fixed_scores and method in cache
            if reuse:
                value = cache[method]
            else:
                start = time.perf_counter()
                baseline.fit(x_train, seed=seed, novelty=not same_rows)
                scores = -baseline.scores(x_test, fitted_rows=same_rows)
                seconds[method] += time.perf_counter() - start
                value = float(roc_auc_score(y_test, scores))
                if getattr(baseline, "stopped_epoch", None) is not None:
                    log(
                        f"{name} run {run} {method} stopped at epoch "
                        f"{baseline.stopped_epoch} (inverse error)"
                    )
                if fixed_scores:
                    cache[method] = value
                    deterministic.append(method)
                log(f"{name} run {run} {METHOD_LABELS[method]}: AUROC {value:.4f}")
            auroc[method].append(value)
            rows.append(
                {"dataset": name, "method": method, "run": run, "seed": seed}
                | {"margin": "", "auroc": value}
            )
        if progress is not None:
            progress.done()
    if label_free:
        # Each run is scored at its own label-free pick; report the usual pick.
        margin = max(grid, key=lambda m: (picks.count(m), -grid.index(m)))
        counts = ", ".join(f"{m:g}x{picks.count(m)}" for m in grid if m in picks)
        rule = f"knn_scale (s={float(np.median(scales)):.3g}; picks {counts})"
        ocsdf_auroc = picked_auroc
    else:
        margin, rule = _reported_margin(grid, fixed, by_margin)
        ocsdf_auroc = by_margin[margin]
    result = DatasetResult(
        dataset=name,
        n_rows=int(x.shape[0]),
        n_features=int(x.shape[1]),
        n_anomalies=int(y.sum()),
        margin=float(margin),
        margin_rule=rule,
        auroc={"ocsdf": list(ocsdf_auroc), **auroc},
        ocsdf_by_margin=by_margin,
        seconds=seconds,
        deterministic=deterministic,
        setting="; ".join(dict.fromkeys(choices)),
    )
    return result, rows


def ocsdf_networks(config: TabularBenchmarkConfig, dataset: str | None = None) -> int:
    """OCSDF networks a run of ``config`` trains (on ``dataset`` alone, when
    given): per data set, ``runs`` x ``members`` x the margins it trains (one
    when fixed by ``margin_per_dataset`` or picked by the ``knn_scale``
    rule)."""
    settings = config.ocsdf
    total = 0
    for name in config.datasets if dataset is None else [dataset]:
        grid = settings.margin_grid(name)
        margins = 1 if settings.picks_margin(grid) else len(grid)
        total += config.runs * settings.members * margins
    return total


def ocsdf_compiled_updates(
    config: TabularBenchmarkConfig, dataset: str | None = None
) -> int:
    """OCSDF updates a run of ``config`` traces and compiles (as XLA programs,
    with ``training.jit_compile``), on ``dataset`` alone when given: one per
    run and trained margin, the ``members`` of a run sharing one compiled
    model (:meth:`kocc.models.OCSDF.restart`): :func:`ocsdf_networks` over
    ``members``."""
    return ocsdf_networks(config, dataset) // config.ocsdf.members


def check_xla_room(config: TabularBenchmarkConfig) -> None:
    """Refuse, before any training, a ``training.jit_compile`` run whose
    largest data set compiles more updates (:func:`ocsdf_compiled_updates`)
    than one process can hold under XLA (:func:`kocc.models.xla_updates_room`,
    measured in this process, whose children start alike).

    Each data set of such a run trains in a process of its own
    (:mod:`kocc.experiments.tabular_worker`), so the number of data sets does
    not count; past the room, ``OCSDF.compile`` would refuse mid-run and the
    run's output would be lost.
    """
    room = xla_updates_room()
    if room is None:
        return
    name = max(config.datasets, key=lambda d: ocsdf_compiled_updates(config, d))
    needed = ocsdf_compiled_updates(config, name)
    if needed <= room:
        return
    raise ValueError(
        f"training.jit_compile: data set {name!r} compiles {needed} OCSDF "
        "updates in one process (one per run and margin; a run's members share "
        "one), and XLA keeps each one's program until the process exits (up to "
        f"{XLA_MAPS_PER_UPDATE:,} memory maps each, vm.max_map_count); a process "
        f"has room for about {room}. Lower runs or the margins of that data set, "
        "or set training.jit_compile=false"
    )


def run_dataset(
    name: str,
    config: TabularBenchmarkConfig,
    log: Callable[[str], None],
    out_dir: Path,
    progress: Progress | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[DatasetResult, list[dict[str, Any]]]:
    """Train and score every method on data set ``name`` of ``config``, in
    this process (the rows from memory, or streamed from TFRecord shards with
    ``shard_files``).

    Args:
        name: the data set (one of ``config.datasets``).
        config: the validated recipe.
        log: receives the progress lines.
        out_dir: the run's folder (training curves).
        progress: advanced once per finished run.
        strategy: the run's ``tf.distribute`` strategy (default: made from
            ``config.distribute``; a process makes it once).

    Returns:
        The data set's :class:`DatasetResult` and its rows for
        ``<name>_runs.csv`` (one per method and run).
    """
    strategy = strategy or strategy_of(config.distribute)
    run = _run_shard_files if config.shard_files.enabled else _run_dataset
    return run(name, config, log, strategy, out_dir, progress)


def run_tabular_benchmark(
    config: Mapping[str, Any] | TabularBenchmarkConfig,
    out_dir: str | os.PathLike,
    log: Callable[[str], None] | None = print,
) -> TabularBenchmarkResults:
    """Run the tabular benchmark of a recipe and write its tables.

    Writes ``<out_dir>/<name>.csv`` (one row per data set: mean/std AUROC of
    every method, rank, paper figures), ``<name>_runs.csv`` (every run) and
    ``<name>.md`` (the table, average ranks, the paper's Table 2 beside ours,
    OCSDF per margin). The files are rewritten after every data set, so an
    interrupted run keeps the data sets it finished. At the end,
    ``<name>_ranks.png`` plots the average rank per method (with the ``plots``
    extra).

    Args:
        config: recipe dictionary (``recipes/tabular_odds.yaml``) or a validated
            :class:`TabularBenchmarkConfig`.
        out_dir: output directory (created).
        log: progress printer (``None`` for silence).

    Returns:
        The :class:`TabularBenchmarkResults`.
    """
    if not isinstance(config, TabularBenchmarkConfig):
        config = TabularBenchmarkConfig.from_dict(config)
    if config.ocsdf.jit_compile:
        check_xla_room(config)
    log = log or (lambda message: None)
    strategy = strategy_of(config.distribute)
    out = run_directory(strategy, out_dir)
    results: list[DatasetResult] = []
    all_rows: list[dict[str, Any]] = []
    methods = config.methods
    csv_path = out / f"{config.name}.csv"
    runs_path = out / f"{config.name}_runs.csv"
    md_path = out / f"{config.name}.md"
    progress = Progress("tabular", len(config.datasets) * config.runs)
    for name in config.datasets:
        if config.ocsdf.jit_compile:
            # XLA keeps every network's program until its process exits: each
            # data set trains in a fresh process (kocc.experiments.tabular_worker)
            result, rows = run_dataset_in_process(name, config, log, out, progress)
        else:
            result, rows = run_dataset(name, config, log, out, progress, strategy)
        results.append(result)
        all_rows.extend(rows)
        # Rewritten after every data set: a long run leaves its finished part.
        means = [{m: r.mean(m) for m in methods} for r in results]
        ranks = average_ranks(means, methods)
        write_results_csv(results, methods, config, csv_path)
        write_runs_csv(all_rows, runs_path)
        md_path.write_text(results_markdown(results, methods, ranks, config))
        log(f"{name} done; wrote {csv_path}, {runs_path}, {md_path}")
    if results:
        _plot_ranks(ranks, out / f"{config.name}_ranks.png", config.name, log)
    return TabularBenchmarkResults(config, results, ranks, csv_path, runs_path, md_path)


# --------------------------------------------------------------------------- writers
def _plot_ranks(
    ranks: dict[str, float], path: Path, name: str, log: Callable[[str], None]
) -> None:
    """The rank plot, if matplotlib (the ``plots`` extra) is installed."""
    try:
        from kocc.experiments.plotting import plot_average_ranks
    except ImportError as err:
        log(f"no rank plot: {err}")
        return
    plot_average_ranks(ranks, path, METHOD_LABELS, f"{name}: average rank")
    log(f"wrote {path}")


def _plot_curves(
    history: dict[str, list[float]], out: Path, name: str, log: Callable[[str], None]
) -> None:
    """``<name>_training_curves.png`` (and ``.csv``) of a data set's first OCSDF
    fit, if matplotlib (the ``plots`` extra) is installed."""
    try:
        from kocc.experiments.plotting import plot_training_curves
    except ImportError as err:
        log(f"no training curves: {err}")
        return
    path = out / f"{name}_training_curves.png"
    plot_training_curves(history, path, f"{name}: OCSDF, run 0")
    log(f"wrote {path}")


def _paper(dataset: str, method: str) -> float | None:
    return PAPER_TABLE2.get(dataset, {}).get(method)


def write_results_csv(
    results: Sequence[DatasetResult],
    methods: Sequence[str],
    config: TabularBenchmarkConfig,
    path: Path,
) -> None:
    """One row per data set: sizes, margin, mean/std/rank of every method (AUROC in
    [0, 1]), seconds, and the paper's Table 2 figures (%, empty when absent)."""
    header = ["dataset", "rows", "features", "anomalies", "runs", "margin", "rule"]
    header += ["setting"]
    for m in methods:
        header += [f"{m}_mean", f"{m}_std", f"{m}_rank", f"{m}_seconds"]
    header += ["paper_ocsdf_percent", "paper_isolation_forest_percent"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for r in results:
            means = [r.mean(m) for m in methods]
            ranks = rankdata([-v for v in means], method="average")
            row: list[Any] = [r.dataset, r.n_rows, r.n_features, r.n_anomalies]
            row += [config.runs, r.margin, r.margin_rule, r.setting]
            for m, mean, rank in zip(methods, means, ranks, strict=True):
                row += [f"{mean:.6f}", f"{r.std(m):.6f}", rank, f"{r.seconds[m]:.2f}"]
            for m in ("ocsdf", "isolation_forest"):
                paper = _paper(r.dataset, m) if config.paper_reference else None
                row.append("" if paper is None else paper)
            writer.writerow(row)


def write_runs_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Every measured AUROC: dataset, method, run, seed, margin, auroc."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["dataset", "method", "run", "seed", "margin", "auroc"]
        )
        writer.writeheader()
        writer.writerows(rows)


def _scaling_and_prior(config: TabularBenchmarkConfig) -> str:
    """The report's words for OCSDF's feature scaling and prior (the sparsity
    rule's thresholds where either is ``auto``)."""
    rule = config.sparsity_rule
    scaling = config.ocsdf.feature_scaling
    kind = config.prior_kind
    words = [
        (
            f"feature scaling by the sparsity rule (tail_stretch where s/r > "
            f"{rule.tail_stretch_above}, else heavy_tail)"
            if scaling == AUTO
            else f"{scaling} feature scaling"
        )
    ]
    if kind == AUTO:
        words.append(
            f"prior by the sparsity rule (box where s/r > {rule.box_above}, else "
            "the covering ball)"
            + ("" if config.prior_pad is None else f", pad {config.prior_pad}")
        )
    elif kind == "gaussian":
        words.append(f"prior gaussian (scale {config.prior_scale})")
    else:
        words.append(f"prior {kind} (pad {config.prior_pad})")
    return ", ".join(words)


def results_markdown(
    results: Sequence[DatasetResult],
    methods: Sequence[str],
    ranks: Mapping[str, float],
    config: TabularBenchmarkConfig,
) -> str:
    """The markdown report: main table, average ranks, per-margin OCSDF table."""
    s = config.ocsdf
    files = config.shard_files
    protocol = (
        f"Shard files: trained on `{files.train}`, scored on `{files.normal}` "
        f"(normal) and `{files.anomalous}` (anomalous)"
        if files.enabled
        else f"Protocol `{config.protocol}`"
        + (
            f" (test fraction of normals {config.test_fraction})"
            if config.protocol == "one_class"
            else " (fit on all rows, labels unseen)"
        )
    )
    lines = [
        f"# Tabular anomaly detection: {config.name}",
        "",
        protocol + f"; {config.runs} run(s) per data set (seeds {config.seed}.."
        f"{config.seed + config.runs - 1}). AUROC in %, mean ± std over the runs.",
        f"OCSDF: widths {list(s.widths)}, {s.activation}, λ={s.lam}, T={s.nr_steps}, "
        f"batch {s.batch_size}, {s.steps} steps, {s.optimizer} lr={s.learning_rate}"
        + (
            f" decaying linearly to {s.final_learning_rate}, "
            if s.final_learning_rate is not None
            else ", "
        )
        + ("the update XLA-compiled, " if s.jit_compile else "")
        + (f"the mean f of {s.members} networks, " if s.members > 1 else "")
        + _scaling_and_prior(config)
        + (
            f", margin {s.margins[0]:g} for every data set (label-free)."
            if len(s.margins) == 1
            else f", margins {list(s.margins)} chosen by `{s.margin_selection}`."
        ),
        "",
    ]
    head = ["data set", "rows", "d", "anom.", "margin"]
    head += [METHOD_LABELS[m] for m in methods]
    if config.paper_reference:
        head += ["paper OCSDF †", "paper IF †", "OCSDF − paper"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    below: list[str] = []
    for r in results:
        best = max(r.mean(m) for m in methods)
        cells = [r.dataset, str(r.n_rows), str(r.n_features), str(r.n_anomalies)]
        cells.append(f"{r.margin:g}")
        for m in methods:
            text = f"{100 * r.mean(m):.1f} ± {100 * r.std(m):.1f}"
            cells.append(f"**{text}**" if r.mean(m) == best else text)
        if config.paper_reference:
            paper_ocsdf = _paper(r.dataset, "ocsdf")
            paper_if = _paper(r.dataset, "isolation_forest")
            cells.append("—" if paper_ocsdf is None else f"{paper_ocsdf:g}")
            cells.append("—" if paper_if is None else f"{paper_if:g}")
            if paper_ocsdf is None:
                cells.append("—")
            else:
                gap = 100 * r.mean("ocsdf") - paper_ocsdf
                cells.append(f"{gap:+.1f}")
                if gap < -2:
                    below.append(f"{r.dataset} ({gap:+.1f})")
        lines.append("| " + " | ".join(cells) + " |")
    rank_cells = ["average rank", "", "", "", ""]
    rank_cells += [f"{ranks[m]:.2f}" for m in methods]
    if config.paper_reference:
        rank_cells += ["", "", ""]
    lines.append("| " + " | ".join(rank_cells) + " |")
    lines.append("")
    if config.paper_reference:
        lines += [
            "† Reference figures from the paper's Table 2 (Béthune et al., ICML 2023, "
            "AD protocol, 20 runs, margin picked per data set), copied from the "
            "paper, not measured here.",
            "",
            "OCSDF more than 2 points below the paper: "
            + (", ".join(below) if below else "none")
            + ".",
            "",
        ]
    deterministic = sorted({m for r in results for m in r.deterministic})
    if deterministic:
        labels = ", ".join(METHOD_LABELS[m] for m in deterministic)
        lines += [
            f"{labels}: deterministic on the AD protocol, computed once per data set "
            "(std 0).",
            "",
        ]
    grid = sorted({m for r in results for m in r.ocsdf_by_margin})
    if len(grid) > 1:
        lines += [
            "## OCSDF AUROC (%) per margin",
            "",
            "| data set | " + " | ".join(f"m={m:g}" for m in grid) + " | reported |",
            "|" + "---|" * (len(grid) + 2),
        ]
        for r in results:
            cells = [r.dataset]
            for m in grid:
                values = r.ocsdf_by_margin.get(m)
                cells.append(
                    "—" if values is None else f"{100 * float(np.mean(values)):.1f}"
                )
            cells.append(f"{r.margin:g} ({r.margin_rule})")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if any(r.setting for r in results):
        lines += [
            "## OCSDF's prior and scaling, chosen by the sparsity rule (no labels)",
            "",
            "| data set | prior, scaling (s/r) |",
            "|---|---|",
        ]
        lines += [f"| {r.dataset} | {r.setting} |" for r in results]
        lines.append("")
    lines += [
        "## Wall time (s, all runs, fit + score)",
        "",
        "| data set | " + " | ".join(METHOD_LABELS[m] for m in methods) + " |",
        "|" + "---|" * (len(methods) + 1),
    ]
    for r in results:
        cells = [r.dataset] + [f"{r.seconds[m]:.1f}" for m in methods]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)
