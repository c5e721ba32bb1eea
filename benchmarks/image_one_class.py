"""One-class image benchmark (paper §5.3, Table 3) from a recipe; prints JSON.

Runs :func:`kocc.experiments.image_benchmark.run_image_benchmark` for the
classes of a recipe (or those given with ``--classes``) and prints one JSON
object: the per-class AUROC, certified AUROC, attacked AUROC, baselines and
seconds, and their means.
Files (results.json, results.md, synthesis PNGs) go to ``--out``.

    python benchmarks/image_one_class.py recipes/mnist_one_class_cpu.yaml \
        --classes 0 1 --out runs/mnist_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)

# isort: split

import yaml  # noqa: E402

from kocc.experiments.image_benchmark import run_image_benchmark  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="YAML recipe (recipes/*one_class*.yaml)")
    parser.add_argument("--classes", type=int, nargs="+", help="normal classes")
    parser.add_argument("--out", default="runs/images", help="output directory")
    args = parser.parse_args(argv)
    with open(args.recipe) as stream:
        config = yaml.safe_load(stream)
    if args.classes is not None:
        config.setdefault("data", {})["normal_class"] = args.classes
    results = run_image_benchmark(
        config, args.out, log=lambda m: print(m, file=sys.stderr, flush=True)
    )
    report = results.to_dict()
    report["machine"] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "intra_op_threads": os.environ.get("TF_NUM_INTRAOP_THREADS"),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
