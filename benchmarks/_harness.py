"""What the benchmark scripts share: a command line of integer options.

A script describes itself in its module docstring (the first line is the
description ``--help`` prints) and takes ``--name N`` options with defaults::

    args = int_options(__doc__, steps=(20, "steps per round"), rounds=5)
"""

from __future__ import annotations

import argparse
import json
import os
import time

#: The options of a benchmark that times OCSDF training in alternating rounds:
#: ``--steps`` fit steps per round, ``--rounds``, ``--nr-steps`` (T).
TRAINING_ROUNDS: dict[str, int | tuple[int, str]] = {
    "steps": (20, "steps per round"),
    "rounds": 5,
    "nr_steps": 4,
}


def int_options(
    doc: str, switches: dict[str, str] | None = None, **options: int | tuple[int, str]
) -> argparse.Namespace:
    """Parses the command line: ``--name N`` for each keyword argument.

    Args:
        doc: the script's module docstring; its first line describes the script.
        switches: on/off options (``--name``, off by default) -> their help text.
        **options: option name (``nr_steps`` is spelled ``--nr-steps``) -> its
            default, or ``(default, help text)``.

    Returns:
        The parsed arguments (``args.nr_steps`` for ``--nr-steps``).
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, value in options.items():
        default, help_text = value if isinstance(value, tuple) else (value, None)
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, default=default, help=help_text)
    for name, help_text in (switches or {}).items():
        parser.add_argument(
            "--" + name.replace("_", "-"), action="store_true", help=help_text
        )
    return parser.parse_args()


class FitRate:
    """Steps/s of one ``model.fit`` call: in the loop, and for the whole call.

    ``in_fit`` counts the steps after the first one, from the end of the first
    to the end of the last (``on_train_batch_end``): the training loop's steady
    rate, what a long ``fit`` runs at. ``call`` divides all the steps by the wall
    time of the whole ``fit`` call, which also holds its fixed costs: building
    the data iterator and, after the last step, tearing it down. With tf.data's
    autotuning on, that teardown waited up to 3.6 s for the autotuning thread
    in about half of the calls on this project's machine; kocc's pipelines
    switch it off (:func:`kocc.datasets.pipelines.without_autotuning`), and the
    benchmarks feed ``fit`` with :func:`kocc.training.repeated_batches`.
    """

    def __init__(self, model, data, steps: int) -> None:
        if steps < 2:
            raise ValueError(f"steps must be >= 2 to time the loop, got {steps}")
        ends: list[float] = []
        callback = _batch_end_callback(lambda: ends.append(time.perf_counter()))
        start = time.perf_counter()
        model.fit(
            data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[callback]
        )
        stop = time.perf_counter()
        self.in_fit = (len(ends) - 1) / (ends[-1] - ends[0])
        self.call = steps / (stop - start)


def _batch_end_callback(on_batch_end):
    """A Keras callback calling ``on_batch_end()`` after every training batch."""
    import tensorflow as tf  # here: the scripts import kocc (tf-keras) first

    class _BatchEnd(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            on_batch_end()

    return _BatchEnd()


def tabular_config(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The tabular recipe ``args.recipe`` with ``args.overrides`` (``--set``).

    A bad recipe or override (unknown key, bad value, missing file) is a usage
    error naming it (``parser.error``, exit status 2), as in ``kocc benchmark``.

    Returns:
        The :class:`kocc.experiments.tabular_benchmark.TabularBenchmarkConfig`.
    """
    from kocc.experiments.recipes import RecipeError, load_recipe_data
    from kocc.experiments.tabular_benchmark import TabularBenchmarkConfig

    try:
        data = load_recipe_data(args.recipe, args.overrides)
        return TabularBenchmarkConfig.from_dict(data)
    except RecipeError as err:
        parser.error(str(err))


