"""GroupSort2: kocc's pair swap against deel-lip's split/concat layer, one process.

The same network (the surface recipe's 8 x 128 by default: 3 -> widths -> 1,
deel-lip ``SpectralDense`` layers) is built twice from the same seed, once with
kocc's ``GroupSort2`` (:func:`kocc.activations.sort_pairs`, what
``lipschitz_mlp(..., activation="groupsort2")`` builds) and once with
deel-lip's own ``GroupSort2`` after every hidden layer (the baseline: the
published layer). The two are timed in alternating rounds, in CPU
milliseconds per call: the forward pass of ``2 * batch`` points, forward +
backward (gradient w.r.t. the cached kernels), the ``T`` Newton-Raphson steps
of ``batch`` negatives, and the OCSDF training step through ``fit``. It checks
that both networks give the same scores bit for bit before training, reports
the largest weight and score differences after the training steps (rounding:
TensorFlow's graph rewrites fuse the two training graphs' ops differently, and
the runs drift apart from there), and prints one JSON line::

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
        python benchmarks/pair_sort_speed.py --rounds 5
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _harness import int_options  # noqa: E402
from deel.lip.activations import GroupSort2 as DeelGroupSort2  # noqa: E402
from deel.lip.model import Sequential as LipSequential  # noqa: E402

from kocc.activations import GroupSort2  # noqa: E402
from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.models import OCSDF  # noqa: E402
from kocc.sampling import Box  # noqa: E402


def with_deel_lip_activation(network: LipSequential) -> LipSequential:
    """A copy of ``network`` with deel-lip's ``GroupSort2`` as its activations."""
    layers = [tf.keras.layers.Input(network.input_shape[1:])]
    for layer in network.layers:
        if isinstance(layer, GroupSort2):
            layers.append(DeelGroupSort2())
        else:
            layers.append(type(layer).from_config(layer.get_config()))
    copy = LipSequential(layers, name=network.name + "_deel")
    copy.set_weights(network.get_weights())
    return copy


def cpu_ms(fn, calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls * 1000


def main() -> None:
    args = int_options(
        __doc__,
        width=(128, "hidden width"),
        depth=(8, "hidden layers"),
        batch=(256, "points (and negatives) per step"),
        nr_steps=4,
        calls=(30, "calls per round and measure"),
        rounds=5,
    )
    low = -np.full(3, 1.5, np.float32)
    models, fns, initial_scores = {}, {}, {}
    x = tf.random.stateless_normal((args.batch, 3), seed=[0, 1])
    both = tf.concat([x, x + 0.5], 0)
    dataset = tf.data.Dataset.from_tensors(x).repeat()
    kocc_network = lipschitz_mlp(3, (args.width,) * args.depth, "groupsort2", seed=0)
    for name, network in (
        ("kocc", kocc_network),
        ("deel_lip", with_deel_lip_activation(kocc_network)),
    ):
        model = OCSDF(
            network,
            Box(low, -low),
            margin=0.05,
            lam=100.0,
            nr_steps=args.nr_steps,
            seed=0,
        )
        model.compile(tf.keras.optimizers.RMSprop(1e-3))
        initial_scores[name] = tf.function(lambda n=network: n(both, training=False))()
        model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # traces
        wbars = [layer.wbar for layer in model._constrained]

        def forward(network=network):
            return network(both, training=False)

        def forward_backward(network=network, wbars=wbars):
            with tf.GradientTape() as tape:
                tape.watch(wbars)
                score = tf.reduce_sum(network(both, training=False))
            return tape.gradient(score, wbars)

        def negatives(model=model):
            return model.sample_negatives(args.batch, tf.constant([1, 2]))

        def step(model=model):
            model.fit(dataset, steps_per_epoch=args.calls, epochs=1, verbose=0)

        models[name] = model
        fns[name] = {
            "forward": tf.function(forward),
            "forward_backward": tf.function(forward_backward),
            "newton_raphson": tf.function(negatives),
            "train_step": step,
        }
        for measure, fn in fns[name].items():
            if measure != "train_step":
                fn()  # trace
    same_scores = bool(
        np.array_equal(initial_scores["kocc"], initial_scores["deel_lip"])
    )
    times = {name: {m: [] for m in fns[name]} for name in fns}
    for _ in range(args.rounds):
        for name in fns:  # alternating: both see the same machine state
            for measure, fn in fns[name].items():
                calls = 1 if measure == "train_step" else args.calls
                ms = cpu_ms(fn, calls)
                times[name][measure].append(
                    ms / args.calls if measure == "train_step" else ms
                )
    weight_difference = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(
            models["kocc"].backbone.get_weights(),
            models["deel_lip"].backbone.get_weights(),
            strict=True,
        )
    )
    score_difference = float(
        np.max(np.abs(fns["kocc"]["forward"]() - fns["deel_lip"]["forward"]()))
    )
    median = {
        name: {m: round(float(np.median(v)), 2) for m, v in by.items()}
        for name, by in times.items()
    }
    print(
        json.dumps(
            {
                "benchmark": "pair_sort_speed",
                "config": vars(args),
                "cpu_ms_median": median,
                "speedup": {
                    m: round(median["deel_lip"][m] / median["kocc"][m], 2)
                    for m in median["kocc"]
                },
                "same_scores": same_scores,
                "after_training": {
                    "steps": 2 + args.rounds * args.calls,
                    "max_weight_difference": weight_difference,
                    "max_score_difference": score_difference,
                },
                "threads": os.environ.get("TF_NUM_INTRAOP_THREADS"),
            }
        )
    )


if __name__ == "__main__":
    main()
