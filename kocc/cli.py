"""The ``kocc`` command.

Exit codes (stable, for scripts): 0 success; 2 bad usage, recipe or input (the
message names the problem: unknown recipe key, missing file, NaN, shape); 1 an
unexpected failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "recipe", help="a YAML recipe, e.g. recipes/toy2d_two_moons.yaml"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set training.steps=500 (repeatable)",
    )


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
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from kocc.recipes import load_recipe
    from kocc.toy_experiment import run_toy

    recipe = load_recipe(args.recipe, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / recipe.name
    metrics = run_toy(recipe, out)
    print(f"wrote {out}/metrics.json, {out}/level_sets.png, {out}/model.keras")
    print(
        f"AUROC {metrics['auroc']:.4f}  train {metrics['train_seconds']:.1f} s  "
        f"({metrics['steps_per_second']:.1f} steps/s)"
    )
    return EXIT_OK


_COMMANDS = {"train": _cmd_train}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kocc`` console script; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as err:  # RecipeError is a ValueError
        print(f"kocc {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
