"""Training throughput: kocc's ``OCSDF.fit`` vs the OCSDF authors' training step.

Paper toy configuration (appendix E): ``2 -> 4x512 FullSort -> 1``, batch 256,
T = 4 Newton-Raphson steps, RMSprop(1e-3), two moons, negatives in the ball of
radius 5.

kocc is timed through the user's path: ``OCSDF(lipschitz_mlp(2, widths=(512,)
* 4), Ball(5.0, shape=(2,)), margin=0.05, lam=100, nr_steps=4)`` with the
library's defaults, ``model.fit`` on a ``tf.data`` pipeline.

The reference replicates, as an equivalent loop (not a copy), the training step
of the authors' published code (github.com/Algue-Rythme/OCSDF, ``ocml/train.py``:
``newton_raphson`` and ``train_step``, compiled with ``tf.function``; network
``ocml/models.py::spectral_dense``, i.e. deel-lip ``SpectralDense`` + ``FullSort``
+ ``FrobeniusDense``; loss ``SH_KR``; seeds ``ocml/priors.py::uniform_tabular``):

* negatives: uniform in the ball of radius ``(high - low) / 2`` from a
  ``tf.random.Generator``; one step size ``lr ~ U(0, 1)`` per sample;
* ``maxiter = T`` Newton-Raphson steps unrolled in Python: the first calls the
  network in training mode (deel-lip orthogonalizes the kernels), the others in
  inference mode; ``z <- clip(z + eta/T * lr * relu(level - f) * g/||g||^2)``;
* then ``model(p_batch, training=True)`` and ``model(q_batch, training=True)``
  under the gradient tape (two more orthogonalizations, each differentiated),
  loss ``mean(relu(m - y f) + mean(-y f) / lambda)`` summed over positives and
  negatives, ``opt.apply_gradients`` on the trainable weights.

So three orthogonalizing calls per step, two of them differentiated.

Rounds alternate (kocc fit, reference) so that both see the same machine load;
the JSON reports the median steps/s of each over the rounds and their ratio, the
per-round figures and the load average before and after. kocc's rate is its
training loop's (``_harness.FitRate.in_fit``: from the end of a round's first
step to the end of its last), like the reference's loop of step calls;
``kocc_fit_call_steps_per_second`` also counts the fixed cost of each ``fit``
call (iterator set-up and teardown). Both sides read the batches of
:func:`kocc.training.repeated_batches`, the user's pipeline. With ``--jit-compile``
a third side joins the rotation: the same OCSDF compiled with
``compile(..., jit_compile=True)`` (the whole training step under XLA).

    python benchmarks/train_throughput.py [--steps 20] [--rounds 5] [--width 512]
        [--jit-compile]
"""

from __future__ import annotations

import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _harness import TRAINING_ROUNDS, FitRate, int_options  # noqa: E402
from deel.lip.activations import FullSort  # noqa: E402
from deel.lip.layers import FrobeniusDense, SpectralDense  # noqa: E402
from deel.lip.model import Sequential as LipSequential  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.datasets.toys import make_toy  # noqa: E402
from kocc.models import OCSDF  # noqa: E402
from kocc.sampling import Ball  # noqa: E402
from kocc.training import repeated_batches  # noqa: E402

MARGIN, LAM, RADIUS = 0.05, 100.0, 5.0


def authors_network(widths: tuple[int, ...]) -> LipSequential:
    """``spectral_dense``: SpectralDense + FullSort layers, FrobeniusDense(1)."""
    layers = [tf.keras.layers.InputLayer((2,))]
    for width in widths:
        layers += [SpectralDense(width), FullSort()]
    layers.append(FrobeniusDense(1))
    return LipSequential(layers)


def authors_step_fn(model, optimizer, generator, nr_steps: int):
    """The authors' training step (see the module docstring), one ``tf.function``."""

    def hinge_kr(y):  # SH_KR(margin, lbda)
        return tf.nn.relu(MARGIN - y) + (1.0 / LAM) * tf.reduce_mean(-y)

    def newton_raphson(q0):
        lr = generator.uniform((q0.shape[0], 1), 0.0, 1.0)
        step_size = 1.0 / nr_steps
        q = q0
        for step in range(nr_steps):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(q)
                y = model(q, training=(step == 0))
            grad = tape.gradient(y, q)
            grad = grad / (tf.reduce_sum(grad**2, axis=1, keepdims=True) + 1e-8)
            target = tf.nn.relu(-y - MARGIN)  # level set -margin, no overshoot
            q = tf.clip_by_value(q + step_size * lr * target * grad, -RADIUS, RADIUS)
        return q

    def uniform_ball(n):
        radius = generator.uniform((n, 1), 0.0, 1.0) ** 0.5
        seeds = generator.normal((n, 2))
        seeds = seeds / tf.norm(seeds, axis=1, keepdims=True)
        return seeds * radius * RADIUS

    @tf.function
    def step(p_batch):
        q_batch = newton_raphson(uniform_ball(p_batch.shape[0]))
        weights = model.trainable_weights
        with tf.GradientTape() as tape:
            y_p = model(p_batch, training=True)
            y_q = model(q_batch, training=True)
            loss = tf.reduce_mean(hinge_kr(y_p)) + tf.reduce_mean(hinge_kr(-y_q))
        grads = tape.gradient(loss, weights)
        optimizer.apply_gradients(zip(grads, weights, strict=True))
        return loss

    return step


