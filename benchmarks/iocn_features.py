"""IOCN, FLOW, OCSDF, kNN and Isolation Forest, one-class, on ResNet-18 features.

The IOCN paper's protocol (Schmier et al., Section 4.2, appendix A.5) on the
feature versions of ADBench: ``adbench/CIFAR10_0.npz`` (5,000 images of CIFAR-10
class 0, airplane, and 263 anomalies from the other classes) and
``adbench/MVTec-AD_bottle.npz`` (229 good bottles, 63 defective), 512 ResNet-18
features per image, ``y = 1`` for anomalies.

One-class split, per run ``r`` (seed ``seed + r``): a random half of the normal
rows trains every method; the other half of the normals and all anomalies are
the test set. Features are L2-normalised (the paper's hypersphere projection),
then standardized with the training half's mean and standard deviation.
IOCN and FLOW add N(0, 0.1^2) noise to the training batches (the paper's
"small amount of noise to obtain a valid density") and IOCN stops when its
inverse is no longer exact in float32 (:class:`StopOnInverseError`, label-free).
Prints one JSON object: per data set, per method, the AUROC of each run, the
mean and the training seconds.

    python benchmarks/iocn_features.py --runs 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)

# isort: split

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.ensemble import IsolationForest  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.baselines import IOCN, FlowBaseline  # noqa: E402
from kocc.baselines.iocn import StopOnInverseError  # noqa: E402
from kocc.datasets.paths import data_dir as resolve_data_dir  # noqa: E402
from kocc.models import OCSDF  # noqa: E402
from kocc.tabular_prior import data_box  # noqa: E402

DATASETS = {"cifar10_0": "CIFAR10_0.npz", "mvtec_bottle": "MVTec-AD_bottle.npz"}
METHODS = ("iocn", "flow", "ocsdf", "knn", "iforest")


def load_split(path: Path, seed: int):
    """``(x_train, x_test, y_test)``, y = 1 for anomalies, preprocessed."""
    data = np.load(path)
    x, y = data["X"].astype(np.float64), data["y"].astype(np.int64)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    normal = np.flatnonzero(y == 0)
    rng = np.random.default_rng(seed)
    rng.shuffle(normal)
    train, held = normal[: len(normal) // 2], normal[len(normal) // 2 :]
    test = np.concatenate([held, np.flatnonzero(y == 1)])
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8
    scale = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return scale(x[train]), scale(x[test]), y[test]


def steps_to_epochs(steps: int, n: int, batch: int) -> int:
    return max(1, int(round(steps / max(1, -(-n // batch)))))


def normality_scores(method: str, x_train, x_test, seed: int, args) -> np.ndarray:
    """Scores on ``x_test``, higher = more normal."""
    dim = x_train.shape[1]
    batch = min(args.batch_size, len(x_train))
    epochs = steps_to_epochs(args.steps, len(x_train), batch)
    if method in ("iocn", "flow"):
        cls = IOCN if method == "iocn" else FlowBaseline
        model = cls(
            dim, num_blocks=12, hidden_units=128, noise_std=args.noise, seed=seed
        )
        model.compile(optimizer=tf.keras.optimizers.Adam(args.inn_learning_rate))
        guard = [StopOnInverseError(1e-2)] if method == "iocn" else []
        model.fit(x_train, batch_size=batch, epochs=epochs, verbose=0, callbacks=guard)
        if guard and guard[0].stopped_epoch is not None:
            print(
                f"  IOCN stopped at epoch {guard[0].stopped_epoch} (inverse error)",
                file=sys.stderr,
            )
        return model.score_samples(x_test)
    if method == "ocsdf":
        # label-free margin: a quarter of the median 10-NN distance (docs/tabular.md)
        dist, _ = NearestNeighbors(n_neighbors=11).fit(x_train).kneighbors(x_train)
        margin = float(np.median(dist[:, -1])) / 4.0
        model = OCSDF(
            lipschitz_mlp(dim, (128, 128, 128), seed=seed),
            data_box(x_train, pad=1.0),
            margin=margin,
            lam=100.0,
            nr_steps=4,
            seed=seed,
        )
        model.compile(optimizer=tf.keras.optimizers.RMSprop(args.learning_rate))
        epochs = steps_to_epochs(args.ocsdf_steps, len(x_train), batch)
        model.fit(x_train, batch_size=batch, epochs=epochs, verbose=0)
        return model.score_samples(x_test)
    if method == "knn":  # PyOD's KNN default: distance to the 5th neighbour
        dist, _ = NearestNeighbors(n_neighbors=5).fit(x_train).kneighbors(x_test)
        return -dist[:, -1]
    if method == "iforest":
        forest = IsolationForest(n_estimators=100, random_state=seed).fit(x_train)
        return forest.score_samples(x_test)
    raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="default: $KOCC_DATA_DIR")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=600, help="IOCN/FLOW updates")
    parser.add_argument("--ocsdf-steps", type=int, default=500, help="OCSDF updates")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="OCSDF")
    parser.add_argument(
        "--inn-learning-rate", type=float, default=3e-4, help="IOCN and FLOW (Adam)"
    )
    parser.add_argument(
        "--noise", type=float, default=0.1, help="IOCN/FLOW training noise std"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    folder = resolve_data_dir(args.data_dir) / "adbench"
    report: dict = {"datasets": {}}
    for name in args.datasets:
        if name not in DATASETS:
            raise SystemExit(
                f"unknown data set {name!r}: expected one of {list(DATASETS)}"
            )
        per_method = {m: {"auroc": [], "seconds": []} for m in args.methods}
        for run in range(args.runs):
            seed = args.seed + run
            x_train, x_test, y_test = load_split(folder / DATASETS[name], seed)
            for method in args.methods:
                tf.keras.utils.set_random_seed(seed)
                start = time.perf_counter()
                scores = normality_scores(method, x_train, x_test, seed, args)
                seconds = time.perf_counter() - start
                finite = bool(np.isfinite(scores).all())
                # a diverged model (non-finite scores) is reported, not hidden
                auroc = float(roc_auc_score(y_test == 0, scores)) if finite else None
                per_method[method].setdefault("diverged_runs", 0)
                per_method[method]["diverged_runs"] += int(not finite)
                per_method[method]["auroc"].append(auroc)
                per_method[method]["seconds"].append(round(seconds, 1))
                print(
                    f"{name} run {run} {method}: {auroc} ({seconds:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        for stats in per_method.values():
            done = [a for a in stats["auroc"] if a is not None]
            stats["mean"] = float(np.mean(done)) if done else None
            stats["std"] = float(np.std(done)) if done else None
        report["datasets"][name] = {
            "n_train": int(len(x_train)),
            "n_test_normal": int((y_test == 0).sum()),
            "n_test_anomalous": int((y_test == 1).sum()),
            "methods": per_method,
        }
    report["settings"] = {k: v for k, v in vars(args).items() if k != "data_dir"}
    report["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
