"""Recipes: YAML run configurations mirrored by a dataclass schema.

A recipe is a YAML mapping whose top-level ``kind`` selects a schema (a tree of
dataclasses). Every field has its default here, in one place; unknown keys and
values of the wrong type are errors that name the key and list the valid ones.
Command-line overrides ``--set a.b=value`` are parsed as YAML scalars and go
through the same validation.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kocc.extras import require

yaml = require("yaml")


class RecipeError(ValueError):
    """A recipe that cannot be loaded: missing file, unknown key, bad value.

    Raised with ``key``/``expected``/``given`` (and ``valid`` keys for an
    unknown key), the message reads ``recipe key 'training.learning_rate':
    expected a finite number > 0, given -1.0``; those parts are kept as
    attributes. A plain message is for errors about the file itself.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        key: str | None = None,
        expected: str | None = None,
        given: Any = None,
        valid: Sequence[str] | None = None,
    ) -> None:
        self.key, self.expected, self.given = key, expected, given
        self.valid = list(valid) if valid is not None else None
        if message is None:
            message = f"recipe key {key!r}: expected {expected}, given {given!r}"
            if self.valid is not None:
                section = key.rpartition(".")[0] or "the recipe"
                message += f"; valid keys in {section}: {', '.join(self.valid)}"
        super().__init__(message)


# ------------------------------------------------------------------ rules
@dataclass(frozen=True)
class Rule:
    """A range or choice a recipe value must satisfy (per item for lists)."""

    expected: str
    test: Callable[[Any], bool]

    def check(self, value: Any, key: str) -> None:
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if item is not None and not self.test(item):
                where = f"{key}[{i}]" if isinstance(value, list) else key
                raise RecipeError(key=where, expected=self.expected, given=item)


def rule(expected: str, test: Callable[[Any], bool]) -> dict:
    """Field metadata: ``field(default=..., metadata=rule(...))``."""
    return {"rule": Rule(expected, test)}


def positive() -> dict:
    return rule("a finite number > 0", lambda v: math.isfinite(v) and v > 0)


