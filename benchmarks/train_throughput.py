"""Training throughput: kocc's OCSDF.train_step vs a straightforward reference loop.

Paper toy configuration (appendix E): 2 -> 4x512 FullSort -> 1, batch 256,
T = 4 Newton-Raphson steps, RMSprop. The reference loop is what one writes
first with deel-lip: separate training-mode forward passes for the first
Newton-Raphson step, the positives and the negatives, so the kernels are
orthogonalized three times per step. kocc orthogonalizes once per step and runs
every forward pass on the cached kernels (kocc.orthogonalization).

Prints one JSON object: steps/s of both and their ratio.

    python benchmarks/train_throughput.py [--steps 50] [--width 512] [--depth 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.datasets.toys import make_toy  # noqa: E402
from kocc.losses import OneClassHKR  # noqa: E402
from kocc.models import OCSDF  # noqa: E402
from kocc.sampling import Ball, draw_eta, newton_raphson_steps  # noqa: E402


def reference_step_fn(backbone, domain, loss_fn, optimizer, margin, nr_steps):
    """The straightforward loop: three training-mode (orthogonalizing) passes."""

    def score_train(z):
        return tf.reshape(backbone(z, training=True), [-1])

    def score_eval(z):
        return tf.reshape(backbone(z, training=False), [-1])

    @tf.function
    def step(x, seed):
        n = tf.shape(x)[0]
        seeds = tf.random.experimental.stateless_split(seed, 2)
        z = domain.sample(n, seeds[0], shape=(2,))
        eta = draw_eta(n, seeds[1])
        # first Newton-Raphson step in training mode (orthogonalizes), the rest
        # on the kernels it cached
        z = newton_raphson_steps(score_train, z, 1, -margin, eta * 1 / nr_steps, None)
        z = domain.project(z)
        z = newton_raphson_steps(
            score_eval, z, nr_steps - 1, -margin, eta / nr_steps, domain.project
        )
        z = tf.stop_gradient(z)
        with tf.GradientTape() as tape:
            f_pos = score_train(x)  # orthogonalizes again
            f_neg = score_train(z)  # and again
            y = tf.concat([tf.ones_like(f_pos), -tf.ones_like(f_neg)], 0)
            loss = loss_fn(y, tf.concat([f_pos, f_neg], 0))
        variables = backbone.trainable_variables
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    return step


def _time(fn, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--nr-steps", type=int, default=4)
    args = parser.parse_args()

    margin, lam = 0.05, 100.0
    x, _ = make_toy("two_moons", 4096, seed=0)
    batches = tf.data.Dataset.from_tensor_slices(x).repeat().batch(args.batch)
    it = iter(batches)
    widths = (args.width,) * args.depth

    tf.keras.utils.set_random_seed(0)
    model = OCSDF(
        lipschitz_mlp(2, widths=widths, seed=0),
        Ball(5.0, shape=(2,)),
        margin=margin,
        lam=lam,
        nr_steps=args.nr_steps,
    )
    model.compile(tf.keras.optimizers.RMSprop(1e-3))
    train_function = model.make_train_function()
    kocc_steps = _time(lambda: train_function(it), args.steps, args.warmup)

    tf.keras.utils.set_random_seed(0)
    backbone = lipschitz_mlp(2, widths=widths, seed=0)
    ref = reference_step_fn(
        backbone,
        Ball(5.0, shape=(2,)),
        OneClassHKR(margin, lam),
        tf.keras.optimizers.RMSprop(1e-3),
        margin,
        args.nr_steps,
    )
    counter = iter(range(10**9))
    ref_steps = _time(
        lambda: ref(next(it), tf.constant([0, next(counter)], tf.int64)),
        args.steps,
        args.warmup,
    )
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "config": {
                    "widths": list(widths),
                    "activation": "fullsort",
                    "batch": args.batch,
                    "nr_steps": args.nr_steps,
                    "timed_steps": args.steps,
                },
                "kocc_steps_per_second": round(kocc_steps, 3),
                "reference_steps_per_second": round(ref_steps, 3),
                "speedup": round(kocc_steps / ref_steps, 3),
                "cpu_count": os.cpu_count(),
                "machine": platform.machine(),
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
