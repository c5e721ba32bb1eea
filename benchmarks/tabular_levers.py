"""Screen OCSDF's label-free levers on a few tabular sets (OCSDF only, AD protocol).

One JSON object per data set: the AUROC (%) of OCSDF trained on all rows with the given
feature scaling, λ, margin, box padding (or a ball prior: ``--ball``,
``--ball-cover``; or a box whose initial points are partly drawn from the covering
ball, ``--ball-share``; or the covering ball with part of its initial points on the
rays through the rows, ``--ray-share``),
widths, steps, activation, batch size, learning rate and Newton steps T (the tabular
benchmark's :func:`~kocc.experiments.tabular_benchmark.train_ocsdf`), optionally as the
mean score of ``--members`` networks (seeds, or subsamples of the rows with
``--subsample``; with ``--out-of-bag`` each row is scored by the members that did not
train on it, as the kNN baseline leaves the row itself out; the JSON gives both
scorings), of one network per scaling of ``--member-scalings``, per margin of
``--member-margins`` or per prior of ``--member-priors`` (box, covering ball or rays;
same seed), and with part of the negatives' initial points drawn
around the data rows (``--jitter``). With several members the JSON also gives
the AUROC of the members' minimum of f, each member's f shifted by its median on
the rows (``auroc_min_of_centered``; a minimum of 1-Lipschitz functions is
1-Lipschitz). ``--describe`` adds the quantiles of f per
class and the AUROC of two label-free reference scores (the distance to the rows'
mean, the 5th-neighbour distance) and where the last network's negatives end up
(their norms, f on them, each row's distance to the nearest one). The labels enter
only the AUROCs and the per-class quantiles. This is the
script behind the lever tables of docs/tabular.md; the default recipe's figures come
from ``kocc benchmark recipes/tabular_odds.yaml``.

Scalings (each fitted on all rows, labels unseen):

* ``standard``: ``(x - mean) / std`` (the benchmark's rows);
* ``robust``: :func:`kocc.datasets.tabular.scaled_rows` on the standardized rows
  (median and IQR; a feature with IQR 0 keeps one std);
* ``mad``: ``(x - median) / (1.4826 MAD)`` on the raw rows (std where MAD = 0);
* ``tail<c>``: the ``tail_stretch`` scaling with the stretch capped at ``c``
  (``tail4`` is the library's ``tail_stretch``; ``tail``: no cap);
* ``heavy<c>``: only the features with ``IQR / 1.349 <= 1 / c`` stretched
  ``c``-fold (``heavy4`` is the library's ``heavy_tail``);
* ``quantile``: scikit-learn's ``QuantileTransformer(output_distribution=
  "normal")``, a non-linear map (a certificate on its output says nothing
  useful about the raw features).

Usage::

    KOCC_DATA_DIR=../shared/data python benchmarks/tabular_levers.py \\
        --sets cardio,thyroid,glass,vowels,smtp --scaling robust
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import kocc  # noqa: F401  (selects tf-keras before TensorFlow is imported)

# isort: split
import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import QuantileTransformer

from kocc.datasets.tabular import (
    fit_standardizer,
    heavy_tail_divisors,
    load_tabular,
    scaled_rows,
    tail_stretch_divisors,
)
from kocc.experiments.tabular_benchmark import OCSDFSettings, train_ocsdf
from kocc.sampling import Ball, Box
from kocc.tabular_prior import tabular_prior


class ShareBox(Box):
    """The box prior, with a share ``fraction`` of the initial points drawn by
    :meth:`_other` (then clipped to the box) instead of by ``box``; the domain,
    and so the projection of the Newton-Raphson steps, stays the box. ``box``
    may itself be a ``ShareBox``, so the options compose."""

    #: fold-in salt of the per-point choice between the two draws
    pick_salt = 0

    def __init__(self, box: Box, fraction: float):
        super().__init__(box.low, box.high)
        self.box = box
        self.fraction = fraction

    def _other(self, n, seed, shape):  # pragma: no cover - abstract
        raise NotImplementedError

    def _sample(self, n, seed, shape):
        first = self.box._sample(n, seed, shape)
        other = self.project(self._other(n, seed, shape))
        fold = tf.random.experimental.stateless_fold_in
        pick = tf.random.stateless_uniform((n, 1), seed=fold(seed, self.pick_salt))
        return tf.where(pick < self.fraction, other, first)


class JitteredBox(ShareBox):
    """A share ``fraction`` of the initial points drawn as a data row plus
    ``N(0, sigma^2 I)`` noise."""

    pick_salt = 13

    def __init__(self, box: Box, rows: np.ndarray, sigma: float, fraction: float):
        super().__init__(box, fraction)
        self.rows = tf.constant(rows)
        self.sigma = sigma

    def _other(self, n, seed, shape):
        fold = tf.random.experimental.stateless_fold_in
        index = tf.random.stateless_uniform(
            (n,), seed=fold(seed, 7), maxval=self.rows.shape[0], dtype=tf.int32
        )
        noise = tf.random.stateless_normal((n, *shape), seed=fold(seed, 11))
        return tf.gather(self.rows, index) + self.sigma * noise


class BallShareBox(ShareBox):
    """A share ``fraction`` of the initial points drawn uniformly from ``ball``."""

    pick_salt = 19

    def __init__(self, box: Box, ball: Ball, fraction: float):
        super().__init__(box, fraction)
        self.ball = ball

    def _other(self, n, seed, shape):
        fold = tf.random.experimental.stateless_fold_in
        return self.ball._sample(n, fold(seed, 17), shape)


class RadialBall(Ball):
    """A ball whose draws have a uniform radius ``r = radius * u`` (and a uniform
    direction), instead of the volume-uniform ``radius * u ** (1 / d)``: in ``d``
    dimensions its points sit mostly near the center, inside the data's range,
    rather than in the shell at the covering radius."""

    def _radii(self, u, d):
        return self.radius * u


class RayBall(Ball):
    """The ball, with a share ``fraction`` of its draws on the rays through the
    data rows: the direction of a random row from the ball's ``center`` plus
    ``N(0, sigma^2 / d I)`` noise, normalized, at the ball's volume-uniform
    radius. A negative on row ``x``'s ray lies ``radius - ||x||`` from it, so
    the rows far from the center have negatives nearest: a radial prior."""

    def __init__(
        self,
        radius: float,
        rows: np.ndarray,
        fraction: float,
        sigma: float,
        center: float | np.ndarray = 0.0,
    ):
        super().__init__(radius, center=center, shape=(rows.shape[1],))
        offsets = rows - center
        norms = np.linalg.norm(offsets, axis=1, keepdims=True)
        self.directions = tf.constant(offsets / np.maximum(norms, 1e-12))
        self.fraction = fraction
        self.sigma = sigma

    def _sample(self, n, seed, shape):
        fold = tf.random.experimental.stateless_fold_in
        ball = super()._sample(n, seed, shape)
        d = shape[-1]
        index = tf.random.stateless_uniform(
            (n,), seed=fold(seed, 7), maxval=self.directions.shape[0], dtype=tf.int32
        )
        noise = tf.random.stateless_normal((n, d), seed=fold(seed, 11))
        direction = tf.gather(self.directions, index) + self.sigma / np.sqrt(d) * noise
        direction = direction / tf.norm(direction, axis=1, keepdims=True)
        u = tf.random.stateless_uniform((n, 1), seed=fold(seed, 13))
        pick = tf.random.stateless_uniform((n, 1), seed=fold(seed, 19))
        ray = direction * self._radii(u, d) + self.center
        return tf.where(pick < self.fraction, ray, ball)


def scale(x: np.ndarray, scaling: str) -> np.ndarray:
    """The rows OCSDF sees under ``scaling`` (see the module docstring)."""
    if scaling in ("standard", "robust"):
        fit_standardizer(x).transform(x)
        return scaled_rows(x, None, scaling)[0]
    if scaling.startswith("tail"):
        # tail<c>: the library's tail_stretch scaling with the stretch capped
        # at c (tail: no cap)
        fit_standardizer(x).transform(x)
        cap = float(scaling[4:] or "inf")
        return (x / tail_stretch_divisors(x, cap)).astype(np.float32)
    if scaling.startswith("heavy"):
        # heavy<c>: the library's heavy_tail scaling with stretch c
        fit_standardizer(x).transform(x)
        return (x / heavy_tail_divisors(x, float(scaling[5:] or "4"))).astype(
            np.float32
        )
    if scaling == "quantile":
        quantile = QuantileTransformer(
            output_distribution="normal", n_quantiles=min(1000, len(x)), random_state=0
        )
        return quantile.fit_transform(x).astype(np.float32)
    if scaling == "mad":
        median = np.median(x, axis=0)
        mad = 1.4826 * np.median(np.abs(x - median), axis=0)
        std = x.std(axis=0)
        divisor = np.where(mad > 1e-12, mad, np.where(std > 0, std, 1.0))
        return ((x - median) / divisor).astype(np.float32)
    raise ValueError(f"unknown scaling {scaling!r}")


def scores_path(directory: str, name: str, seed: int) -> Path:
    """Where ``--save-scores directory`` writes the scores of ``name`` at ``seed``
    (``benchmarks/tabular_combine.py`` reads them there)."""
    return Path(directory) / f"{name}_seed{seed}.npz"


def describe(x: np.ndarray, y: np.ndarray, f: np.ndarray) -> dict:
    """The ``--describe`` fields: quantiles of the normality score ``f`` per
    class, and the AUROC (%) of the distance to the rows' mean and of the
    distance to the 5th nearest other row (the kNN baseline's score) on ``x``."""
    quantiles = {
        f"f_quantiles_{label}": np.percentile(f[y == value], [10, 50, 90])
        .round(3)
        .tolist()
        for label, value in (("normal", 0), ("anomaly", 1))
    }
    distances, _ = NearestNeighbors(n_neighbors=6).fit(x).kneighbors(x)
    references = {
        "norm_auroc": np.linalg.norm(x - x.mean(axis=0), axis=1),
        "knn5_auroc": distances[:, 5],
    }
    return quantiles | {
        name: round(100 * float(roc_auc_score(y, score)), 2)
        for name, score in references.items()
    }


def locate_negatives(model, x: np.ndarray, y: np.ndarray, n: int = 2048) -> dict:
    """The ``--describe`` fields on where a trained network's negatives end up:
    the 10/50/90 % quantiles of the norms of ``n`` negatives (drawn from the
    prior and moved by the Newton-Raphson steps, seed ``[1, 2]``), of f on
    them, and, per class, of each row's distance to its nearest negative."""
    negatives = np.asarray(model.sample_negatives(n, tf.constant([1, 2], tf.int64)))
    nearest, _ = NearestNeighbors(n_neighbors=1).fit(negatives).kneighbors(x)

    def quantiles(values):
        return np.percentile(values, [10, 50, 90]).round(3).tolist()

    return {
        "negative_norm_quantiles": quantiles(np.linalg.norm(negatives, axis=1)),
        "negative_f_quantiles": quantiles(model.score_samples(negatives)),
    } | {
        f"nearest_negative_quantiles_{label}": quantiles(nearest[y == value, 0])
        for label, value in (("normal", 0), ("anomaly", 1))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="cardio,thyroid,glass,vowels,smtp")
    parser.add_argument(
        "--scaling",
        default="standard",
        help="standard | robust | mad | quantile | tail<c> (e.g. tail4) | heavy<c>",
    )
    parser.add_argument("--lam", type=float, default=3.0)
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--pad", type=float, default=2.0)
    parser.add_argument(
        "--ball",
        type=float,
        default=0.0,
        help="> 0: the prior is the ball of this radius around the origin of the "
        "scaled rows (the paper's appendix E: radius 5) instead of the padded box",
    )
    parser.add_argument(
        "--ball-cover",
        type=float,
        default=-1.0,
        help=">= 0: the prior is the ball around the origin of the scaled rows that "
        "covers every row, its radius the largest row norm plus this pad",
    )
    parser.add_argument(
        "--ball-share",
        type=float,
        default=0.0,
        help="in (0, 1): the box prior, with this share of the initial points drawn "
        "from the covering ball (radius: the largest row norm) instead",
    )
    parser.add_argument(
        "--ball-radial",
        action="store_true",
        help="the ball of --ball, --ball-cover or --ball-share draws a uniform "
        "radius (points mostly near the center) instead of a uniform volume",
    )
    parser.add_argument(
        "--ray-share",
        type=float,
        default=0.0,
        help="in (0, 1]: the covering ball (pad --ball-cover, 0 if unset) with "
        "this share of the initial points on the rays through the rows (RayBall)",
    )
    parser.add_argument(
        "--ray-sigma",
        type=float,
        default=0.3,
        help="with --ray-share: the angular noise (std of the direction's norm)",
    )
    parser.add_argument("--widths", default="64,64,64")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--activation", default="fullsort")
    parser.add_argument("--batch", dest="batch_size", type=int, default=256)
    parser.add_argument("--lr", dest="learning_rate", type=float, default=1e-3)
    parser.add_argument("--nr-steps", type=int, default=4)
    for setting in ("scaling", "margin"):
        parser.add_argument(
            f"--member-{setting}s",
            default="",
            help=f"comma-separated {setting}s, one member each (overrides --{setting})",
        )
    parser.add_argument(
        "--member-priors",
        default="",
        help="comma-separated priors, box, ball or ray, one member each: box is "
        "the padded box (with --ball-share and --jitter if given), ball the "
        "covering ball (pad: --ball-cover, 0 if unset), ray the covering ball "
        "with all its initial points on the rays (RayBall, --ray-sigma); "
        "overrides the prior options",
    )
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--subsample", type=float, default=1.0)
    parser.add_argument(
        "--out-of-bag",
        action="store_true",
        help="with --subsample: score each row by the members that did not train on it",
    )
    parser.add_argument("--jitter", type=float, default=0.0)
    parser.add_argument("--jitter-fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--describe",
        action="store_true",
        help="also report the 10/50/90 %% quantiles of f on the normal and the "
        "anomalous rows, the AUROC of two label-free reference scores on "
        "the (last member's) scaled rows: the distance to their mean and the "
        "distance to the 5th nearest other row, and where the last member's "
        "negatives end up (their norms, f on them, each row's distance to the "
        "nearest one per class)",
    )
    parser.add_argument(
        "--save-scores",
        default="",
        help="a directory: write each set's rows' labels and every member's "
        "anomaly scores (-f) there, as <set>_seed<seed>.npz (arrays y, scores "
        "of shape (members, rows)), to combine members of several commands "
        "afterwards",
    )
    parser.add_argument("--data-dir", default=os.environ.get("KOCC_DATA_DIR"))
    args = parser.parse_args()
    if not 0 <= args.ray_share <= 1:
        parser.error(f"--ray-share must be in [0, 1], got {args.ray_share}")
    if not 0 <= args.ball_share <= 1:
        parser.error(f"--ball-share must be in [0, 1], got {args.ball_share}")
    member_lists = {
        kind: getattr(args, f"member_{kind}").split(",")
        for kind in ("scalings", "margins", "priors")
        if getattr(args, f"member_{kind}")
    }
    if len({len(values) for values in member_lists.values()}) > 1:
        parser.error(
            "--member-scalings, --member-margins and --member-priors "
            "must list as many values each"
        )
    if set(member_lists.get("priors", [])) - {"box", "ball", "ray"}:
        parser.error(
            f"--member-priors takes box, ball or ray, got {args.member_priors}"
        )
    shared = ("activation", "lam", "steps", "batch_size", "learning_rate", "nr_steps")
    settings = OCSDFSettings(
        widths=tuple(int(w) for w in args.widths.split(",")),
        **{name: getattr(args, name) for name in shared},
    )
    for name in args.sets.split(","):
        raw, y = load_tabular(name, args.data_dir)
        if member_lists:
            # one member per listed scaling / margin / prior, all with seed args.seed
            count = max(len(values) for values in member_lists.values())
            plan = [
                (
                    member_lists.get("scalings", [args.scaling] * count)[k],
                    float(member_lists.get("margins", [args.margin] * count)[k]),
                    member_lists.get("priors", [None] * count)[k],
                    args.seed,
                )
                for k in range(count)
            ]
        else:
            plan = [
                (args.scaling, args.margin, None, args.seed * 1000 + k)
                for k in range(args.members)
            ]
        start = time.perf_counter()
        oob_total = np.zeros(len(raw))
        oob_count = np.zeros(len(raw))
        member_scores = []
        for member, (scaling, margin, prior, seed) in enumerate(plan):
            x = scale(raw.copy(), scaling)
            # the ball around the origin of the scaled rows that covers every row
            cover = float(np.linalg.norm(x, axis=1).max())
            ball_class = RadialBall if args.ball_radial else Ball
            pad = max(args.ball_cover, 0.0)  # the covering ball's pad
            if prior == "ray" or (prior is None and args.ray_share > 0):
                share = 1.0 if prior == "ray" else args.ray_share
                domain = RayBall(cover + pad, x, share, args.ray_sigma)
            elif prior is None and args.ball > 0:
                domain = ball_class(args.ball, shape=(x.shape[1],))
            elif prior == "ball" or (prior is None and args.ball_cover >= 0):
                domain = ball_class(cover + pad, shape=(x.shape[1],))
            else:
                domain = tabular_prior(x, "box", args.pad, 1.0)
                if args.ball_share > 0:
                    ball = ball_class(cover, shape=(x.shape[1],))
                    domain = BallShareBox(domain, ball, args.ball_share)
            if args.jitter > 0:
                domain = JitteredBox(domain, x, args.jitter, args.jitter_fraction)
            rows = x
            unseen = np.zeros(len(x), bool)
            if args.subsample < 1:
                floor = 2 if args.out_of_bag else 256
                count = min(len(x), max(floor, int(args.subsample * len(x))))
                pick = np.random.default_rng(seed).choice(len(x), count, replace=False)
                rows = np.ascontiguousarray(x[pick])
                unseen[:] = True
                unseen[pick] = False
            model = train_ocsdf(rows, settings, margin, domain, seed)
            scores = -np.asarray(model.score_samples(x)).reshape(-1)
            if args.describe and member == len(plan) - 1:
                negatives = locate_negatives(model, x, y)
            member_scores.append(scores)
            oob_total += np.where(unseen, scores, 0.0)
            oob_count += unseen
            del model
            tf.keras.backend.clear_session()
        # out of bag: each row scored by the members that did not train on it;
        # rows every member trained on keep the mean of all members
        stacked = np.stack(member_scores)
        mean = stacked.sum(axis=0) / len(plan)
        # the members' min of f, each shifted by its median on the rows (a
        # min of 1-Lipschitz functions is 1-Lipschitz): as anomaly scores, the
        # max of the members' centered scores
        worst = (stacked - np.median(stacked, axis=1, keepdims=True)).max(axis=0)
        oob = np.where(oob_count > 0, oob_total / np.maximum(oob_count, 1), mean)
        auroc = {
            scoring: round(100 * float(roc_auc_score(y, scores)), 2)
            for scoring, scores in (
                ("all_members", mean),
                ("out_of_bag", oob),
                ("min_of_centered", worst),
            )
        }
        report = {
            "dataset": name,
            "auroc": auroc["out_of_bag" if args.out_of_bag else "all_members"],
            "auroc_all_members": auroc["all_members"],
            "auroc_out_of_bag": auroc["out_of_bag"],
            "auroc_min_of_centered": auroc["min_of_centered"],
            "rows_seen_by_every_member": int((oob_count == 0).sum()),
            "member_auroc": [
                round(100 * float(roc_auc_score(y, scores)), 2)
                for scores in member_scores
            ],
            "seconds": round(time.perf_counter() - start, 1),
        } | {k: v for k, v in vars(args).items() if k not in ("sets", "data_dir")}
        if args.describe:
            report |= describe(x, y, -mean) | negatives
        if args.save_scores:
            os.makedirs(args.save_scores, exist_ok=True)
            np.savez(
                scores_path(args.save_scores, name, args.seed), y=y, scores=stacked
            )
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