def main() -> None:
    args = int_options(
        __doc__,
        switches={
            "jit_compile": "also time kocc's fit with the whole train step under XLA"
        },
        **TRAINING_ROUNDS,
        width=512,
        depth=4,
        batch=256,
    )
    load_before = os.getloadavg()
    widths = (args.width,) * args.depth

    x, _ = make_toy("two_moons", 4096, seed=0)
    x = x.astype(np.float32)
    data = repeated_batches(x, args.batch, seed=0)  # the user's pipeline

    def kocc_model(jit_compile: bool) -> OCSDF:
        tf.keras.utils.set_random_seed(0)
        model = OCSDF(
            lipschitz_mlp(2, widths=widths, seed=0),
            Ball(RADIUS, shape=(2,)),
            margin=MARGIN,
            lam=LAM,
            nr_steps=args.nr_steps,
        )
        model.compile(tf.keras.optimizers.RMSprop(1e-3), jit_compile=jit_compile)
        return model

    call_rates: dict[str, list[float]] = {name: [] for name in ("kocc", "kocc_jit")}

    def fit_round(model: OCSDF, name: str | None = None) -> float:
        rate = FitRate(model, data, args.steps)
        if name is not None:
            call_rates[name].append(rate.call)
        return rate.in_fit

    sides = {"kocc": kocc_model(False)}
    if args.jit_compile:
        sides["kocc_jit"] = kocc_model(True)

    tf.keras.utils.set_random_seed(0)
    reference = authors_step_fn(
        authors_network(widths),
        tf.keras.optimizers.RMSprop(1e-3),
        tf.random.Generator.from_seed(0),
        args.nr_steps,
    )
    batches = iter(data)

    def reference_round() -> float:
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = reference(next(batches))
        float(loss)  # wait for the last step
        return args.steps / (time.perf_counter() - start)

    rates: dict[str, list[float]] = {name: [] for name in [*sides, "authors"]}
    for model in sides.values():  # trace and warm up
        fit_round(model)
    reference_round()
    for _ in range(args.rounds):
        for name, model in sides.items():
            rates[name].append(fit_round(model, name))
        rates["authors"].append(reference_round())
    kocc_rates, reference_rates = rates["kocc"], rates["authors"]
    kocc_rate = float(np.median(kocc_rates))
    reference_rate = float(np.median(reference_rates))
    extra = {}
    if args.jit_compile:
        jit_rate = float(np.median(rates["kocc_jit"]))
        extra = {
            "kocc_fit_jit_compile_steps_per_second": round(jit_rate, 3),
            "jit_compile_speedup": round(jit_rate / reference_rate, 3),
            "kocc_jit_compile_rounds": [round(r, 3) for r in rates["kocc_jit"]],
        }
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "config": {
                    "widths": list(widths),
                    "activation": "fullsort",
                    "batch": args.batch,
                    "nr_steps": args.nr_steps,
                    "steps_per_round": args.steps,
                    "rounds": args.rounds,
                },
                "kocc_fit_steps_per_second": round(kocc_rate, 3),
                "authors_step_steps_per_second": round(reference_rate, 3),
                "speedup": round(kocc_rate / reference_rate, 3),
                "kocc_rounds": [round(r, 3) for r in kocc_rates],
                "kocc_fit_call_steps_per_second": round(
                    float(np.median(call_rates["kocc"])), 3
                ),
                "kocc_fit_call_rounds": [round(r, 3) for r in call_rates["kocc"]],
                "authors_rounds": [round(r, 3) for r in reference_rates],
                **extra,
                "load_average_before_after": [
                    round(load_before[0], 2),
                    round(os.getloadavg()[0], 2),
                ],
                "cpu_count": os.cpu_count(),
                "machine": platform.machine(),
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
