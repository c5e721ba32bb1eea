"""The ``kocc`` command.

Commands: ``train`` a recipe; ``benchmark`` a benchmark recipe; ``export`` a
trained run as a serving SavedModel with certified radii; ``predict`` scores of
a file with an export or a run; ``evaluate`` AUROC and certified AUROC on normal
and anomalous files.

Exit codes (stable, for scripts): 0 success; 2 bad usage, recipe or input (the
message names the problem: unknown recipe key, missing file, NaN, shape); 3 the
model cannot be certified (its network is not provably 1-Lipschitz: export
refused); 1 an unexpected failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNCERTIFIED = 3


def _add_overrides_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set training.steps=500 (repeatable)",
    )


def _add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "recipe", help="a YAML recipe, e.g. recipes/toy2d_two_moons.yaml"
    )
    _add_overrides_arg(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kocc",
        description="Robust one-class classification with 1-Lipschitz networks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train a recipe and write its report (metrics.json, plot, model)",
        description="Train the recipe's model and write metrics.json, figures and "
        "the trained model into the run directory.",
    )
    _add_recipe_args(train)
    train.add_argument(
        "--out", default=None, help="run directory (default: runs/<recipe name>)"
    )
    bench = sub.add_parser(
        "benchmark",
        help="run a benchmark recipe (kind: tabular, images or toy_suite) and write "
        "its tables",
        description="Run a benchmark recipe: OCSDF and its baselines on every data "
        "set of the recipe; writes CSV and markdown tables into the output "
        "directory. Data sets are read from the recipe's data_dir or "
        "$KOCC_DATA_DIR.",
    )
    _add_recipe_args(bench)
    bench.add_argument(
        "--out", default=None, help="output directory (default: runs/<recipe name>)"
    )
    _add_serving_commands(sub)
    _add_surface_command(sub)
    return parser


def _add_surface_command(sub: argparse._SubParsersAction) -> None:
    surface = sub.add_parser(
        "surface",
        help="mesh a point cloud through the learned signed distance",
        description="Sample a mesh's surface (or read a .ply/.xyz/.npy point "
        "cloud), fit OCSDF, extract the level set with marching cubes and write "
        "the mesh (.ply), a rendering (.png) and metrics.json (Chamfer, "
        "Hausdorff, times) for OCSDF and the distance-regression baseline.",
    )
    surface.add_argument("input", help="mesh (.off/.stl/.obj/.ply) or points")
    surface.add_argument("--out", required=True, help="run directory")
    surface.add_argument(
        "--recipe",
        default=None,
        help="a kind: surface recipe (default: built-in defaults, see "
        "recipes/surface_modelnet.yaml)",
    )
    _add_overrides_arg(surface)


def _cmd_surface(args: argparse.Namespace) -> int:
    import json

    from kocc.experiments.recipes import check_kind, load_recipe_data, parse_overrides
    from kocc.experiments.surface_pipeline import run_surface

    if args.recipe:
        config = load_recipe_data(args.recipe, args.overrides)
        config.setdefault("kind", "surface")
        check_kind(config, ["surface"], "kocc surface")
    else:
        config = parse_overrides(args.overrides)
    metrics = run_surface(args.input, args.out, config)
    print(json.dumps(metrics, indent=2, default=str))
    return EXIT_OK


def _benchmark_runners(recipe_path: str) -> dict:
    from functools import partial

    from kocc.experiments.image_benchmark import run_image_benchmark
    from kocc.experiments.tabular_benchmark import run_tabular_benchmark
    from kocc.experiments.toy_suite import run_toy_suite

    return {
        "tabular": run_tabular_benchmark,
        "images": run_image_benchmark,
        # a suite's recipe paths are relative to the suite file
        "toy_suite": partial(run_toy_suite, base_dir=Path(recipe_path).parent),
    }


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from kocc.experiments.recipes import check_kind, load_recipe_data

    data = load_recipe_data(args.recipe, args.overrides)
    runners = _benchmark_runners(args.recipe)
    kind = check_kind(data, list(runners), "kocc benchmark")
    out = Path(args.out) if args.out else Path("runs") / str(data.get("name", kind))
    runners[kind](data, out)
    print(f"wrote the benchmark tables to {out}/")
    return EXIT_OK


def _epsilons(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated radii such as 0,0.05,0.1, got {text!r}"
        ) from err
    if not values or any(not v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"radii must be >= 0, got {text!r}")
    return values


def _add_threshold_arg(parser: argparse.ArgumentParser, default_help: str) -> None:
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"decision threshold on the score f (is_normal = f >= threshold); "
        f"{default_help}",
    )


def _add_serving_commands(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export",
        help="export a trained run as a serving SavedModel with certified radii",
        description="Write a TF SavedModel whose serving_default signature returns "
        "score, anomaly_score, certified_radius and is_normal. The network is "
        "exported as plain Dense/Conv layers and refused (exit 3) unless its "
        "Lipschitz constant is proved <= 1 + tolerance from its weights.",
    )
    export.add_argument("run", help="run directory (model.keras) or a .keras file")
    export.add_argument("--out", required=True, help="SavedModel directory to write")
    _add_threshold_arg(export, "default 0")
    export.add_argument(
        "--lipschitz-tolerance",
        type=float,
        default=1e-3,
        help="slack allowed above 1 on the proven Lipschitz bound (default 1e-3)",
    )

    predict = sub.add_parser(
        "predict",
        help="score a .npy/.csv file with an export or a run",
        description="Score every sample (row) of INPUT and write score, "
        "anomaly_score, certified_radius and is_normal to --out (.csv columns, "
        ".npz arrays, or a .npy structured array).",
    )
    predict.add_argument("model", help="serving export, run directory or .keras file")
    predict.add_argument("input", help="samples, .npy or .csv (one sample per row)")
    predict.add_argument("--out", required=True, help="output .csv, .npz or .npy")
    _add_threshold_arg(predict, "default: the export's, or 0 for a run")
    predict.add_argument(
        "--batch-size", type=int, default=8192, help="samples per call (8192)"
    )

    evaluate = sub.add_parser(
        "evaluate",
        help="AUROC and certified AUROC on normal and anomalous samples",
        description="Score normal and anomalous samples and print (and write "
        "with --out) a JSON report: AUROC, certified AUROC at each radius "
        "(Proposition 1: AUROC of f(x) - L eps against f(z) + L eps), the "
        "fractions decided right at the threshold and median certified radii.",
    )
    evaluate.add_argument("model", help="serving export, run directory or .keras file")
    evaluate.add_argument("--normal", required=True, help="normal samples, .npy/.csv")
    evaluate.add_argument(
        "--anomalous", required=True, help="anomalous samples, .npy/.csv"
    )
    evaluate.add_argument(
        "--epsilons",
        type=_epsilons,
        default=[0.0, 0.05, 0.1, 0.25, 0.5],
        help="comma-separated l2 radii (default 0,0.05,0.1,0.25,0.5)",
    )
    _add_threshold_arg(evaluate, "default: the export's, or 0 for a run")
    evaluate.add_argument("--out", default=None, help="also write the report here")


def _cmd_train(args: argparse.Namespace) -> int:
    from kocc.experiments.recipes import load_recipe
    from kocc.experiments.toy_experiment import run_toy

    recipe = load_recipe(args.recipe, args.overrides, ("toy",), "kocc train")
    out = Path(args.out) if args.out else Path("runs") / recipe.name
    metrics = run_toy(recipe, out)
    print(f"wrote {out}/metrics.json, {out}/level_sets.png, {out}/model.keras")
    print(
        f"AUROC {metrics['auroc']:.4f}  train {metrics['train_seconds']:.1f} s  "
        f"({metrics['steps_per_second']:.1f} steps/s)"
    )
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from kocc.export import export_run

    metadata = export_run(args.run, args.out, args.threshold, args.lipschitz_tolerance)
    print(
        f"wrote {args.out}: signature serving_default, threshold "
        f"{metadata.threshold:g}, proven Lipschitz bound "
        f"{metadata.lipschitz_bound:.6f}"
    )
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    from kocc.serving import ServedModel, predict_file

    model = ServedModel.load(args.model, threshold=args.threshold)
    outputs = predict_file(model, args.input, args.out, args.batch_size)
    n, normal = len(outputs["score"]), int(outputs["is_normal"].sum())
    print(f"wrote {args.out}: {n} samples, {normal} normal, {n - normal} anomalous")
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from kocc.serving import ServedModel, evaluate, read_inputs

    model = ServedModel.load(args.model, threshold=args.threshold)
    report = evaluate(
        model, read_inputs(args.normal), read_inputs(args.anomalous), args.epsilons
    )
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return EXIT_OK


_COMMANDS = {
    "train": _cmd_train,
    "benchmark": _cmd_benchmark,
    "export": _cmd_export,
    "predict": _cmd_predict,
    "evaluate": _cmd_evaluate,
    "surface": _cmd_surface,
}


def _error_code(err: Exception) -> int:
    """2 for bad usage or input; 3 when a model's certificates would be unsound."""
    export = sys.modules.get("kocc.export")
    if export is not None and isinstance(err, export.CertificateError):
        return EXIT_UNCERTIFIED
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kocc`` console script; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as err:  # RecipeError is a ValueError
        print(f"kocc {args.command}: error: {err}", file=sys.stderr)
        return _error_code(err)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
