"""OMASGAN and OCSDF on MNIST leave-one-out (LOO), the OMASGAN paper's protocol.

Task ``k``: the nine digits other than ``k`` are normal, digit ``k`` is the
anomaly (Dionelis et al., Section 4). Training: ``--max-train`` images drawn at
random (seeded) from the normal digits of the MNIST training set (all of them
with ``--max-train 0``); test: the whole MNIST test set (10,000 images), the
left-out digit positive for "anomalous". Pixels in [-1, 1], flattened to 784.
The AUROC counts normals as the positive class of the normality score (the
same number as the anomaly-score AUROC of the paper).

* ``--method omasgan``: :class:`kocc.baselines.OMASGAN`, dense networks
  (latent 128, generators 128 -> 256 -> 512 -> 784 tanh, critics
  784 -> 512 -> 256 -> 1), the paper's ``Q = 1024, N = 256`` batch, ``mu = 0.2``,
  ``nu = 0.25``, ``alpha + gamma = 0.7``, ``beta = 0.7``, ``delta = 0.5``.
* ``--method ocsdf``: :class:`kocc.models.OCSDF` with the MNIST CPU profile of
  ``recipes/mnist_one_class_cpu.yaml`` (dense 1-Lipschitz 784 -> 512 x 3 -> 1,
  GroupSort2, box [-1, 1]^784, margin 0.79196, lambda 200, T = 16, one warm-up
  epoch, RMSprop 1e-3).

Prints one JSON object (per-digit AUROC, seconds, mean); progress on stderr.

    python benchmarks/mnist_leave_one_out.py --method omasgan --digits 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)

# isort: split

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy.spatial.distance import cdist  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.baselines import OMASGAN  # noqa: E402
from kocc.datasets.images import read_idx_split  # noqa: E402
from kocc.datasets.paths import data_dir  # noqa: E402
from kocc.models import OCSDF  # noqa: E402
from kocc.sampling import Box  # noqa: E402


def load_mnist(folder):
    """Flattened pixels in [-1, 1] and labels of the train and test splits."""
    out = []
    for prefix in ("train", "t10k"):
        images, labels = read_idx_split(folder, prefix, "mnist")
        x = images.reshape(len(images), -1).astype(np.float32) / 127.5 - 1.0
        out += [x, labels]
    return out


def train_omasgan(x, seed, args):
    model = OMASGAN(
        784,
        latent_dim=128,
        generator_widths=(256, 512),
        critic_widths=(512, 256),
        output_activation="tanh",
        mu=0.2,
        nu=0.25,
        num_reference=1024,
        alpha=0.35,
        beta=0.7,
        gamma=0.35,
        delta=0.5,
        learning_rate=2e-4,
        task_epochs=tuple(args.task_epochs),
        seed=seed,
    )
    model.compile()
    model.fit(x, batch_size=256, verbose=0)
    return model


def sample_distances(model, x, seed, n=512):
    """Mean distance to the nearest training image of G(z), B(z) and U([-1, 1])."""
    noise = np.random.default_rng(seed).uniform(-1, 1, (n, x.shape[1]))
    out = {}
    for name, points in (
        ("G", model.sample_normal(n, seed=seed)),
        ("B", model.sample_boundary(n, seed=seed)),
        ("uniform", noise.astype(np.float32)),
    ):
        out[name] = float(cdist(points, x).min(axis=1).mean())
    return out


def train_ocsdf(x, seed, args):
    model = OCSDF(
        lipschitz_mlp(784, (512, 512, 512), activation="groupsort2", seed=seed),
        Box(-1.0, 1.0, shape=(784,)),
        margin=0.79196,
        lam=200.0,
        nr_steps=16,
        warmup_epochs=1,
        seed=seed,
    )
    steps = args.ocsdf_epochs * -(-len(x) // 128)
    schedule = tf.keras.optimizers.schedules.PolynomialDecay(1e-3, steps, 1e-5)
    model.compile(optimizer=tf.keras.optimizers.RMSprop(schedule))
    model.fit(x, batch_size=128, epochs=args.ocsdf_epochs, verbose=0)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("omasgan", "ocsdf"), required=True)
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--max-train", type=int, default=6000)
    parser.add_argument("--task-epochs", type=int, nargs=3, default=(20, 5, 10))
    parser.add_argument("--ocsdf-epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None, help="default: $KOCC_DATA_DIR")
    args = parser.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    x_train, y_train, x_test, y_test = load_mnist(data_dir(args.data_dir) / "mnist")
    results = {}
    for digit in args.digits:
        normal = np.flatnonzero(y_train != digit)
        if args.max_train:
            rng = np.random.default_rng(args.seed + digit)
            normal = np.sort(rng.choice(normal, args.max_train, replace=False))
        tf.keras.utils.set_random_seed(args.seed + digit)
        start = time.perf_counter()
        train = train_omasgan if args.method == "omasgan" else train_ocsdf
        model = train(x_train[normal], args.seed + digit, args)
        seconds = time.perf_counter() - start
        scores = model.score_samples(x_test)
        auroc = float(roc_auc_score(y_test != digit, scores))
        results[str(digit)] = {"auroc": auroc, "seconds": round(seconds, 1)}
        if args.method == "omasgan":
            results[str(digit)]["distance_to_train"] = sample_distances(
                model, x_train[normal], args.seed + digit
            )
        print(
            json.dumps({"digit": digit, **results[str(digit)]}),
            file=sys.stderr,
            flush=True,
        )
    report = {
        "method": args.method,
        "protocol": "MNIST leave-one-out: nine digits normal, the left-out anomalous",
        "digits": results,
        "mean_auroc": float(np.mean([r["auroc"] for r in results.values()])),
        "settings": {k: v for k, v in vars(args).items() if k != "data_dir"},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
