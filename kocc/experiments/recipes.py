"""Recipes: YAML run configurations mirrored by a dataclass schema.

A recipe is a YAML mapping whose top-level ``kind`` selects a schema (a tree of
dataclasses). Every field has its default here, in one place; unknown keys and
values of the wrong type are errors that name the key and list the valid ones.
Command-line overrides ``--set a.b=value`` are parsed as YAML scalars and go
through the same validation.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kocc.extras import require

yaml = require("yaml")


class RecipeError(ValueError):
    """A recipe that cannot be loaded: missing file, unknown key, bad value."""


# ---------------------------------------------------------------- schemas
@dataclass
class ToyDataConfig:
    """A scikit-learn 2-D toy (see :mod:`kocc.datasets.toys`)."""

    name: str = "two_moons"
    n_train: int = 2048
    noise: float = 0.05
    n_test: int = 1024


@dataclass
class MLPConfig:
    """:func:`kocc.architectures.lipschitz_mlp` settings."""

    widths: list[int] = field(default_factory=lambda: [128, 128, 128])
    activation: str = "fullsort"


@dataclass
class DomainConfig:
    """Where negatives are drawn: ``ball`` (radius, around 0) or ``box``."""

    kind: str = "ball"
    radius: float = 5.0
    low: float = -5.0
    high: float = 5.0


@dataclass
class TrainingConfig:
    """OCSDF and optimizer settings (paper appendix E for the toys)."""

    margin: float = 0.05
    lam: float = 100.0
    batch_size: int = 256
    steps: int = 2000
    epochs: int = 10
    nr_steps: int = 4
    warmup_epochs: int = 0
    updates_per_sampling: int = 1
    learning_rate: float = 1e-3
    #: if set, the learning rate decays linearly to this value over ``steps``
    final_learning_rate: float | None = None
    optimizer: str = "rmsprop"


@dataclass
class DistributeConfig:
    """Train under a ``tf.distribute`` strategy (docs/distributed.md).

    ``strategy``: ``default`` (one device), ``mirrored`` (the GPUs, or
    ``devices``, of one machine) or ``multi_worker`` (several machines, from
    ``TF_CONFIG``). ``training.batch_size`` is then the global batch, split
    over the replicas.
    """

    strategy: str = "default"
    #: devices of the mirrored strategy, e.g. ["/gpu:0", "/gpu:1"]; empty: all GPUs
    devices: list[str] = field(default_factory=list)
    #: collectives of multi_worker: auto | ring | nccl
    communication: str = "auto"


@dataclass
class ToyEvaluationConfig:
    """Anomalies = uniform points of ``[-box, box]^2`` farther than ``min_distance``
    from every training point; ``grid_size`` is the contour plot's resolution."""

    n_anomalies: int = 2048
    box: float = 3.0
    min_distance: float = 0.3
    grid_size: int = 200


@dataclass
class ToyComparisonConfig:
    """Baselines fitted beside OCSDF on the same toy (paper Figure 6, Table 1).

    ``methods`` lists any of ``bce`` (an unconstrained ReLU network trained with
    binary cross-entropy against the same Newton-Raphson negatives,
    :mod:`kocc.baselines.bce`), ``one_class_svm`` and ``isolation_forest``
    (scikit-learn). Empty: OCSDF alone.
    """

    methods: list[str] = field(default_factory=list)
    #: hidden widths of the BCE network; ``null`` = the OCSDF widths
    bce_widths: list[int] | None = None
    #: parameter updates of the BCE network; ``null`` = ``training.steps``
    bce_steps: int | None = None
    bce_learning_rate: float = 1e-3
    ocsvm_nu: float = 0.05
    ocsvm_gamma: str = "scale"
    if_n_estimators: int = 100


@dataclass
class ToyRecipe:
    """``kind: toy``: train OCSDF on a 2-D toy, report AUROC and a contour plot."""

    kind: str = "toy"
    name: str = "toy"
    seed: int = 0
    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    model: MLPConfig = field(default_factory=MLPConfig)
    domain: DomainConfig = field(default_factory=DomainConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: ToyEvaluationConfig = field(default_factory=ToyEvaluationConfig)
    comparison: ToyComparisonConfig = field(default_factory=ToyComparisonConfig)
    distribute: DistributeConfig = field(default_factory=DistributeConfig)


@dataclass
class ToySuiteRecipe:
    """``kind: toy_suite`` (a ``kocc benchmark``): several toy recipes, one table.

    ``recipes`` are toy recipe files, relative to the suite file (or absolute);
    ``overrides`` (``key=value`` strings, as ``--set``) apply to every one of
    them, e.g. a smaller network for a CPU.
    """

    kind: str = "toy_suite"
    name: str = "toy_suite"
    recipes: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)


#: Recipe kinds and their schemas.
SCHEMAS: dict[str, type] = {"toy": ToyRecipe, "toy_suite": ToySuiteRecipe}

_CHOICES = {
    ("domain", "kind"): ("ball", "box"),
    ("training", "optimizer"): ("rmsprop", "adam", "sgd"),
    ("comparison", "methods"): ("bce", "one_class_svm", "isolation_forest"),
    ("distribute", "strategy"): ("default", "mirrored", "multi_worker"),
    ("distribute", "communication"): ("auto", "ring", "nccl"),
}


# ------------------------------------------------------------- validation
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise RecipeError(f"recipe key {key!r} must be a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"recipe key {key!r} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"recipe key {key!r} must be true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"recipe key {key!r} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecipeError(f"recipe key {key!r} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(f"recipe key {key!r} must be a string, got {value!r}")
        return value
    raise RecipeError(f"recipe key {key!r}: unsupported type {_type_name(tp)}")


def from_dict(cls: type, data: dict | None, prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from a mapping, validating keys and types.

    Raises:
        RecipeError: on an unknown key (listing the valid ones) or a bad value.
    """
    data = {} if data is None else data
    where = prefix.rstrip(".") or "the recipe"
    if not isinstance(data, dict):
        raise RecipeError(f"{where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise RecipeError(
            f"unknown recipe key {prefix + str(unknown[0])!r}; valid keys in "
            f"{where}: {', '.join(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        key = prefix + name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, key + ".")
        else:
            kwargs[name] = _coerce(value, tp, key)
            choices = _CHOICES.get(tuple(key.split(".")))
            values = kwargs[name] if isinstance(kwargs[name], list) else [kwargs[name]]
            bad = [v for v in values if choices and v not in choices]
            if bad:
                raise RecipeError(
                    f"recipe key {key!r} must be one of {list(choices)}, got "
                    f"{bad[0]!r}"
                )
    return cls(**kwargs)


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
        if isinstance(value, dict) and isinstance(out.get(key), dict):
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


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> Any:
    """Read a YAML recipe, apply ``key=value`` overrides and validate it.

    Args:
        path: the recipe file.
        overrides: ``["training.steps=500", ...]``.

    Returns:
        The recipe dataclass of its ``kind`` (e.g. :class:`ToyRecipe`).

    Raises:
        RecipeError: missing or unreadable file, invalid YAML, unknown kind,
            unknown key or bad value.
    """
    return recipe_from_dict(load_recipe_data(path, overrides))


def recipe_from_dict(data: dict) -> Any:
    """Validate a recipe mapping against the schema of its ``kind``."""
    kind = data.get("kind")
    if kind not in SCHEMAS:
        raise RecipeError(
            f"recipe kind {kind!r} is not known: expected one of {sorted(SCHEMAS)}"
        )
    return from_dict(SCHEMAS[kind], data)
