"""Steps per second of the surface recipe's OCSDF training step, per sampling setting.

Builds the network of :func:`kocc.surfaces.fit_point_cloud` (3 -> 8 x 128
GroupSort2 -> 1, its defaults) in a box around 2,048 standard-normal 3-D points
and times ``OCSDF.fit`` with the recipe's batch (256), m = 0.05 and lambda = 100,
for each ``--settings`` entry ``T:K``: T Newton-Raphson steps per sampling, a
sampling every K updates (``updates_per_sampling``; K > 1 reuses the negatives).
After ``--warmup`` steps, ``--rounds`` rounds of ``--steps`` steps each; the
settings alternate within a round so that they see the same machine load. One
JSON line per setting: its steps/s per round (wall and process CPU) and the
median, plus the load average before and after. The table "T = 2
Newton-Raphson steps" of docs/surfaces.md comes from

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c 0 \
        python benchmarks/surface_step_rate.py --settings 4:1 2:1 4:2 4:3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.implicit_surface import padded_bounds  # noqa: E402
from kocc.sampling import Box  # noqa: E402
from kocc.training import compile_ocsdf, repeated_batches  # noqa: E402


def parse_setting(text: str) -> tuple[int, int]:
    """``"T:K"`` -> ``(T, K)``."""
    try:
        nr_steps, updates = (int(v) for v in text.split(":"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected T:K, got {text!r}") from err
    if nr_steps < 0 or updates < 1:
        raise argparse.ArgumentTypeError(f"need T >= 0 and K >= 1, got {text!r}")
    return nr_steps, updates


def build(nr_steps: int, updates: int, batch: int, x: np.ndarray) -> tf.keras.Model:
    backbone = lipschitz_mlp(3, widths=(128,) * 8, activation="groupsort2", seed=0)
    low, high = padded_bounds(x, 0.1)
    return compile_ocsdf(
        backbone,
        Box(low, high),
        margin=0.05,
        lam=100.0,
        nr_steps=nr_steps,
        updates_per_sampling=updates,
        negatives_per_batch=batch if updates > 1 else None,
        seed=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", type=parse_setting, default=[(4, 1)])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    settings = list(dict.fromkeys(args.settings))

    x = np.random.default_rng(0).normal(size=(2048, 3)).astype(np.float32)
    data = repeated_batches(x, args.batch, seed=0)
    load_before = os.getloadavg()[0]
    models = {s: build(*s, args.batch, x) for s in settings}
    for model in models.values():
        model.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0)
    rates = {s: {"wall": [], "cpu": []} for s in settings}
    for _ in range(args.rounds):
        for setting, model in models.items():
            wall, cpu = time.perf_counter(), time.process_time()
            model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
            rates[setting]["wall"].append(args.steps / (time.perf_counter() - wall))
            rates[setting]["cpu"].append(args.steps / (time.process_time() - cpu))
    load_after = os.getloadavg()[0]
    for (nr_steps, updates), rate in rates.items():
        print(
            json.dumps(
                {
                    "benchmark": "surface_step_rate",
                    "nr_steps": nr_steps,
                    "updates_per_sampling": updates,
                    "batch": args.batch,
                    "steps_per_round": args.steps,
                    "wall_steps_per_second": [round(v, 2) for v in rate["wall"]],
                    "cpu_steps_per_second": [round(v, 2) for v in rate["cpu"]],
                    "median_wall_steps_per_second": round(
                        statistics.median(rate["wall"]), 2
                    ),
                    "load_average_before_after": [load_before, load_after],
                    "tensorflow": tf.__version__,
                }
            )
        )


if __name__ == "__main__":
    main()
