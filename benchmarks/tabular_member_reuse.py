"""A run's member networks on one compiled model (OCSDF.restart) or each built anew.

One run of a tabular recipe (``--recipe``, default the shipped
``recipes/tabular_odds.yaml``, its values open to ``--set KEY=VALUE`` as in
``kocc benchmark``: ``training.members``, ``training.steps``,
``training.jit_compile``, ``seed``) on one ODDS/ADBench set trains
``training.members`` networks (seeds ``1000 * seed + k``) through the
benchmark's own :func:`kocc.experiments.tabular_benchmark.train_ocsdf`, the
rows, prior, scaling and first margin as ``kocc benchmark`` picks them. Variant
``restart`` trains them all on the first network's compiled model
(:meth:`kocc.models.OCSDF.restart`, what ``kocc benchmark`` does now); ``new``
builds, traces and compiles a model per network and clears the Keras session
after each (the benchmark before the change). The two alternate, ``--rounds``
times each: the time is the whole run's members, training and scoring. The
JSON gives the median seconds, the rounds, the ratio new/restart, and the
largest difference between the two variants' member scores (0.0: the same
networks to the bit; ``_harness.compare_tabular_variants``)::

    KOCC_DATA_DIR=../shared/data TF_NUM_INTRAOP_THREADS=1 \\
        TF_NUM_INTEROP_THREADS=1 taskset -c 0 \\
        python benchmarks/tabular_member_reuse.py cardio [--rounds 2] \\
        [--set training.jit_compile=true] [--set training.members=5]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _harness import compare_tabular_variants  # noqa: E402

from kocc.experiments.tabular_benchmark import (  # noqa: E402
    member_seeds,
    train_ocsdf,
)


def members_scores(settings, rows, domain, seed: int, restart: bool) -> np.ndarray:
    """The scores of a run's members on ``rows``, one row per member."""
    scores, model = [], None
    for member_seed in member_seeds(seed, settings.members):
        reuse = model if restart else None
        model = train_ocsdf(
            rows, settings, settings.margins[0], domain, member_seed, model=reuse
        )
        scores.append(np.asarray(model.score_samples(rows)).reshape(-1))
        if not restart:  # as the benchmark did: a new session per network
            model = None
            tf.keras.backend.clear_session()
    return np.stack(scores)


if __name__ == "__main__":
    compare_tabular_variants(
        __doc__,
        "tabular_member_reuse",
        {
            "restart": lambda *a: members_scores(*a, restart=True),
            "new": lambda *a: members_scores(*a, restart=False),
        },
        rounds=2,
        check=lambda config: (
            "training.members >= 2: one network has nothing to reuse"
            if config.ocsdf.members < 2
            else None
        ),
        fields=lambda settings: {"members": settings.members},
    )
