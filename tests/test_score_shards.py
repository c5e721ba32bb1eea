"""Certified AUROC from sorted score shards equals the in-memory result."""

import numpy as np
import pytest

from kocc import score_shards
from kocc.metrics import certified_auroc
from kocc.score_shards import certified_auroc_from_shards, write_score_shards


def _batches(values, sizes):
    edges = np.cumsum([0, *sizes])
    return [values[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]


def test_sharded_certified_auroc_equals_in_memory_result(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    # rounded scores: many ties, within and across shards
    normal = np.round(rng.normal(0.5, 1.0, 5003), 2)
    anomalous = np.round(rng.normal(-0.5, 1.0, 3001), 2)
    eps = np.array([0.0, 0.05, 0.3, 1.0])
    # small chunks, so that a shard is read in several slices
    monkeypatch.setattr(score_shards, "CHUNK", 700)
    normal_paths = write_score_shards(
        _batches(normal, [1000, 7, 2500, 1496]), tmp_path, "normal", shard_size=1200
    )
    anomalous_paths = write_score_shards(
        (b.reshape(-1, 1) for b in _batches(anomalous, [3000, 1])),
        tmp_path,
        "anomalous",
        shard_size=999,
    )
    assert len(normal_paths) == 5 and len(anomalous_paths) == 4
    assert sum(np.load(p).size for p in anomalous_paths) == anomalous.size
    sharded = certified_auroc_from_shards(normal_paths, anomalous_paths, eps, 1.5)
    in_memory = certified_auroc(normal, anomalous, eps, 1.5)
    np.testing.assert_array_equal(sharded, in_memory)
    assert 0.5 < in_memory[0] < 1.0 and in_memory[-1] < in_memory[0]
    # arrays as shards, a scalar radius
    assert certified_auroc_from_shards(
        [normal[:10], normal[10:]], [np.sort(anomalous)], 0.1
    ) == certified_auroc(normal, anomalous, 0.1)


def test_sharded_certified_auroc_rejects_bad_shards(tmp_path):
    with pytest.raises(ValueError, match="anomaly shard 0 is not sorted"):
        certified_auroc_from_shards([np.ones(3)], [np.array([2.0, 1.0])], 0.0)
    with pytest.raises(ValueError, match="does not exist"):
        certified_auroc_from_shards([tmp_path / "missing.npy"], [np.ones(2)], 0.0)
    with pytest.raises(ValueError, match="0 anomaly scores"):
        certified_auroc_from_shards([np.ones(3)], [np.ones(0)], 0.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        write_score_shards([np.array([1.0, np.nan])], tmp_path, "bad")
    with pytest.raises(ValueError, match="shard_size must be >= 1"):
        write_score_shards([np.ones(2)], tmp_path, "bad", shard_size=0)
