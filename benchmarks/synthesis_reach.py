"""Synthesis reach of an image recipe: how far synthesis moves noise toward the data.

Trains OCSDF on one normal class of an image recipe (``kocc benchmark``'s own
training, same seed), then measures along the synthesis path of appendix G.2
(uniform noise, eta = 1, toward E[f(x)] of the training images):

* the target level and f on the training images, on the other classes' test
  images and on the starting noise (medians);
* after 64 steps (the benchmark's ``synthesis.steps``, one run of
  :func:`kocc.generation.synthesize`), then after two more runs of 64 and 128
  steps started where the previous one stopped (128 and 256 steps in all):
  the mean f of the samples and
  :func:`kocc.generation.synthesis_reach` (distance moved, distance to the
  nearest training image, share of the way closed).

A 1-Lipschitz f rises by at most the distance travelled, so when the level is
only a few units above f(noise) the samples stop near the noise. Prints one
JSON object; ``--grids DIR`` also writes the grids.

    python benchmarks/synthesis_reach.py recipes/mnist_one_class_cpu.yaml --cls 0
    python benchmarks/synthesis_reach.py recipes/mnist_one_class_cpu.yaml --cls 0 \
        --set domain.kind=box --set training.epochs=6 --set training.warmup_epochs=1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)

# isort: split

import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from kocc.experiments.image_benchmark import ImageData, train_ocsdf  # noqa: E402
from kocc.experiments.recipes import load_recipe  # noqa: E402
from kocc.generation import (  # noqa: E402
    mean_score,
    noise_starts,
    save_image_grid,
    synthesis_reach,
)
from kocc.sampling import newton_raphson  # noqa: E402

#: cumulative step counts at which the path is measured
CHECKPOINTS = (64, 128, 256)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="image recipe (kind: images)")
    parser.add_argument("--cls", type=int, default=0, help="normal class")
    parser.add_argument("--n", type=int, default=16, help="synthesized images")
    parser.add_argument(
        "--set", action="append", default=[], help="recipe override (repeatable)"
    )
    parser.add_argument("--grids", help="folder for the grids (PNG)")
    args = parser.parse_args(argv)
    config = load_recipe(
        args.recipe,
        [*args.set, f"data.normal_class={args.cls}"],
        kinds=["images"],
        command="benchmarks/synthesis_reach.py",
    )
    data = ImageData(config.data, seed=config.seed)
    split = data.split(args.cls)
    seed = config.seed + args.cls  # as kocc benchmark trains class k
    tic = time.process_time()
    model = train_ocsdf(
        split.x_train, config.model, config.training, seed, config.domain
    )
    train_cpu = time.process_time() - tic
    level = mean_score(model, split.x_train)
    others = split.x_test[~split.is_normal]
    noise = model.domain.uniform()
    starts = noise_starts(model, args.n, domain=noise, seed=seed)
    record = {
        "recipe": args.recipe,
        "overrides": args.set,
        "class": args.cls,
        "train_cpu_seconds": round(train_cpu, 1),
        "auroc": float(
            roc_auc_score(split.is_normal, model.score_samples(split.x_test))
        ),
        "level": level,
        "f_train_median": float(np.median(model.score_samples(split.x_train))),
        "f_other_classes_median": float(np.median(model.score_samples(others))),
        "f_noise_median": float(np.median(model.score_samples(starts))),
        "path": [],
    }
    samples, done = starts, 0
    for total in CHECKPOINTS:
        # eta = 1: a run of T steps moves each sample by 1/T of its gap per
        # step; the next run starts where this one stopped
        samples = newton_raphson(
            model.backbone, samples, total - done, level, eta=1.0, domain=noise
        ).numpy()
        done = total
        reach = synthesis_reach(starts, samples, split.x_train)
        record["path"].append(
            {
                "steps": total,
                "f_mean": float(np.mean(model.score_samples(samples))),
                **reach.to_dict(),
            }
        )
        if args.grids:
            save_image_grid(
                samples, os.path.join(args.grids, f"class{args.cls}_{total}.png")
            )
    json.dump(record, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
