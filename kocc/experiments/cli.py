"""The ``kocc`` command.

Commands: ``train`` a recipe; ``benchmark`` a benchmark recipe; ``surface`` a
mesh or point cloud; ``export`` a trained run as a serving SavedModel with
certified radii; ``predict`` scores of a file with an export or a run;
``evaluate`` AUROC and certified AUROC on normal and anomalous files;
``shards`` .npy/.csv tables as TFRecord shards, chunk by chunk (data larger
than memory, docs/distributed.md).

Exit codes (stable, for scripts; see ``docs/reliability.md``): 0 success; 2 bad
usage, recipe, input or output path (a one-line message names the file or the
recipe key); 3 the model cannot be certified (its network is not provably
1-Lipschitz: export refused); 130 interrupted (Ctrl-C or ``SIGTERM``; the
partial output is removed); 1 an unexpected failure (a bug: a traceback).

This module imports nothing heavy at import time: the argument tree is plain
``argparse`` and each command imports its implementation (and TensorFlow) in
its handler, so ``kocc --help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from kocc.experiments.quiet_tensorflow import (
    quiet_environment,
    quiet_tensorflow_import,
    user_set_tf_log_level,
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNCERTIFIED = 3
EXIT_INTERRUPTED = 130

#: The log file every run folder (train, benchmark, surface) holds.
LOG_FILE = "kocc.log"


def add_overrides_arg(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``, as every command
    that reads a recipe takes it (also the benchmark scripts that re-read one)."""
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
    add_overrides_arg(parser)


def _add_overwrite_arg(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace an existing {what} (refused without it; the new output "
        "replaces the old one only once complete)",
    )


def _common_options() -> argparse.ArgumentParser:
    """Options every command takes (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's native log lines and dependencies' warnings "
        "(hidden by default; TF_CPP_MIN_LOG_LEVEL, if you set it, is respected)",
    )
    common.add_argument(
        "--quiet",
        action="store_true",
        help="print only errors and the final summary (a run folder's "
        f"{LOG_FILE} still gets everything)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument tree of ``kocc`` (plain argparse: no heavy import)."""
    parser = argparse.ArgumentParser(
        prog="kocc",
        description="Robust one-class classification with 1-Lipschitz networks. "
        "Exit codes: 0 success, 2 bad usage or input (one line naming the file or "
        "key), 3 uncertifiable export, 130 interrupted.",
    )
    common = _common_options()
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        parents=[common],
        help="train a recipe and write its report (metrics.json, plot, model)",
        description="Train the recipe's model and write metrics.json, figures, "
        f"the trained model and {LOG_FILE} into the run directory. The directory "
        "appears complete or not at all (with a .kocc-complete marker); two runs "
        "cannot write one directory at once.",
    )
    _add_recipe_args(train)
    train.add_argument(
        "--out", default=None, help="run directory (default: runs/<recipe name>)"
    )
    _add_overwrite_arg(train, "run directory")
    bench = sub.add_parser(
        "benchmark",
        parents=[common],
        help="run a benchmark recipe (kind: tabular, images or toy_suite) and write "
        "its tables",
        description="Run a benchmark recipe: OCSDF and its baselines on every data "
        "set of the recipe; writes CSV and markdown tables (and "
        f"{LOG_FILE}) into the output directory, which appears complete or not at "
        "all. Data sets are read from the recipe's data_dir or $KOCC_DATA_DIR.",
    )
    _add_recipe_args(bench)
    bench.add_argument(
        "--out", default=None, help="output directory (default: runs/<recipe name>)"
    )
    _add_overwrite_arg(bench, "output directory")
    _add_serving_commands(sub, common)
    _add_surface_command(sub, common)
    _add_shards_command(sub, common)
    return parser


