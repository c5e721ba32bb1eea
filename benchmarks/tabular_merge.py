"""Merge the output folders of one tabular recipe run in parts into one table.

A ``kocc benchmark`` run of a tabular recipe over many data sets can be split
into parts that run at once, one per core, each with ``--set datasets=[...]``
and its own ``--out`` folder. This script reads every part's ``<name>.csv`` and
``<name>_runs.csv`` and writes the merged ``<name>.csv``, ``<name>_runs.csv``
and ``<name>.md`` into ``--out`` with the benchmark's own writers
(:func:`~kocc.experiments.tabular_benchmark.write_results_csv`,
:func:`~kocc.experiments.tabular_benchmark.write_runs_csv`,
:func:`~kocc.experiments.tabular_benchmark.results_markdown`), the average ranks
recomputed over all data sets, in the recipe's order. Give the parts' own
``--set`` overrides again (e.g. ``--set seed=3``), so that the report states
what they ran. Each data set must come
from exactly one part, and the recipe's data sets must all be there. A
baseline is marked deterministic for a data set when every run gave it the
same AUROC (the benchmark computes those once). Usage::

    kocc benchmark recipes/tabular_odds.yaml \\
        --set "datasets=[cardio,glass]" --out runs/part1     # and part2 ...
    python benchmarks/tabular_merge.py recipes/tabular_odds.yaml \\
        runs/part1 runs/part2 --out runs/merged
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import kocc  # noqa: F401  (selects tf-keras before TensorFlow is imported)

# isort: split
from kocc.experiments.cli import add_overrides_arg
from kocc.experiments.recipes import load_recipe_data
from kocc.experiments.tabular_benchmark import (
    DatasetResult,
    TabularBenchmarkConfig,
    average_ranks,
    results_markdown,
    write_results_csv,
    write_runs_csv,
)


def read_part(
    folder: Path, config: TabularBenchmarkConfig
) -> tuple[list[DatasetResult], list[dict]]:
    """The data sets of one part folder, rebuilt from its two CSV files."""
    summary = folder / f"{config.name}.csv"
    runs_path = folder / f"{config.name}_runs.csv"
    for path in (summary, runs_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: is {folder} the output of a finished part of "
                f"the recipe {config.name!r}?"
            )
    with runs_path.open() as handle:
        runs = list(csv.DictReader(handle))
    results = []
    with summary.open() as handle:
        for row in csv.DictReader(handle):
            name = row["dataset"]
            mine = [r for r in runs if r["dataset"] == name]
            auroc = {
                method: [float(r["auroc"]) for r in mine if r["method"] == method]
                for method in config.methods
            }
            if any(len(values) != config.runs for values in auroc.values()):
                raise ValueError(
                    f"{runs_path}: {name} does not have {config.runs} runs of "
                    f"every method {config.methods}."
                )
            results.append(
                DatasetResult(
                    dataset=name,
                    n_rows=int(row["rows"]),
                    n_features=int(row["features"]),
                    n_anomalies=int(row["anomalies"]),
                    margin=float(row["margin"]),
                    margin_rule=row["rule"],
                    auroc=auroc,
                    ocsdf_by_margin={float(row["margin"]): auroc["ocsdf"]},
                    seconds={m: float(row[f"{m}_seconds"]) for m in config.methods},
                    deterministic=[
                        m
                        for m in config.methods[1:]
                        if config.runs > 1 and len(set(auroc[m])) == 1
                    ],
                    setting=row.get("setting", ""),
                )
            )
    return results, [r for r in runs if r["dataset"] in {d.dataset for d in results}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe", help="the recipe every part ran")
    parser.add_argument("parts", nargs="+", help="the parts' output folders")
    parser.add_argument("--out", required=True, help="folder of the merged table")
    add_overrides_arg(parser)  # the parts' overrides but datasets: --set seed=3
    args = parser.parse_args()
    data = load_recipe_data(args.recipe, args.overrides)
    config = TabularBenchmarkConfig.from_dict(data)
    by_name: dict[str, DatasetResult] = {}
    rows: list[dict] = []
    for folder in args.parts:
        results, runs = read_part(Path(folder), config)
        seeds = {int(r["seed"]) - int(r["run"]) for r in runs}
        if seeds != {config.seed}:
            raise ValueError(
                f"{folder} ran with seed {sorted(seeds)}, the merge's recipe says "
                f"{config.seed}: give the parts' --set seed=... to the merge too."
            )
        for result in results:
            if result.dataset in by_name:
                raise ValueError(f"{result.dataset} is in more than one part.")
            by_name[result.dataset] = result
        rows += runs
    missing = [name for name in config.datasets if name not in by_name]
    if missing:
        raise ValueError(f"no part holds {missing}: run them first.")
    results = [by_name[name] for name in config.datasets]
    rows.sort(key=lambda r: (config.datasets.index(r["dataset"]), int(r["run"])))
    methods = config.methods
    ranks = average_ranks([{m: r.mean(m) for m in methods} for r in results], methods)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_results_csv(results, methods, config, out / f"{config.name}.csv")
    write_runs_csv(rows, out / f"{config.name}_runs.csv")
    markdown = results_markdown(results, methods, ranks, config)
    (out / f"{config.name}.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
