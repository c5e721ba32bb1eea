"""2-D toys: OMASGAN's boundary samples beside OCSDF's Newton-Raphson negatives,
and IOCN's inlier region beside OCSDF's; writes two PNGs and prints JSON.

* ``competitors_boundary_samples.png``: on one toy, the data, OMASGAN's B(z)
  (Task 2) and OCSDF's negatives :meth:`kocc.models.OCSDF.sample_negatives`
  (uniform in the domain, then T Newton-Raphson steps toward f = -m), each over
  its model's normality score and zero level set.
* ``competitors_inlier_regions.png``: one row per toy, IOCN's score
  :math:`-s(x)` and OCSDF's f with their zero level sets (the inlier regions).
  IOCN's region is the pre-image of a cube under a homeomorphism: simply
  connected, so it bridges separated modes and fills holes.

The JSON holds per toy and method the AUROC of held-out normals against
uniform points at least 0.3 from the training data (the toy suite's anomalies),
and the mean distance to the data of G(z), B(z), the OCSDF negatives and
uniform noise.

    python benchmarks/competitors_toy_figure.py --out docs/figures
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)

# isort: split

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy.spatial.distance import cdist  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.baselines import IOCN, OMASGAN  # noqa: E402
from kocc.baselines.omasgan import TOY_SETTINGS  # noqa: E402
from kocc.datasets.toys import far_uniform_points, make_toy  # noqa: E402
from kocc.models import OCSDF  # noqa: E402
from kocc.sampling import Ball  # noqa: E402

LIMIT = 3.0


def train_ocsdf(x, seed, steps):
    model = OCSDF(
        lipschitz_mlp(2, (128, 128, 128), seed=seed),
        Ball(5.0, shape=(2,)),
        margin=0.05,
        lam=100.0,
        nr_steps=4,
        seed=seed,
    )
    model.compile(optimizer=tf.keras.optimizers.RMSprop(1e-3))
    model.fit(x, batch_size=256, epochs=max(1, steps // (len(x) // 256)), verbose=0)
    return model


def train_iocn(x, seed, epochs):
    model = IOCN(2, num_blocks=12, hidden_units=128, seed=seed)
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-4))
    model.fit(x, batch_size=128, epochs=epochs, verbose=0)
    return model


def train_omasgan(x, seed):
    model = OMASGAN(2, seed=seed, **TOY_SETTINGS)
    model.compile()
    model.fit(x, batch_size=128, verbose=0)
    return model


def panel(ax, gx, gy, scores, x, title, extra=None, extra_label=""):
    span = float(np.percentile(np.abs(scores), 99)) or 1.0
    ax.contourf(gx, gy, np.clip(scores, -span, span), levels=31, cmap="RdBu")
    ax.contour(gx, gy, scores, levels=[0.0], colors="k", linewidths=1.6)
    ax.scatter(x[:, 0], x[:, 1], s=1, c="gold")
    if extra is not None:
        ax.scatter(extra[:, 0], extra[:, 1], s=2, c="lime", label=extra_label)
        ax.legend(loc="lower right", fontsize=7)
    ax.set_xlim(-LIMIT, LIMIT)
    ax.set_ylim(-LIMIT, LIMIT)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--toys", nargs="+", default=["two_moons", "two_blobs"])
    parser.add_argument("--boundary-toy", default="two_moons")
    parser.add_argument("--ocsdf-steps", type=int, default=1500)
    parser.add_argument("--iocn-epochs", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    axis = np.linspace(-LIMIT, LIMIT, 150, dtype=np.float32)
    gx, gy = np.meshgrid(axis, axis)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    report: dict = {"settings": vars(args), "toys": {}}
    models = {}
    for toy in args.toys:
        tf.keras.utils.set_random_seed(args.seed)
        x, scaler = make_toy(toy, 2048, seed=args.seed)
        x_test = scaler.transform(
            scaler.inverse_transform(make_toy(toy, 1024, seed=args.seed + 1)[0])
        )
        far = far_uniform_points(
            x, 2048, low=-LIMIT, high=LIMIT, min_distance=0.3, seed=args.seed
        )
        entry = {}
        trained = {}
        for name in ("ocsdf", "iocn", "omasgan"):
            if name == "omasgan" and toy != args.boundary_toy:
                continue
            start = time.perf_counter()
            if name == "ocsdf":
                model = train_ocsdf(x, args.seed, args.ocsdf_steps)
            elif name == "iocn":
                model = train_iocn(x, args.seed, args.iocn_epochs)
            else:
                model = train_omasgan(x, args.seed)
            seconds = time.perf_counter() - start
            s_in, s_out = model.score_samples(x_test), model.score_samples(far)
            auroc = roc_auc_score(
                np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out]
            )
            entry[name] = {"auroc": float(auroc), "seconds": round(seconds, 1)}
            trained[name] = model
            print(f"{toy} {name}: AUROC {auroc:.4f} ({seconds:.0f} s)", file=sys.stderr)
        models[toy] = (x, trained)
        report["toys"][toy] = entry

    # figure 1: OMASGAN's boundary samples beside OCSDF's negatives
    x, trained = models[args.boundary_toy]
    omasgan, ocsdf = trained["omasgan"], trained["ocsdf"]
    boundary = omasgan.sample_boundary(1024, seed=1)
    normal = omasgan.sample_normal(1024, seed=1)
    negatives = ocsdf.sample_negatives(1024, tf.constant([args.seed, 7], tf.int64))
    negatives = negatives.numpy()
    noise = np.random.default_rng(args.seed).uniform(-LIMIT, LIMIT, (1024, 2))
    report["distance_to_data"] = {
        name: float(cdist(points, x).min(axis=1).mean())
        for name, points in (
            ("omasgan_G", normal),
            ("omasgan_B", boundary),
            ("ocsdf_negatives", negatives),
            ("uniform", noise),
        )
    }
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.6), dpi=120)
    panel(
        axes[0],
        gx,
        gy,
        omasgan.score_samples(grid).reshape(gx.shape),
        x,
        "OMASGAN: B(z) (Task 2) over J's score",
        boundary,
        "B(z)",
    )
    panel(
        axes[1],
        gx,
        gy,
        ocsdf.score_samples(grid).reshape(gx.shape),
        x,
        "OCSDF: Newton-Raphson negatives over f",
        negatives,
        "negatives (T=4)",
    )
    fig.tight_layout()
    fig.savefig(out / "competitors_boundary_samples.png")
    plt.close(fig)

    # figure 2: inlier regions of IOCN and OCSDF
    fig, axes = plt.subplots(
        len(args.toys), 2, figsize=(8, 4 * len(args.toys)), dpi=110, squeeze=False
    )
    for row, toy in enumerate(args.toys):
        x, trained = models[toy]
        for col, name in enumerate(("iocn", "ocsdf")):
            auroc = report["toys"][toy][name]["auroc"]
            panel(
                axes[row, col],
                gx,
                gy,
                trained[name].score_samples(grid).reshape(gx.shape),
                x,
                f"{toy}: {name.upper()} (AUROC {auroc:.3f})",
            )
    fig.tight_layout()
    fig.savefig(out / "competitors_inlier_regions.png")
    plt.close(fig)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
