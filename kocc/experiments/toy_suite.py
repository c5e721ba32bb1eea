"""``kind: toy_suite``: run several toy recipes and gather the paper's Figure 6 and
Table 1 (Béthune et al., ICML 2023, §5.1).

``kocc benchmark recipes/toy2d_paper.yaml`` runs each listed toy recipe (with
the suite's ``overrides`` applied to all) into ``<out>/<toy recipe name>/``,
then writes

* ``table1.md`` / ``table1.csv``: per toy, the AUROC of every method and the
  local Lipschitz constant of OCSDF and of the BCE network;
* ``figure6.png``: one row of level-set panels per toy, one column per method;
* ``suite.json``: the same numbers, the resolved settings and the times.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from kocc.experiments.plotting import plot_level_set_rows
from kocc.experiments.progress import Progress
from kocc.experiments.recipes import (
    RecipeError,
    ToyRecipe,
    ToySuiteRecipe,
    from_dict,
    load_recipe,
)
from kocc.experiments.toy_comparison import METHOD_LABELS
from kocc.experiments.toy_experiment import train_toy


def resolve_suite(
    data: dict[str, Any], base_dir: str | Path | None = None
) -> tuple[ToySuiteRecipe, list[ToyRecipe]]:
    """Validate a suite mapping and load each of its toy recipes.

    Args:
        data: the ``kind: toy_suite`` mapping.
        base_dir: folder that relative recipe paths are read from (the suite
            file's folder on the command line); ``None`` = the working folder.

    Returns:
        The suite and its toy recipes, overrides applied.

    Raises:
        RecipeError: on a bad suite key, no recipes, a missing recipe file, a
            recipe that is not ``kind: toy``, or two recipes with one name.
    """
    suite = from_dict(ToySuiteRecipe, data)
    if suite.kind != "toy_suite":
        raise RecipeError(f"recipe kind must be 'toy_suite', got {suite.kind!r}")
    if not suite.recipes:
        raise RecipeError("recipe key 'recipes' must list at least one toy recipe")
    base = Path(base_dir) if base_dir is not None else Path(".")
    toys = []
    for entry in suite.recipes:
        path = Path(entry) if Path(entry).is_absolute() else base / entry
        toy = load_recipe(path, suite.overrides)
        if not isinstance(toy, ToyRecipe):
            raise RecipeError(f"{str(path)!r} is not a kind: toy recipe")
        toys.append(toy)
    names = [toy.name for toy in toys]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise RecipeError(f"two toy recipes share the name {duplicated[0]!r}")
    return suite, toys


def run_toy_suite(
    data: dict[str, Any],
    out_dir: str | Path,
    base_dir: str | Path | None = None,
    verbose: str | int = 0,
) -> dict[str, Any]:
    """Run every toy recipe of the suite and write Table 1 and Figure 6.

    All recipes are validated (and every file found) before the first one
    trains, so a typo fails at once instead of after an hour.

    Returns:
        The content of ``suite.json``.
    """
    suite, toys = resolve_suite(data, base_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    progress = Progress("toy suite", len(toys))
    runs = []
    for toy in toys:
        progress.start(toy.name)
        runs.append(train_toy(toy, out / toy.name, verbose=verbose))
        progress.done()
    reports = [run.metrics for run in runs]
    methods = _all_methods(reports)
    table = [_table_row(report, methods) for report in reports]
    _write_csv(out / "table1.csv", table)
    (out / "table1.md").write_text(_markdown(suite, toys, table, methods))
    rows = [run.figure_row for run in runs if run.figure_row is not None]
    if rows and all(len(r[2]) == len(rows[0][2]) for r in rows):
        grid_x, grid_y = runs[0].grid
        plot_level_set_rows(grid_x, grid_y, rows, out / "figure6.png")
    summary = {
        "suite": suite.name,
        "overrides": suite.overrides,
        "seconds": time.perf_counter() - start,
        "table": table,
    }
    (out / "suite.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _all_methods(reports: list[dict]) -> list[str]:
    seen: list[str] = []
    for report in reports:
        seen += [m for m in report["methods"] if m not in seen]
    return seen


def _table_row(report: dict, methods: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"toy": report["data"], "recipe": report["recipe"]}
    for method in methods:
        entry = report["methods"].get(method, {})
        row[f"auroc_{method}"] = entry.get("auroc")
    for method in methods:
        if "local_lipschitz" in report["methods"].get(method, {}):
            row[f"lipschitz_{method}"] = report["methods"][method]["local_lipschitz"]
    row["train_seconds"] = report["train_seconds"]
    row["steps"] = report["train_steps"]
    return row


def _write_csv(path: Path, table: list[dict]) -> None:
    columns: list[str] = []
    for row in table:
        columns += [c for c in row if c not in columns]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)


def _fmt(value: Any, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _markdown(
    suite: ToySuiteRecipe, toys: list[ToyRecipe], table: list[dict], methods: list[str]
) -> str:
    networks = [m for m in methods if any(f"lipschitz_{m}" in row for row in table)]
    head = (
        ["toy"]
        + [f"AUROC {METHOD_LABELS[m]}" for m in methods]
        + [f"L {METHOD_LABELS[m]}" for m in networks]
        + ["train s"]
    )
    lines = [
        f"# {suite.name}: toy examples (paper §5.1, Table 1)",
        "",
        "AUROC: test normals (a fresh draw) against uniform anomalies farther than "
        "`evaluation.min_distance` from the data. L: local Lipschitz constant, "
        "max ||∇f|| over the plotting grid and the training points.",
        "",
        f"Overrides applied to every recipe: {suite.overrides or 'none'}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in table:
        cells = [row["toy"]]
        cells += [_fmt(row.get(f"auroc_{m}"), 4) for m in methods]
        cells += [_fmt(row.get(f"lipschitz_{m}"), 2) for m in networks]
        cells.append(_fmt(row["train_seconds"], 0))
        lines.append("| " + " | ".join(cells) + " |")
    toy = toys[0]
    lines += [
        "",
        f"Settings of the first recipe: widths {toy.model.widths} "
        f"({toy.model.activation}), {toy.training.steps} steps, batch "
        f"{toy.training.batch_size}, T = {toy.training.nr_steps}, "
        f"λ = {toy.training.lam}, {toy.training.optimizer} "
        f"{toy.training.learning_rate}.",
        "",
    ]
    return "\n".join(lines)
