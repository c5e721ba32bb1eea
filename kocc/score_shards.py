"""Certified AUROC of score sets too large for memory, from sorted score shards.

:func:`kocc.metrics.certified_auroc` counts, for every normal score ``s``, the
anomaly scores below ``s - 2 L eps`` (strictly, and with ties), by binary
search in the sorted anomaly scores. Those counts add up over any partition of
the two sets, so the same exact integers come from *shards*: files of scores
written batch by batch while scoring (:func:`write_score_shards`, each shard
sorted before it is saved), combined by :func:`certified_auroc_from_shards`,
which holds one anomaly shard and one slice of normal scores in memory at a
time. The result is bit-identical to the in-memory AUROC: the same pair counts,
one division.

Typical use with a model that scores a ``tf.data`` pipeline::

    normal = write_score_shards(
        (model.score_samples(b) for b in normal_ds), "scores", "normal")
    anomalous = write_score_shards(
        (model.score_samples(b) for b in anomalous_ds), "scores", "anomalous")
    certified_auroc_from_shards(normal, anomalous, [0.0, 0.1, 0.5])

Shards are ``.npy`` files read with ``mmap_mode="r"``; several workers may
write their own shards (distinct ``prefix``) and any process merges them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kocc.metrics import _as_epsilons, _as_scores, _check_lipschitz

__all__ = ["certified_auroc_from_shards", "write_score_shards"]

#: Normal scores compared at once against an anomaly shard.
CHUNK = 1 << 20

Shard = str | os.PathLike | np.ndarray


def write_score_shards(
    batches: Iterable[Any],
    directory: str | os.PathLike,
    prefix: str,
    shard_size: int = 1 << 24,
) -> list[Path]:
    """Write score batches as sorted ``.npy`` shards of ``shard_size`` scores.

    Args:
        batches: arrays of scores, 1-D or ``(n, 1)``, e.g. a model's scores of
            each batch of a dataset.
        directory: where the shards go (created if needed).
        prefix: shard file names are ``<prefix>-00000.npy``, ...
        shard_size: scores per shard (the last one holds the rest); one shard
            is held in memory while it fills.

    Returns:
        The shard paths, in order.

    Raises:
        ValueError: on ``shard_size < 1``, scores of another shape, or NaN/inf.
    """
    if int(shard_size) < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    pending: list[np.ndarray] = []
    held = 0

    def flush(values: np.ndarray) -> None:
        path = out / f"{prefix}-{len(paths):05d}.npy"
        np.save(path, np.sort(values))
        paths.append(path)

    for i, batch in enumerate(batches):
        scores = _batch_scores(batch, f"batch {i}")
        pending.append(scores)
        held += scores.size
        while held >= shard_size:
            values = np.concatenate(pending)
            flush(values[:shard_size])
            rest = values[shard_size:]
            pending, held = [rest], rest.size
    if held:
        flush(np.concatenate(pending))
    return paths


def _batch_scores(batch: Any, name: str) -> np.ndarray:
    return _as_scores(batch, name, allow_empty=True)


def _open(shard: Shard) -> np.ndarray:
    if isinstance(shard, str | os.PathLike):
        path = Path(shard)
        if not path.is_file():
            raise ValueError(f"score shard {str(path)!r} does not exist")
        return np.load(path, mmap_mode="r")
    return np.asarray(shard)


def _check_sorted_shard(values: np.ndarray, name: str) -> None:
    for start in range(0, values.size, CHUNK):
        part = np.asarray(values[start : start + CHUNK + 1], dtype=np.float64)
        _batch_scores(part, name)
        if np.any(part[1:] < part[:-1]):
            raise ValueError(
                f"{name} is not sorted: anomaly shards must be sorted ascending "
                "(write them with write_score_shards)"
            )


def certified_auroc_from_shards(
    normal_shards: Sequence[Shard],
    anomalous_shards: Sequence[Shard],
    epsilons: Any,
    lipschitz: float = 1.0,
) -> np.ndarray | float:
    r"""Certified AUROC (:func:`kocc.metrics.certified_auroc`) over score shards.

    .. math::

        \mathrm{AUROC}_\epsilon = \frac{\sum_{j,k} \big(W^{<}_{jk} + W^{\le}_{jk}\big)}
        {2\, n_+ n_-},

    where :math:`W^{<}_{jk}` (:math:`W^{\le}_{jk}`) counts the pairs of normal
    shard j and anomaly shard k with :math:`f(z) < f(x) - 2L\epsilon`
    (:math:`\le`), each by binary search of the normal scores in the sorted
    anomaly shard. Exact integers, so the result equals the in-memory AUROC.

    Args:
        normal_shards: ``.npy`` paths or arrays of normal scores (any order).
        anomalous_shards: ``.npy`` paths or arrays of anomaly scores, each
            sorted ascending (as :func:`write_score_shards` writes them).
        epsilons: one radius or an array of radii (``>= 0``).
        lipschitz: the scorer's Lipschitz constant ``L > 0``.

    Returns:
        A float for a scalar ``epsilons``, else an array of its shape.

    Raises:
        ValueError: missing file, no score in one of the two sets, NaN/inf,
            an unsorted anomaly shard, bad radii or Lipschitz constant.
    """
    eps = _as_epsilons(epsilons)
    shifts = 2.0 * _check_lipschitz(lipschitz) * eps.reshape(-1)
    anomalous = [_open(s) for s in anomalous_shards]
    for k, values in enumerate(anomalous):
        _check_sorted_shard(values, f"anomaly shard {k}")
    n_anomalous = sum(int(v.size) for v in anomalous)
    wins = np.zeros(shifts.size, dtype=np.int64)
    n_normal = 0
    for j, shard in enumerate(normal_shards):
        values = _open(shard)
        for start in range(0, values.size, CHUNK):
            chunk = _batch_scores(values[start : start + CHUNK], f"normal shard {j}")
            n_normal += chunk.size
            for anomalies in anomalous:
                if anomalies.size == 0:
                    continue
                sorted_anomalies = np.asarray(anomalies, dtype=np.float64)
                for i, shift in enumerate(shifts):
                    thresholds = chunk - shift
                    wins[i] += np.searchsorted(
                        sorted_anomalies, thresholds, side="left"
                    ).sum()
                    wins[i] += np.searchsorted(
                        sorted_anomalies, thresholds, side="right"
                    ).sum()
    if n_normal == 0 or n_anomalous == 0:
        raise ValueError(
            f"the shards hold {n_normal} normal and {n_anomalous} anomaly scores: "
            "both sets need at least one"
        )
    auroc = wins / (2.0 * n_normal * n_anomalous)
    if eps.ndim == 0:
        return float(auroc[0])
    return auroc.reshape(eps.shape)