def _add_shards_command(
    sub: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    shards = sub.add_parser(
        "shards",
        parents=[common],
        help="write .npy/.csv tables as TFRecord shards, chunk by chunk",
        description="Read the rows of one or more .npy (memory-mapped) or .csv "
        "files CHUNK rows at a time and write them as NUM TFRecord shards "
        "<out>/<prefix>-0000-of-NUM.tfrecord ...: the input of a tabular recipe's "
        "shard_files section (data larger than memory). Rows with NaN or inf, or "
        "files of different feature counts, are refused (the file and row are "
        "named) and no shard is left behind.",
    )
    shards.add_argument("inputs", nargs="+", help=".npy or .csv files of rows")
    shards.add_argument("--out", required=True, help="output directory")
    shards.add_argument("--prefix", default="train", help="file prefix (train)")
    shards.add_argument(
        "--num-shards", type=int, default=16, help="number of files (16)"
    )
    shards.add_argument(
        "--chunk-rows", type=int, default=65536, help="rows read at once (65536)"
    )
    _add_overwrite_arg(shards, "set of shards with this prefix")


def _add_surface_command(
    sub: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    surface = sub.add_parser(
        "surface",
        parents=[common],
        help="mesh a point cloud through the learned signed distance",
        description="Sample a mesh's surface (or read a .ply/.xyz/.npy point "
        "cloud), fit OCSDF, extract the level set with marching cubes and write "
        "the mesh (.ply), a rendering (.png) and metrics.json (Chamfer, "
        "Hausdorff, times) for OCSDF and the distance-regression baseline, and "
        f"{LOG_FILE}.",
    )
    surface.add_argument("input", help="mesh (.off/.stl/.obj/.ply) or points")
    surface.add_argument("--out", required=True, help="run directory")
    surface.add_argument(
        "--recipe",
        default=None,
        help="a kind: surface recipe (default: built-in defaults, see "
        "recipes/surface_modelnet.yaml)",
    )
    add_overrides_arg(surface)
    _add_overwrite_arg(surface, "run directory")


def _load_recipe_data(path: str, overrides: list[str]) -> dict:
    """The recipe mapping; a file that is not UTF-8 text is named."""
    from kocc.experiments.recipes import RecipeError, load_recipe_data

    try:
        return load_recipe_data(path, overrides)
    except UnicodeDecodeError as err:
        raise RecipeError(
            f"recipe {path!r} is not UTF-8 text (byte {err.object[err.start]:#04x} "
            f"at offset {err.start}): save it as UTF-8"
        ) from None


def _cmd_surface(args: argparse.Namespace) -> int:
    import json

    from kocc.experiments.recipes import check_kind, parse_overrides

    if args.recipe:
        config = _load_recipe_data(args.recipe, args.overrides)
        config.setdefault("kind", "surface")
        check_kind(config, ["surface"], "kocc surface")
    else:
        config = parse_overrides(args.overrides)
    inputs = [args.input] + ([args.recipe] if args.recipe else [])
    with _run_directory(args, Path(args.out), inputs) as work:
        from kocc.experiments.surface_pipeline import run_surface

        metrics = run_surface(args.input, work, config)
        print(json.dumps(metrics, indent=2, default=str))
    print(f"wrote {args.out}/")
    return EXIT_OK


def _cmd_shards(args: argparse.Namespace) -> int:
    from kocc.safe_output import OutputExistsError

    out = Path(args.out)
    existing = sorted(out.glob(f"{args.prefix}-*.tfrecord"))
    if existing and not args.overwrite:
        raise OutputExistsError(
            f"{str(existing[0])!r} exists: choose another --prefix or --out, or "
            "pass --overwrite",
            existing[0],
        )
    import numpy as np

    from kocc.datasets.shards import array_chunks, write_tfrecord_shards

    counts = {"rows": 0}
    shape: dict[str, tuple] = {}

    def chunks():
        for path in args.inputs:
            start = 0
            for chunk in array_chunks(path, args.chunk_rows):
                first = shape.setdefault("shape", chunk.shape[1:])
                if chunk.shape[1:] != first:
                    raise ValueError(
                        f"{path!r}: rows of shape {chunk.shape[1:]}, the first "
                        f"input's are {first}"
                    )
                bad = np.flatnonzero(~np.isfinite(chunk.reshape(len(chunk), -1)))
                if bad.size:
                    row = start + int(bad[0]) // int(np.prod(first))
                    raise ValueError(f"{path!r}, row {row}: NaN or inf")
                start += len(chunk)
                counts["rows"] += len(chunk)
                yield chunk

    import shutil
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    # written aside, moved in place once complete: a failure leaves no shard
    # and replaces nothing
    with tempfile.TemporaryDirectory(prefix=f".{args.prefix}-", dir=out) as tmp:
        written = write_tfrecord_shards(chunks(), tmp, args.num_shards, args.prefix)
        for old in existing:
            old.unlink()
        paths = [Path(shutil.move(str(path), out / path.name)) for path in written]
    print(
        f"wrote {counts['rows']} rows of shape {shape['shape']} to {len(paths)} "
        f"shards: {out}/{args.prefix}-*.tfrecord"
    )
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


#: Recipe kinds ``kocc benchmark`` runs (the keys of ``_benchmark_runners``).
BENCHMARK_KINDS = ("tabular", "images", "toy_suite")


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from kocc.experiments.recipes import check_kind

    data = _load_recipe_data(args.recipe, args.overrides)
    kind = check_kind(data, list(BENCHMARK_KINDS), "kocc benchmark")
    out = Path(args.out) if args.out else Path("runs") / str(data.get("name", kind))
    inputs = [args.recipe]
    data_dir = data.get("data_dir") or os.environ.get("KOCC_DATA_DIR")
    if isinstance(data_dir, str) and data_dir:
        inputs.append(data_dir)  # the output may not replace the data
    shard_files = data.get("shard_files")
    if isinstance(shard_files, dict):  # nor the folders of the shards
        for pattern in shard_files.values():
            if isinstance(pattern, str) and pattern:
                inputs.append(str(Path(pattern).parent))
    with _run_directory(args, out, inputs) as work:
        _benchmark_runners(args.recipe)[kind](data, work)
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


def _add_serving_commands(
    sub: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    export = sub.add_parser(
        "export",
        parents=[common],
        help="export a trained run as a serving SavedModel with certified radii",
        description="Write a TF SavedModel whose serving_default signature returns "
        "score, anomaly_score, certified_radius, is_normal and valid. The network "
        "is exported as plain Dense/Conv layers and refused (exit 3) unless its "
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
    _add_overwrite_arg(export, "SavedModel directory")

    predict = sub.add_parser(
        "predict",
        parents=[common],
        help="score a .npy/.csv file with an export or a run",
        description="Score every sample (row) of INPUT and write score, "
        "anomaly_score, certified_radius, is_normal and valid to --out (.csv "
        "columns, .npz arrays, or a .npy structured array), atomically.",
    )
    predict.add_argument("model", help="serving export, run directory or .keras file")
    predict.add_argument("input", help="samples, .npy or .csv (one sample per row)")
    predict.add_argument("--out", required=True, help="output .csv, .npz or .npy")
    _add_threshold_arg(predict, "default: the export's, or 0 for a run")
    predict.add_argument(
        "--batch-size", type=int, default=8192, help="samples per call (8192)"
    )
    _add_overwrite_arg(predict, "output file")

    evaluate = sub.add_parser(
        "evaluate",
        parents=[common],
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
    _add_overwrite_arg(evaluate, "report file")


def _cmd_train(args: argparse.Namespace) -> int:
    from kocc.experiments.recipes import recipe_from_dict

    data = _load_recipe_data(args.recipe, args.overrides)
    recipe = recipe_from_dict(data, ("toy",), "kocc train")
    out = Path(args.out) if args.out else Path("runs") / recipe.name
    with _run_directory(args, out, [args.recipe]) as work:
        from kocc.experiments.toy_experiment import run_toy

        # Keras's progress bar on a terminal, one line per epoch otherwise
        verbose = 1 if sys.stdout.isatty() and not args.quiet else 2
        metrics = run_toy(recipe, work, verbose=verbose)
        print(
            f"AUROC {metrics['auroc']:.4f}  train {metrics['train_seconds']:.1f} s  "
            f"({metrics['steps_per_second']:.1f} steps/s)"
        )
    print(f"wrote {out}/metrics.json, {out}/level_sets.png, {out}/model.keras")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from kocc.safe_output import check_output

    check_output(args.out, "directory", args.overwrite, [args.run])
    from kocc.export import export_run

    metadata = export_run(
        args.run,
        args.out,
        args.threshold,
        args.lipschitz_tolerance,
        overwrite=args.overwrite,
    )
    # every digit (repr): a bound of 1.0000002 is not rounded to 1
    print(
        f"wrote {args.out}: signature serving_default, threshold "
        f"{metadata.threshold!r}, proven Lipschitz bound "
        f"{metadata.lipschitz_bound!r}"
    )
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    from kocc.safe_output import check_output

    check_output(args.out, "file", args.overwrite, [args.input, args.model])
    from kocc.serving import ServedModel, predict_file

    model = ServedModel.load(args.model, threshold=args.threshold)
    outputs = predict_file(
        model, args.input, args.out, args.batch_size, overwrite=args.overwrite
    )
    n, normal = len(outputs["score"]), int(outputs["is_normal"].sum())
    print(f"wrote {args.out}: {n} samples, {normal} normal, {n - normal} anomalous")
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from kocc.safe_output import check_output, write_text

    inputs = [args.normal, args.anomalous, args.model]
    figure = _curve_path(args.out) if args.out else None
    if args.out:  # checked before anything is computed
        check_output(args.out, "file", args.overwrite, inputs)
        check_output(figure, "file", args.overwrite, inputs)
    from kocc.serving import ServedModel, evaluate, read_inputs

    model = ServedModel.load(args.model, threshold=args.threshold)
    report = evaluate(
        model, read_inputs(args.normal), read_inputs(args.anomalous), args.epsilons
    )
    text = json.dumps(report, indent=2)
    if args.out:
        write_text(args.out, text + "\n", args.overwrite, inputs)
        from kocc.experiments.plotting import plot_certified_auroc
        from kocc.safe_output import atomic_file

        curve = {0.0: report["auroc"]} | {
            float(e): a for e, a in report["certified_auroc"].items()
        }
        with atomic_file(figure, "wb", args.overwrite, inputs) as handle:
            plot_certified_auroc(curve, handle, f"{Path(args.model).name}")
    print(text)
    if args.out:
        print(f"wrote {args.out} and {figure}", file=sys.stderr)
    return EXIT_OK


def _curve_path(report: str) -> Path:
    """The certified-AUROC figure beside ``kocc evaluate``'s report:
    ``report.json`` -> ``report_certified_auroc.png``."""
    path = Path(report)
    return path.with_name(f"{path.stem}_certified_auroc.png")


_COMMANDS = {
    "train": _cmd_train,
    "benchmark": _cmd_benchmark,
    "export": _cmd_export,
    "predict": _cmd_predict,
    "evaluate": _cmd_evaluate,
    "surface": _cmd_surface,
    "shards": _cmd_shards,
}


# ----------------------------------------------------------- run directories
class _Tee:
    """A text stream that also copies what is written to a log file (or only
    writes it there, if not ``show``)."""

    def __init__(
        self, stream, log, show: bool = True, rename: tuple[str, str] = ("", "")
    ) -> None:
        self._stream, self._log, self._show = stream, log, show
        self._rename = rename

    def write(self, text: str) -> int:
        if self._rename[0]:  # the work folder is published under its final name
            text = text.replace(*self._rename)
        if self._show:
            self._stream.write(text)
        self._log.write(text)
        return len(text)

    def flush(self) -> None:
        if self._show:
            self._stream.flush()
        self._log.flush()

    def isatty(self) -> bool:
        return self._show and self._stream.isatty()

    def __getattr__(self, name: str):  # fileno, encoding...
        return getattr(self._stream, name)


def _versions() -> str:
    import importlib.metadata
    import platform

    parts = [f"python {platform.python_version()}"]
    for package in ("kocc", "tensorflow", "tf-keras", "deel-lip", "numpy"):
        try:
            parts.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{package} (not installed)")
    return ", ".join(parts)


@contextlib.contextmanager
def _run_log(
    path: Path, args: argparse.Namespace, work: Path, out: Path
) -> Iterator[None]:
    """Write ``path``: the command line, versions, timings and what was printed
    (Python's stdout and stderr are copied to it while the block runs; the
    temporary folder ``work`` is named by its final name ``out``)."""
    start = time.perf_counter()
    with open(path, "w", encoding="utf-8") as log:
        log.write(
            f"command: kocc {shlex.join(args.argv)}\n"
            f"directory: {os.getcwd()}\n"
            f"started: {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n"
            f"versions: {_versions()}\n"
            "--- output ---\n"
        )
        log.flush()
        stdout, stderr = sys.stdout, sys.stderr
        rename = (str(work), str(out))
        sys.stdout = _Tee(stdout, log, not args.quiet, rename)
        sys.stderr = _Tee(stderr, log, True, rename)
        from kocc.experiments.progress import reporting

        try:
            # progress: a status line on a terminal (not --quiet), a line per
            # finished unit in this log
            with reporting(quiet=args.quiet, log=log):
                yield
        finally:
            sys.stdout, sys.stderr = stdout, stderr
        log.write(
            f"--- finished: {time.strftime('%Y-%m-%d %H:%M:%S %z')}, "
            f"{time.perf_counter() - start:.1f} s ---\n"
        )


def _missing_parents(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist yet, deepest first."""
    return [p for p in path.absolute().parents if not p.exists()]


@contextlib.contextmanager
def _run_directory(
    args: argparse.Namespace, out: Path, inputs: Sequence[str]
) -> Iterator[Path]:
    """A run folder that appears at ``out`` whole (marker ``.kocc-complete``,
    ``kocc.log`` inside) or not at all, written under a lock.

    The block gets the temporary folder to fill. On any failure or interrupt
    nothing is left: the temporary folder, and the parent folders this run
    created, are removed.
    """
    from kocc.safe_output import output_directory

    created = _missing_parents(out)
    try:
        with output_directory(out, args.overwrite, inputs) as work:
            with _run_log(work / LOG_FILE, args, work, out):
                yield work
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        raise


def _filter_dependency_warnings() -> None:
    """Hide Python warnings from dependencies that a ``kocc`` user cannot act on.

    Each filter says why; ``--verbose`` shows them all.
    """
    # Deprecations inside TensorFlow, tf-keras, deel-lip, absl, NumPy and
    # scikit-learn are about their own internal calls, not about anything in the
    # user's recipe or command line.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _warning_line(command: str):
    """``warnings.showwarning`` printing one line: ``kocc CMD: warning: ...``."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        print(f"kocc {command}: warning: {text}", file=file or sys.stderr)

    return show


def _one_line(err: BaseException) -> str:
    """The error's message on one line (YAML and OS errors span several)."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.strerror}: {str(err.filename)!r}"
        if err.filename2 is not None:
            text += f" -> {str(err.filename2)!r}"
        return text
    return " ".join(str(err).split()) or type(err).__name__


def _error_code(err: Exception) -> int:
    """2 for bad usage or input; 3 when a model's certificates would be unsound."""
    export = sys.modules.get("kocc.export")
    if export is not None and isinstance(err, export.CertificateError):
        return EXIT_UNCERTIFIED
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kocc`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    quiet_environment(args.verbose)
    from kocc.safe_output import interrupts_received, terminate_as_interrupt

    signals_before, _ = interrupts_received()
    try:
        with (
            warnings.catch_warnings(),
            terminate_as_interrupt(),
            quiet_tensorflow_import(args.verbose or user_set_tf_log_level()),
        ):
            if not args.verbose:
                _filter_dependency_warnings()
                warnings.showwarning = _warning_line(args.command)
            return _COMMANDS[args.command](args)
    except KeyboardInterrupt as err:
        return _interrupted(args.command, str(err))
    except Exception as err:
        signals_after, cause = interrupts_received()
        if signals_after != signals_before:
            # The signal's KeyboardInterrupt was replaced on its way out: a
            # SIGTERM that lands while TensorFlow traces a graph comes out of
            # pybind11 as "RuntimeError: ... MISMATCH of original and
            # normalized active exception types". It is still an interrupt.
            return _interrupted(args.command, cause)
        if isinstance(err, (ValueError, OSError)):  # RecipeError, OutputError
            print(f"kocc {args.command}: error: {_one_line(err)}", file=sys.stderr)
            return _error_code(err)
        raise


def _interrupted(command: str, cause: str) -> int:
    """Report an interrupt (Ctrl-C or ``SIGTERM``) in one line; exit code 130.

    The output folders' clean-up has run by then:
    :func:`kocc.safe_output.atomic_path` and
    :func:`kocc.safe_output.output_directory` unwind on any exception.
    """
    print(
        f"kocc {command}: interrupted ({cause or 'Ctrl-C'}); the partial output "
        "was removed",
        file=sys.stderr,
    )
    return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
