"""TFRecord shards: every sample read once per pass, parallel reads, shard policy."""

import numpy as np
import pytest
import tensorflow as tf

from kocc.datasets.shards import cluster_workers, sharded_dataset, write_tfrecord_shards


def _rows(array):
    return array[np.lexsort(array.T[::-1])]


def test_sharded_dataset_reads_every_sample_once_per_pass(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [rng.normal(size=(n, 3)).astype(np.float32) for n in (2500, 7, 1500)]
    paths = write_tfrecord_shards(chunks, tmp_path, num_shards=4)
    assert [p.name for p in paths][0] == "train-0000-of-0004.tfrecord"
    data = sharded_dataset(
        str(tmp_path / "train-*.tfrecord"), (3,), 100, repeat=False, workers=2
    )
    batches = [b.numpy() for b in data]
    assert all(b.shape == (100, 3) for b in batches)
    read = np.concatenate(batches)
    everything = np.concatenate(chunks)
    # full batches only: 4007 rows -> 40 batches; the rows read are distinct
    assert len(read) == 4000
    assert len(np.unique(read, axis=0)) == 4000
    assert np.isin(read[:, 0], everything[:, 0]).all()
    # one more pass, unbatched by a batch of all rows: exactly the samples
    whole = sharded_dataset(paths, (3,), 4007, repeat=False, shuffle_buffer=10)
    np.testing.assert_array_equal(_rows(next(iter(whole)).numpy()), _rows(everything))
    policy = tf.data.experimental.AutoShardPolicy
    assert data.options().experimental_distribute.auto_shard_policy == policy.FILE
    many = sharded_dataset(paths, (3,), 10, workers=8)
    assert many.options().experimental_distribute.auto_shard_policy == policy.DATA


def test_sharded_dataset_and_writer_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no TFRecord shard found"):
        sharded_dataset(str(tmp_path / "none-*.tfrecord"), (3,), 10)
    with pytest.raises(ValueError, match="does not exist"):
        sharded_dataset([tmp_path / "missing.tfrecord"], (3,), 10)
    with pytest.raises(ValueError, match="chunk 1 has samples of shape"):
        write_tfrecord_shards([np.ones((2, 3)), np.ones((2, 4))], tmp_path, 2)
    with pytest.raises(ValueError, match="NaN or inf"):
        write_tfrecord_shards([np.full((2, 3), np.nan)], tmp_path, 2)
    with pytest.raises(ValueError, match="no samples"):
        write_tfrecord_shards([], tmp_path, 2)
    assert cluster_workers({}) == 1
    assert (
        cluster_workers({"TF_CONFIG": '{"cluster": {"worker": ["a:1", "b:2"]}}'}) == 2
    )