def non_negative() -> dict:
    return rule("a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)


def at_least(low: int) -> dict:
    return rule(f"an integer >= {low}", lambda v: v >= low)


def open_fraction() -> dict:
    return rule("a number in (0, 1)", lambda v: 0 < v < 1)


def unit_interval() -> dict:
    return rule("a number in [0, 1]", lambda v: 0 <= v <= 1)


def one_of(*choices: Any) -> dict:
    return rule(f"one of {list(choices)}", lambda v: v in choices)


def _is_activation(name: str) -> bool:
    from kocc.architectures import lipschitz_activation

    try:
        lipschitz_activation(name)
    except ValueError:
        return False
    return True


def check_baselines(
    baselines: dict | list, valid: Sequence[str], make: Callable[[str, dict], Any]
) -> dict[str, dict]:
    """A recipe's ``baselines`` (names, or names -> options) checked by building
    each with ``make(name, options)``; returns names -> options."""
    if isinstance(baselines, list):
        baselines = {name: {} for name in baselines}
    unknown = [name for name in baselines if name not in valid]
    if unknown:
        raise RecipeError(
            key=f"baselines.{unknown[0]}",
            expected="a known baseline",
            given=unknown[0],
            valid=list(valid),
        )
    checked = {name: dict(options or {}) for name, options in baselines.items()}
    for name, options in checked.items():
        try:
            make(name, options)
        except RecipeError:  # already names baselines.<name>.<key>
            raise
        except (TypeError, ValueError) as err:
            raise RecipeError(
                key=f"baselines.{name}",
                expected=f"options of the detector ({err})",
                given=options,
            ) from err
    return checked


#: The choices every recipe kind shares.
OPTIMIZER_CHOICES = ("rmsprop", "adam", "sgd")  # kocc.training.OPTIMIZERS
ACTIVATION_RULE = rule("fullsort, groupsort2 or groupsort<k>", _is_activation)
#: Parameter updates above this are refused unless ``training.allow_long_runs``.
MAX_STEPS = 10**7


def check_steps(training: Any, key: str) -> None:
    """``steps`` within :data:`MAX_STEPS` (unless opted in) and >= ``epochs``."""
    if training.steps > MAX_STEPS and not training.allow_long_runs:
        raise RecipeError(
            key=f"{key}.steps",
            expected=f"at most {MAX_STEPS:.0e} updates (or {key}.allow_long_runs: "
            "true)",
            given=training.steps,
        )
    if training.epochs > training.steps:
        raise RecipeError(
            key=f"{key}.epochs",
            expected=f"at most {key}.steps = {training.steps} (an epoch is at "
            "least one update)",
            given=training.epochs,
        )


# ---------------------------------------------------------------- schemas
@dataclass
class ToyDataConfig:
    """A scikit-learn 2-D toy (see :mod:`kocc.datasets.toys`)."""

    #: the toy: a name of :mod:`kocc.datasets.toys` (e.g. two_moons, blobs)
    name: str = "two_moons"
    #: training points (all normal)
    n_train: int = field(default=2048, metadata=at_least(2))
    #: standard deviation of the Gaussian noise added to the points
    noise: float = field(default=0.05, metadata=non_negative())
    #: normal test points (scored against ``evaluation.n_anomalies`` anomalies)
    n_test: int = field(default=1024, metadata=at_least(1))


@dataclass
class MLPConfig:
    """:func:`kocc.architectures.lipschitz_mlp` settings."""

    #: hidden layer widths of the 1-Lipschitz MLP
    widths: list[int] = field(
        default_factory=lambda: [128, 128, 128], metadata=at_least(1)
    )
    #: the 1-Lipschitz activation
    activation: str = field(default="fullsort", metadata=ACTIVATION_RULE)

    def validate(self, key: str) -> None:
        if not self.widths:
            raise RecipeError(
                key=f"{key}.widths", expected="at least one width", given=[]
            )


@dataclass
class DomainConfig:
    """Where negatives are drawn: ``ball`` (radius, around 0) or ``box``."""

    #: shape of the domain B of the negatives
    kind: str = field(default="ball", metadata=one_of("ball", "box"))
    #: radius of the ball
    radius: float = field(default=5.0, metadata=positive())
    #: lower bound of the box, every coordinate
    low: float = -5.0
    #: upper bound of the box, every coordinate
    high: float = 5.0

    def validate(self, key: str) -> None:
        if not self.high > self.low:
            raise RecipeError(
                key=f"{key}.high", expected=f"> {key}.low = {self.low}", given=self.high
            )


@dataclass
class TrainingConfig:
    """OCSDF and optimizer settings (paper appendix E for the toys)."""

    #: margin m of the hinge Kantorovich-Rubinstein loss
    margin: float = field(default=0.05, metadata=positive())
    #: weight lambda of the hinge term of the loss
    lam: float = field(default=100.0, metadata=non_negative())
    #: normal points per batch
    batch_size: int = field(default=256, metadata=at_least(1))
    #: parameter updates in all
    steps: int = field(default=2000, metadata=at_least(1))
    #: Keras epochs the updates are split into (one log line / History entry each)
    epochs: int = field(default=10, metadata=at_least(1))
    #: Newton-Raphson steps T of the negative sampling
    nr_steps: int = field(default=4, metadata=at_least(0))
    #: epochs with uniform negatives (no Newton-Raphson steps) first
    warmup_epochs: int = field(default=0, metadata=at_least(0))
    #: parameter updates per batch of sampled negatives
    updates_per_sampling: int = field(default=1, metadata=at_least(1))
    #: the optimizer's (initial) learning rate
    learning_rate: float = field(default=1e-3, metadata=positive())
    #: if set, the learning rate decays linearly to this value over ``steps``
    final_learning_rate: float | None = field(default=None, metadata=positive())
    #: the Keras optimizer
    optimizer: str = field(default="rmsprop", metadata=one_of(*OPTIMIZER_CHOICES))
    #: opt in to more than :data:`MAX_STEPS` updates
    allow_long_runs: bool = False

    def validate(self, key: str) -> None:
        check_steps(self, key)


@dataclass
class DistributeConfig:
    """Train under a ``tf.distribute`` strategy (docs/distributed.md).

    ``strategy``: ``default`` (one device), ``mirrored`` (the GPUs, or
    ``devices``, of one machine) or ``multi_worker`` (several machines, from
    ``TF_CONFIG``). ``training.batch_size`` is then the global batch, split
    over the replicas.
    """

    strategy: str = field(
        default="default", metadata=one_of("default", "mirrored", "multi_worker")
    )
    #: devices of the mirrored strategy, e.g. ["/gpu:0", "/gpu:1"]; empty: all GPUs
    devices: list[str] = field(default_factory=list)
    #: collectives of multi_worker: auto | ring | nccl
    communication: str = field(default="auto", metadata=one_of("auto", "ring", "nccl"))


@dataclass
class ToyEvaluationConfig:
    """Anomalies = uniform points of ``[-box, box]^2`` farther than ``min_distance``
    from every training point; ``grid_size`` is the contour plot's resolution."""

    n_anomalies: int = field(default=2048, metadata=at_least(1))
    box: float = field(default=3.0, metadata=positive())
    min_distance: float = field(default=0.3, metadata=non_negative())
    grid_size: int = field(default=200, metadata=at_least(2))


@dataclass
class ToyComparisonConfig:
    """Baselines fitted beside OCSDF on the same toy (paper Figure 6, Table 1).

    ``methods`` lists any of ``bce`` (an unconstrained ReLU network trained with
    binary cross-entropy against the same Newton-Raphson negatives,
    :mod:`kocc.baselines.bce`), ``one_class_svm`` and ``isolation_forest``
    (scikit-learn) and ``iocn`` (the invertible one-class network,
    :class:`kocc.baselines.IOCN`, whose inlier region is simply connected).
    Empty: OCSDF alone.
    """

    methods: list[str] = field(
        default_factory=list,
        metadata=one_of("bce", "one_class_svm", "isolation_forest", "iocn"),
    )
    #: hidden widths of the BCE network; ``null`` = the OCSDF widths
    bce_widths: list[int] | None = None
    #: parameter updates of the BCE network; ``null`` = ``training.steps``
    bce_steps: int | None = field(default=None, metadata=at_least(1))
    bce_learning_rate: float = field(default=1e-3, metadata=positive())
    ocsvm_nu: float = field(
        default=0.05, metadata=rule("a number in (0, 1]", lambda v: 0 < v <= 1)
    )
    ocsvm_gamma: str = "scale"
    if_n_estimators: int = field(default=100, metadata=at_least(1))
    #: IOCN: affine coupling blocks (the IOCN paper: 12)
    iocn_blocks: int = field(default=12, metadata=at_least(1))
    #: IOCN: width of each coupling subnetwork's hidden layer (paper: 128)
    iocn_hidden_units: int = field(default=128, metadata=at_least(1))
    #: IOCN: epochs over the training points
    iocn_epochs: int = field(default=60, metadata=at_least(1))
    #: IOCN: points (and uniform latents) per update
    iocn_batch_size: int = field(default=128, metadata=at_least(1))
    #: IOCN: Adam learning rate (at 1e-3 it did not settle, docs/competitors.md)
    iocn_learning_rate: float = field(default=3e-4, metadata=positive())


@dataclass
class Recipe:
    """The keys every recipe that trains starts with; a kind's schema subclasses
    it and sets the defaults of ``kind`` and ``name``."""

    #: the recipe kind, selects the schema
    kind: str = ""
    #: the run's name (in reports and output names)
    name: str = ""
    #: free text, kept in the run report
    description: str = ""
    #: seeds the data, the network and the negatives
    seed: int = field(default=0, metadata=at_least(0))


@dataclass
class ToyRecipe(Recipe):
    """``kind: toy``: train OCSDF on a 2-D toy, report AUROC and a contour plot."""

    kind: str = field(default="toy", metadata=one_of("toy"))
    name: str = "toy"
    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    model: MLPConfig = field(default_factory=MLPConfig)
    domain: DomainConfig = field(default_factory=DomainConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: ToyEvaluationConfig = field(default_factory=ToyEvaluationConfig)
    comparison: ToyComparisonConfig = field(default_factory=ToyComparisonConfig)
    distribute: DistributeConfig = field(default_factory=DistributeConfig)

    def validate(self, key: str) -> None:
        if self.data.n_train < self.training.batch_size:
            raise RecipeError(
                key="data.n_train",
                expected=f"at least one batch (training.batch_size = "
                f"{self.training.batch_size})",
                given=self.data.n_train,
            )


@dataclass
class ToySuiteRecipe:
    """``kind: toy_suite`` (a ``kocc benchmark``): several toy recipes, one table.

    ``recipes`` are toy recipe files, relative to the suite file (or absolute);
    ``overrides`` (``key=value`` strings, as ``--set``) apply to every one of
    them, e.g. a smaller network for a CPU.
    """

    kind: str = field(default="toy_suite", metadata=one_of("toy_suite"))
    name: str = "toy_suite"
    description: str = ""
    recipes: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)


#: Recipe kind -> (its schema, ``module:class`` for the drivers' own; the
#: command that runs it).
KINDS: dict[str, tuple[type | str, str]] = {
    "toy": (ToyRecipe, "kocc train"),
    "toy_suite": (ToySuiteRecipe, "kocc benchmark"),
    "tabular": ("kocc.experiments.tabular_benchmark:TabularRecipe", "kocc benchmark"),
    "images": (
        "kocc.experiments.image_benchmark:ImageBenchmarkConfig",
        "kocc benchmark",
    ),
    "surface": ("kocc.experiments.surface_pipeline:SurfaceRecipe", "kocc surface"),
}
SCHEMAS = {kind: entry[0] for kind, entry in KINDS.items()}
COMMANDS = {kind: entry[1] for kind, entry in KINDS.items()}


def schema(kind: str) -> type:
    """The dataclass schema of a recipe ``kind``."""
    entry = SCHEMAS[kind]
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = getattr(importlib.import_module(module), name)
    return entry


def check_kind(data: dict, kinds: Sequence[str], command: str) -> str:
    """The recipe's ``kind``, if ``command`` runs it; else a RecipeError that
    names the command running it."""
    kind = data.get("kind")
    if kind not in SCHEMAS:
        raise RecipeError(key="kind", expected=f"one of {sorted(SCHEMAS)}", given=kind)
    if kind not in kinds:
        raise RecipeError(
            key="kind",
            expected=f"a kind that {command} runs ({', '.join(kinds)}); a "
            f"kind: {kind} recipe runs with {COMMANDS[kind]}",
            given=kind,
        )
    return kind


# ------------------------------------------------------------- validation
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


#: The types a recipe value is taken as it is: type -> (does a value fit, what
#: the error says was expected). A YAML boolean is not an integer.
_PLAIN_TYPES: dict[type, tuple[Callable[[Any], bool], str]] = {
    bool: (lambda value: isinstance(value, bool), "true or false"),
    int: (
        lambda value: isinstance(value, int) and not isinstance(value, bool),
        "an integer",
    ),
    str: (lambda value: isinstance(value, str), "a string"),
}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) > 1:  # e.g. int | list[int]: the first type that fits
            for arg in args[:-1]:
                try:
                    return _coerce(value, arg, key)
                except RecipeError:
                    pass
        return _coerce(value, args[-1] if len(args) > 1 else args[0], key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise RecipeError(key=key, expected="a list", given=value)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(key=key, expected="a mapping", given=value)
        return dict(value)
    if tp in _PLAIN_TYPES:
        accepts, expected = _PLAIN_TYPES[tp]
        if not accepts(value):
            raise RecipeError(key=key, expected=expected, given=value)
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecipeError(key=key, expected="a number", given=value)
        if not math.isfinite(value):
            raise RecipeError(key=key, expected="a finite number", given=value)
        return float(value)
    raise RecipeError(f"recipe key {key!r}: unsupported type {_type_name(tp)}")


def from_dict(cls: type, data: dict | None, prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from a mapping, validating keys and values.

    The one validation of every recipe kind: unknown keys, types, NaN and
    infinities, the ranges and choices of each field (``metadata=rule(...)``),
    then the dataclass' own ``validate(key)`` (checks across fields), all
    before anything runs.

    Raises:
        RecipeError: naming the key path, what was expected and what was given
            (and the valid keys, for an unknown key).
    """
    data = {} if data is None else data
    where = prefix.rstrip(".")
    if not isinstance(data, dict):
        raise RecipeError(key=where or "recipe", expected="a mapping", given=data)
    hints = typing.get_type_hints(cls)
    fields = {
        f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("derived")
    }
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise RecipeError(
            key=prefix + str(unknown[0]),
            expected="a known key",
            given=unknown[0],
            valid=list(fields),
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        key = prefix + name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, key + ".")
            continue
        kwargs[name] = _coerce(value, tp, key)
        if "rule" in fields[name].metadata:
            fields[name].metadata["rule"].check(kwargs[name], key)
    for name, spec in fields.items():  # sections left at their defaults
        if name not in kwargs and dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _validated(spec.default_factory(), prefix + name)
    recipe = cls(**kwargs)
    if hasattr(recipe, "validate"):
        recipe.validate(where)
    return recipe


def _validated(section: Any, key: str) -> Any:
    """A default section, its own checks run (they may normalize it)."""
    for spec in dataclasses.fields(section):
        value = getattr(section, spec.name)
        if dataclasses.is_dataclass(value) and not spec.metadata.get("derived"):
            _validated(value, f"{key}.{spec.name}")
    if hasattr(section, "validate"):
        section.validate(key)
    return section


def to_dict(recipe: Any) -> dict:
    """The recipe as plain data (for YAML dumps and run reports)."""
    return dataclasses.asdict(recipe)


def parse_overrides(overrides: list[str] | None) -> dict:
    """Turn ``["a.b=1", "c=x"]`` into a nested mapping ``{"a": {"b": 1}, ...}``.

    Values are YAML scalars (``1`` is an int, ``1e-3`` a float, ``[64, 64]`` a
    list).

    Raises:
        RecipeError: for an override without ``=`` or with an empty key.
    """
    nested: dict = {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"override {item!r} must look like key.sub=value")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override {item!r} conflicts with another one")
        node[parts[-1]] = value
    return nested


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        # an empty mapping replaces (``--set baselines={}``: no baselines)
        if value and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_recipe_data(
    path: str | os.PathLike, overrides: list[str] | None = None
) -> dict:
    """Read a YAML recipe as a mapping and apply ``key=value`` overrides.

    Raises:
        RecipeError: missing or unreadable file, invalid YAML, not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise RecipeError(f"recipe {str(path)!r} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {str(path)!r} must be a YAML mapping")
    return _merge(data, parse_overrides(overrides))


def load_recipe(
    path: str | os.PathLike,
    overrides: list[str] | None = None,
    kinds: Sequence[str] | None = None,
    command: str = "this command",
) -> Any:
    """Read a YAML recipe, apply ``key=value`` overrides and validate it.

    The one loader of every recipe kind (:data:`SCHEMAS`).

    Args:
        path: the recipe file.
        overrides: ``["training.steps=500", ...]``.
        kinds: the kinds the caller runs (default: any).
        command: the caller, named when the kind is not one of ``kinds``.

    Returns:
        The recipe dataclass of its ``kind`` (e.g. :class:`ToyRecipe`).

    Raises:
        RecipeError: missing or unreadable file, invalid YAML, unknown kind or
            one ``command`` does not run, unknown key or bad value.
    """
    return recipe_from_dict(load_recipe_data(path, overrides), kinds, command)


def recipe_from_dict(
    data: dict, kinds: Sequence[str] | None = None, command: str = "this command"
) -> Any:
    """Validate a recipe mapping against the schema of its ``kind``."""
    kind = check_kind(data, list(kinds or SCHEMAS), command)
    return from_dict(schema(kind), data)