def tabular_rows(config, dataset: str, seed: int = 0):
    """One ODDS/ADBench set as a tabular recipe's OCSDF trains on it.

    The rows of ``dataset`` standardized, then scaled and given a prior as
    ``config`` (a :class:`kocc.experiments.tabular_benchmark.
    TabularBenchmarkConfig`) picks them: the sparsity rule, for ``auto``.

    Returns:
        ``(rows, domain, description)``: the float32 rows the networks train
        on, their negatives' prior, and the JSON fields naming them
        (``dataset``, ``rows``, ``features``, ``prior``, ``scaling``,
        ``sparsity``).
    """
    # here: the scripts import kocc (tf-keras) first
    from kocc.datasets.tabular import fit_standardizer, load_tabular, scaled_rows
    from kocc.experiments.tabular_benchmark import rule_choice
    from kocc.tabular_prior import tabular_prior

    x, _ = load_tabular(dataset)
    fit_standardizer(x).transform(x)
    settings = config.ocsdf
    kind, scaling, sparsity = rule_choice(
        x, config.prior_kind, settings.feature_scaling, config.sparsity_rule, seed
    )
    rows, _ = scaled_rows(x, None, scaling)
    domain = tabular_prior(rows, kind, config.pad_of(kind), config.prior_scale)
    description = {
        "dataset": dataset,
        "rows": int(rows.shape[0]),
        "features": int(rows.shape[1]),
        "prior": kind,
        "scaling": scaling,
        "sparsity": None if sparsity is None else round(float(sparsity), 4),
    }
    return rows, domain, description


def compare_tabular_variants(
    doc: str,
    benchmark: str,
    variants: dict,
    rounds: int = 3,
    check=None,
    fields=None,
) -> None:
    """The command line and JSON of a benchmark that times two ways of training
    one tabular recipe's OCSDF, kocc's and the one it replaced, on the same set.

    Takes ``DATASET [--recipe R] [--rounds N] [--set KEY=VALUE ...]``
    (:func:`tabular_config`; :func:`tabular_rows`), then runs the two
    variants, ``--rounds`` times each, alternating, so that both see the same
    machine load; the Keras session is cleared after each run, so that every
    run starts alike. Prints one JSON line: the median and every round's seconds,
    ``<before>_over_<kocc>`` (the second variant's median over the first's),
    and the largest difference between the two variants' scores (0.0: the
    same networks).

    Args:
        doc: the script's module docstring (its first line is ``--help``'s).
        benchmark: the JSON's ``benchmark`` name.
        variants: ``{name: run}``, kocc's first; ``run(settings, rows, domain,
            seed)`` trains and returns scores (an array).
        rounds: the default of ``--rounds``.
        check: ``check(config)`` returns a usage error message or None.
        fields: ``fields(settings)`` returns more JSON fields.
    """
    import numpy as np
    import tensorflow as tf

    from kocc.experiments.cli import add_overrides_arg

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("dataset", help="a kocc.datasets.tabular name, e.g. cardio")
    parser.add_argument("--recipe", default="recipes/tabular_odds.yaml")
    parser.add_argument("--rounds", type=int, default=rounds)
    add_overrides_arg(parser)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds >= 1")
    config = tabular_config(parser, args)
    problem = check(config) if check is not None else None
    if problem:
        parser.error(problem)
    settings, seed = config.ocsdf, config.seed
    rows, domain, description = tabular_rows(config, args.dataset, seed)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    scores: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            scores[name] = np.asarray(run(settings, rows, domain, seed))
            tf.keras.backend.clear_session()
            seconds[name].append(time.perf_counter() - start)
    median = {name: float(np.median(values)) for name, values in seconds.items()}
    kocc_way, before = variants
    report = {
        "benchmark": benchmark,
        **description,
        "steps": settings.steps,
        "jit_compile": settings.jit_compile,
        "seed": seed,
        **(fields(settings) if fields is not None else {}),
        "recipe": args.recipe,
        "overrides": args.overrides,
        "seconds": {n: round(v, 2) for n, v in median.items()},
        "rounds": {n: [round(v, 2) for v in values] for n, values in seconds.items()},
        f"{before}_over_{kocc_way}": round(median[before] / median[kocc_way], 3),
        "max_score_difference": float(np.abs(scores[before] - scores[kocc_way]).max()),
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
    }
    print(json.dumps(report))
