"""``tf.data`` options shared by kocc's input pipelines."""

from __future__ import annotations

import tensorflow as tf


def without_autotuning(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` with tf.data's autotuning switched off.

    For pipelines over arrays already in memory, which have nothing to tune.
    With autotuning on (tf.data's default), deleting the iterator at the end of
    a ``fit`` call waits for the autotuning thread, whose period doubles from
    10 ms while the iterator lives: measured on this project's machine (TF
    2.21), 1.6-3.6 s after ``on_train_end`` in 5 of 11 calls of 20-40 steps of
    the 4 x 512 FullSort benchmark network, the calls pinned at 5.1 s or 10.3 s
    whatever their steps took, none in 7 calls with autotuning off; and 13-16 s
    after the last of the 3,000 steps (about 30 s) of a tabular network fed by
    :func:`kocc.datasets.tabular.streamed_dataset` (docs/performance.md).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
