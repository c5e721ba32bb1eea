"""One tabular network's fit with the row stream's tf.data autotuning on and off.

Trains the network of a tabular recipe (``--recipe``, default the shipped
``recipes/tabular_odds.yaml``: its scaling and prior as the sparsity rule picks
them, width, activation, first margin, λ, T, batch, optimizer, rate, steps,
``training.jit_compile`` and seed, each open to ``--set KEY=VALUE`` as in
``kocc benchmark``; ``--set training.jit_compile=true`` for the XLA update of
the tables of docs/tabular.md) on one ODDS/ADBench set through the benchmark's
own path, :func:`kocc.experiments.tabular_benchmark.fit_on_batches` fed by
:func:`kocc.datasets.tabular.streamed_dataset`, as ``kocc benchmark`` trains
each member. Variant ``off`` is the stream as kocc builds it (autotuning off,
:func:`kocc.datasets.pipelines.without_autotuning`), ``on`` the same stream
with tf.data's autotuning switched back on (the pipeline before the change).
The two alternate, ``--rounds`` times each, every round a new network from the
same seed: the time is the whole call (build, XLA compilation, the steps, and
the end of ``fit``), what a member costs. The JSON gives the median seconds,
the rounds, the ratio on/off, and the largest score difference between the two
variants' networks (0: the switch does not change the training;
``_harness.compare_tabular_variants``)::

    KOCC_DATA_DIR=../shared/data TF_NUM_INTRAOP_THREADS=1 \\
        TF_NUM_INTEROP_THREADS=1 taskset -c 0 \\
        python benchmarks/tabular_stream_autotuning.py cardio [--rounds 3] \\
        [--recipe recipes/tabular_odds.yaml] [--set training.jit_compile=true] \\
        [--set training.steps=3000] [--set seed=0]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import tensorflow as tf  # noqa: E402
from _harness import compare_tabular_variants  # noqa: E402

from kocc.datasets.tabular import streamed_dataset  # noqa: E402
from kocc.experiments.tabular_benchmark import fit_on_batches  # noqa: E402


def with_autotuning(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` with tf.data's autotuning switched back on."""
    options = tf.data.Options()
    options.autotune.enabled = True
    return dataset.with_options(options)


def fitted_scores(settings, rows, domain, seed: int, autotuning: bool):
    """One member's scores on ``rows``, fitted on the stream as ``kocc
    benchmark`` builds it, with tf.data's autotuning on or (kocc's) off."""
    data = streamed_dataset(rows, min(settings.batch_size, len(rows)), seed=seed)
    data = with_autotuning(data) if autotuning else data
    model = fit_on_batches(
        data, rows.shape[1], settings, settings.margins[0], domain, seed
    )
    return model.score_samples(rows)


if __name__ == "__main__":
    compare_tabular_variants(
        __doc__,
        "tabular_stream_autotuning",
        {
            "off": lambda *a: fitted_scores(*a, autotuning=False),
            "on": lambda *a: fitted_scores(*a, autotuning=True),
        },
    )
