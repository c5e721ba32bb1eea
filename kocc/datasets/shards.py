"""Training data larger than memory: TFRecord shards read in parallel by tf.data.

:func:`write_tfrecord_shards` writes samples (given chunk by chunk, so the
whole set never needs to be in memory) as TFRecord files, each record holding a
block of rows; :func:`sharded_dataset` reads them back as the endless, shuffled
batches ``OCSDF.fit`` takes, the files read in parallel
(``interleave(..., num_parallel_calls=AUTOTUNE)``) and the dataset's
``AutoShardPolicy`` set for multi-worker training: ``FILE`` (each worker reads
its own files) when there are at least as many files as workers, ``DATA``
otherwise (every worker reads everything and keeps its share).

For data sets that never fit in memory, :func:`shard_files` resolves a glob
(a clear error when nothing matches), :func:`feature_statistics` computes the
per-feature count, min, max, mean and standard deviation in one streaming pass
(one block of rows in memory at a time; a shard with another feature count or
with NaN/inf is named), :func:`shard_blocks` reads one file's rows block by
block (for scoring), and :func:`array_chunks` reads a ``.npy`` or ``.csv`` file
in chunks of rows for :func:`write_tfrecord_shards` (``kocc shards``).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from sklearn.preprocessing import StandardScaler

__all__ = [
    "FeatureStatistics",
    "array_chunks",
    "cluster_workers",
    "feature_statistics",
    "max_standardized_norm",
    "shard_blocks",
    "shard_files",
    "sharded_dataset",
    "write_tfrecord_shards",
]

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
    transform: Callable[[tf.Tensor], tf.Tensor] | None = None,
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
        transform: a TensorFlow function applied to every decoded block of rows
            ``(k, *feature_shape)`` before shuffling (e.g. the standardization
            ``(x - mean) / std``); it must keep the shape.

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
        block = tf.ensure_shape(block, (None, *shape))
        return block if transform is None else transform(block)

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


# ------------------------------------------------------- data on disk, streamed
def shard_files(pattern: str | os.PathLike, what: str = "shards") -> list[str]:
    """The sorted files matching a glob pattern, or a clear error.

    Args:
        pattern: e.g. ``"data/train-*.tfrecord"`` (relative to the working
            directory, or absolute).
        what: what the files are, named in the error (e.g. a recipe key).

    Raises:
        ValueError: no file matches, or a match is a directory.
    """
    names = sorted(tf.io.gfile.glob(str(pattern)))
    if not names:
        raise ValueError(f"{what}: no file matches {str(pattern)!r}")
    for name in names:
        if tf.io.gfile.isdir(name):
            raise ValueError(f"{what}: {name!r} is a directory, not a TFRecord shard")
    return names


def shard_blocks(
    path: str | os.PathLike, features: int | None = None, reference: str = ""
) -> Iterator[np.ndarray]:
    """The rows of one TFRecord shard, block by block (float32 ``(k, d)``).

    Each block is checked: two dimensions, ``features`` columns when given (else
    the first block's count), finite values; errors name the file and record
    (and ``reference``, where the expected feature count comes from).

    Raises:
        ValueError: a record that is not a float32 tensor of rows, a block with
            another feature count, NaN or inf.
    """
    name = str(path)
    for i, record in enumerate(_records(name)):
        try:
            block = tf.io.parse_tensor(record, out_type=tf.float32).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
            raise ValueError(
                f"shard {name!r}, record {i}: not a float32 block of rows "
                f"(write shards with write_tfrecord_shards or kocc shards): "
                f"{err.message.splitlines()[0]}"
            ) from None
        if block.ndim != 2:
            raise ValueError(
                f"shard {name!r}, record {i}: rows of shape {block.shape[1:]}, "
                "expected rows of features (n, d)"
            )
        if features is not None and block.shape[1] != features:
            raise ValueError(
                f"shard {name!r} holds rows of {block.shape[1]} features, "
                f"expected {features}" + (f" (as {reference})" if reference else "")
            )
        features = block.shape[1]
        if not np.all(np.isfinite(block)):
            bad = int(np.count_nonzero(~np.isfinite(block)))
            raise ValueError(
                f"shard {name!r}, record {i}: {bad} non-finite value(s) (NaN or inf)"
            )
        yield block


def _records(name: str) -> Iterator[bytes]:
    """The records of a TFRecord file; a file that is not one is named."""
    records = tf.data.TFRecordDataset(name).as_numpy_iterator()
    while True:
        try:
            yield next(records)
        except StopIteration:
            return
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            raise ValueError(
                f"shard {name!r} is not a readable TFRecord file: "
                f"{err.message.splitlines()[0]}"
            ) from None


@dataclass(frozen=True)
class FeatureStatistics:
    """Per-feature statistics of rows streamed from shards (float64, ``(d,)``).

    Attributes:
        count: number of rows.
        mean, std: mean and (population, ddof 0) standard deviation.
        minimum, maximum: smallest and largest value.
        files: the files they were computed from.
    """

    count: int
    mean: np.ndarray
    std: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    files: tuple[str, ...] = ()

    @property
    def features(self) -> int:
        return int(self.mean.shape[0])

    @property
    def scale(self) -> np.ndarray:
        """The standardization's divisor: ``std``, 1 where a feature is constant
        (as scikit-learn's ``StandardScaler``)."""
        return np.where(self.std > 0, self.std, 1.0)


def feature_statistics(files: Sequence[str | os.PathLike]) -> FeatureStatistics:
    """Count, mean, std, min and max per feature in one pass over shards.

    One block of rows is in memory at a time: the mean and variance are
    scikit-learn's incremental ones (``StandardScaler.partial_fit``, float64
    accumulators, Chan et al.'s pairwise update), the same scaler
    :func:`kocc.datasets.tabular.fit_standardizer` fits in memory. The files are
    read one after the other, each checked by :func:`shard_blocks` against the
    first file's feature count.

    Raises:
        ValueError: no file, no row, or a bad shard (named).
    """
    names = [str(f) for f in files]
    if not names:
        raise ValueError("no shard to compute feature statistics from")
    scaler = StandardScaler()
    low = high = None
    first = None
    for name in names:
        features = None if first is None else scaler.n_features_in_
        for block in shard_blocks(name, features, f"in {first!r}" if first else ""):
            if block.shape[0] == 0:
                continue
            first = first or name
            scaler.partial_fit(block)
            low = block.min(0) if low is None else np.minimum(low, block.min(0))
            high = block.max(0) if high is None else np.maximum(high, block.max(0))
    if first is None:
        raise ValueError(
            f"the shards {names[:3]}{'...' if len(names) > 3 else ''} hold no row"
        )
    return FeatureStatistics(
        count=int(scaler.n_samples_seen_),
        mean=scaler.mean_,
        std=np.sqrt(scaler.var_),
        minimum=low.astype(np.float64),
        maximum=high.astype(np.float64),
        files=tuple(names),
    )


def max_standardized_norm(
    files: Sequence[str | os.PathLike], statistics: FeatureStatistics
) -> float:
    """The largest l2 norm of a standardized row ``(x - mean) / scale``, one pass.

    The radius of the covering ball prior
    (:func:`kocc.tabular_prior.prior_from_statistics` with ``kind="ball"``): the
    rows are standardized in float32 as :func:`sharded_dataset` feeds them, one
    block in memory at a time.

    Raises:
        ValueError: no file, or a bad shard (named).
    """
    names = [str(f) for f in files]
    if not names:
        raise ValueError("no shard to compute the largest row norm from")
    mean = np.asarray(statistics.mean, np.float32)
    scale = np.asarray(statistics.scale, np.float32)
    largest = 0.0
    for name in names:
        for block in shard_blocks(name, statistics.features, f"in {names[0]!r}"):
            if block.shape[0]:
                rows = (np.asarray(block, np.float32) - mean) / scale
                largest = max(largest, float(np.linalg.norm(rows, axis=1).max()))
    return largest


def array_chunks(
    path: str | os.PathLike, rows: int = 65536, delimiter: str = ","
) -> Iterator[np.ndarray]:
    """A ``.npy`` or ``.csv`` table of samples, ``rows`` rows at a time.

    A ``.npy`` file is memory-mapped (only the chunk being read is loaded); a
    ``.csv`` file (numbers only, an optional header line of names) is parsed
    ``rows`` lines at a time. Feed the chunks to :func:`write_tfrecord_shards`.

    Raises:
        ValueError: a missing file, another suffix, a ``.npy`` array that is not
            a table of numbers, or a ``.csv`` line that is not numbers (named by
            its line number).
    """
    path = Path(path)
    if int(rows) < 1:
        raise ValueError(f"rows must be >= 1, got {rows!r}")
    if not path.is_file():
        raise ValueError(f"input file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if array.ndim < 2 or not np.issubdtype(array.dtype, np.number):
            raise ValueError(
                f"{str(path)!r}: expected an array of samples (n, features...) of "
                f"numbers, got shape {array.shape} and dtype {array.dtype}"
            )
        for start in range(0, array.shape[0], int(rows)):
            yield np.asarray(array[start : start + int(rows)], dtype=np.float32)
        return
    if suffix != ".csv":
        raise ValueError(f"{str(path)!r}: expected a .npy or .csv file")
    with path.open(newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        line = 0
        while True:
            lines = list(itertools.islice(reader, int(rows)))
            if not lines:
                return
            values = []
            for row in lines:
                line += 1
                if not row:
                    continue
                try:
                    values.append([float(v) for v in row])
                except ValueError:
                    if line == 1:  # a header of column names
                        continue
                    raise ValueError(
                        f"{str(path)!r}, line {line}: not a row of numbers: "
                        f"{delimiter.join(row)[:80]!r}"
                    ) from None
            if values:
                try:
                    yield np.asarray(values, dtype=np.float32)
                except ValueError:
                    raise ValueError(
                        f"{str(path)!r}: rows of different lengths near line {line}"
                    ) from None
