"""Training data larger than memory: TFRecord shards read in parallel by tf.data.

:func:`write_tfrecord_shards` writes samples (given chunk by chunk, so the
whole set never needs to be in memory) as TFRecord files, each record holding a
block of rows; :func:`sharded_dataset` reads them back as the endless, shuffled
batches ``OCSDF.fit`` takes, the files read in parallel
(``interleave(..., num_parallel_calls=AUTOTUNE)``) and the dataset's
``AutoShardPolicy`` set for multi-worker training: ``FILE`` (each worker reads
its own files) when there are at least as many files as workers, ``DATA``
otherwise (every worker reads everything and keeps its share).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf

__all__ = ["cluster_workers", "sharded_dataset", "write_tfrecord_shards"]

#: Rows per TFRecord record (a block is one serialized float32 tensor).
ROWS_PER_RECORD = 1024


def write_tfrecord_shards(
    chunks: Iterable[np.ndarray],
    directory: str | os.PathLike,
    num_shards: int,
    prefix: str = "train",
) -> list[Path]:
    """Write samples as ``num_shards`` TFRecord files, round-robin by record.

    Args:
        chunks: arrays of samples ``(n, *feature_shape)`` (e.g. read from disk
            piece by piece); all of one feature shape.
        directory: output directory (created if needed).
        num_shards: number of files ``<prefix>-0000-of-0004.tfrecord``, ...
        prefix: file name prefix.

    Returns:
        The shard paths.

    Raises:
        ValueError: ``num_shards < 1``, no samples, NaN/inf, or chunks of
            different feature shapes.
    """
    if int(num_shards) < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        out / f"{prefix}-{i:04d}-of-{int(num_shards):04d}.tfrecord"
        for i in range(int(num_shards))
    ]
    writers = [tf.io.TFRecordWriter(str(p)) for p in paths]
    shape, records, rows = None, 0, 0
    try:
        for i, chunk in enumerate(chunks):
            chunk = np.asarray(chunk, dtype=np.float32)
            if chunk.ndim < 2:
                raise ValueError(
                    f"chunk {i} must be a batch (n, features...), got {chunk.shape}"
                )
            if shape is None:
                shape = chunk.shape[1:]
            if chunk.shape[1:] != shape:
                raise ValueError(
                    f"chunk {i} has samples of shape {chunk.shape[1:]}, "
                    f"the first had {shape}"
                )
            if not np.all(np.isfinite(chunk)):
                raise ValueError(f"chunk {i} contains NaN or inf")
            for start in range(0, len(chunk), ROWS_PER_RECORD):
                block = chunk[start : start + ROWS_PER_RECORD]
                data = tf.io.serialize_tensor(block).numpy()
                writers[records % len(writers)].write(data)
                records += 1
                rows += len(block)
    finally:
        for writer in writers:
            writer.close()
    if rows == 0:
        raise ValueError("no samples to write")
    return paths


def cluster_workers(environ: dict | None = None) -> int:
    """Number of workers (chief included) in ``TF_CONFIG``; 1 without it."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG")
    if not raw:
        return 1
    cluster = json.loads(raw).get("cluster", {})
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def sharded_dataset(
    files: str | os.PathLike | list,
    feature_shape: tuple[int, ...],
    batch_size: int,
    *,
    shuffle_buffer: int = 16384,
    seed: int = 0,
    repeat: bool = True,
    workers: int | None = None,
) -> tf.data.Dataset:
    """Batches of the samples in TFRecord shards, for ``model.fit``.

    The files are listed (a glob pattern or a list), read ``cycle_length`` at a
    time in parallel, their records decoded into rows, shuffled in a buffer of
    ``shuffle_buffer`` rows (seeded) and batched (full batches only; the batch
    is the *global* batch under a strategy, which splits it over replicas).

    Args:
        files: a glob pattern (``"data/train-*.tfrecord"``) or a list of paths.
        feature_shape: the shape of one sample.
        batch_size: (global) batch size.
        shuffle_buffer: rows held for shuffling (memory: rows x sample size).
        seed: seed of the file order and the shuffle.
        repeat: repeat endlessly (fit with ``steps_per_epoch``).
        workers: workers the data will be split over (default: from
            ``TF_CONFIG``); sets ``AutoShardPolicy.FILE`` when there are at
            least as many files, else ``DATA``.

    Raises:
        ValueError: no file matches, or ``batch_size < 1``.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if isinstance(files, str | os.PathLike):
        names = sorted(tf.io.gfile.glob(str(files)))
    else:
        names = [str(f) for f in files]
    missing = [n for n in names if not tf.io.gfile.exists(n)]
    if not names or missing:
        raise ValueError(
            f"no TFRecord shard found for {files!r}"
            if not names
            else f"TFRecord shard {missing[0]!r} does not exist"
        )
    shape = tuple(int(s) for s in feature_shape)
    workers = cluster_workers() if workers is None else int(workers)

    def decode(record):
        block = tf.io.parse_tensor(record, out_type=tf.float32)
        return tf.ensure_shape(block, (None, *shape))

    dataset = tf.data.Dataset.from_tensor_slices(names)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.shuffle(len(names), seed=seed).interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(names), 8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    dataset = (
        dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        .unbatch()
        .shuffle(int(shuffle_buffer), seed=seed)
        .batch(int(batch_size), drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.FILE
        if len(names) >= workers
        else tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)
