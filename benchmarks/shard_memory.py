"""Peak memory and time of the tabular driver: rows in memory vs shard files.

For every size (rows of a synthetic table of ``--features`` standard Gaussian
features, 5% anomalies uniform in ``[-4, 4]^d``), the parent writes the table
once as an ADBench-style ``.npz`` (the in-memory driver loads it; written only
for a ``memory`` run) and as
TFRecord shards, chunk by chunk
(``train``: all rows, ``normal``/``anomalous``: by label; the anomaly detection
protocol of the in-memory run). Each run is a fresh process running
``kocc.experiments.tabular_benchmark.run_tabular_benchmark`` (OCSDF only, the
same short training) from memory (``memory``) or from the shard files
(``shards``, recipe section ``shard_files``), and reports its peak resident
memory (``VmHWM`` of ``/proc/self/status``, MiB) and wall time. A ``baseline``
process imports kocc and TensorFlow and builds the same small model, to show
what any process costs. Prints one JSON object.

The children run with glibc's ``MALLOC_MMAP_THRESHOLD_=131072``: by default
glibc raises its mmap threshold each time a large buffer is freed (up to 32 MiB),
so the many freed score batches stay cached in the heap and the peak grows with
the number of batches although no more rows are live (measured: the scoring
stage of a shard run added 7 MiB for 50,000 rows and 54 MiB for 200,000 rows
of 128 features by default, 12 and 11 MiB with the fixed threshold). The fixed
threshold makes the peak measure the rows the process holds.

    python benchmarks/shard_memory.py --rows 200000 800000 [--modes memory shards]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FEATURES = 64
#: glibc's mmap threshold in the children (see the module docstring).
MMAP_THRESHOLD = 131072


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _recipe(mode: str, data: Path, steps: int, score_batch: int = 65536) -> dict:
    recipe = {
        "kind": "tabular",
        "name": "synthetic",
        "datasets": ["synthetic"],
        "runs": 1,
        "baselines": [],
        "paper_reference": False,
        "model": {"widths": [32]},
        "training": {"steps": steps, "batch_size": 256, "margins": [0.5]},
    }
    if mode == "memory":
        recipe["data_dir"] = str(data)
    else:
        recipe["shard_files"] = {
            kind: str(data / f"{kind}-*.tfrecord")
            for kind in ("train", "normal", "anomalous")
        }
        recipe["shard_files"]["score_batch_size"] = score_batch
    return recipe


def child(mode: str, data: Path, steps: int, score_batch: int) -> dict:
    """One run in this (fresh) process; its peak memory and time."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import kocc  # noqa: F401  isort: skip  (first: selects tf-keras)

    start = time.perf_counter()
    if mode == "baseline":
        from kocc.architectures import lipschitz_mlp

        lipschitz_mlp(FEATURES, widths=[32])
        auroc = None
    else:
        from kocc.experiments.tabular_benchmark import run_tabular_benchmark

        with tempfile.TemporaryDirectory() as out:
            results = run_tabular_benchmark(
                _recipe(mode, data, steps, score_batch), out, log=None
            )
        auroc = results.datasets[0].auroc["ocsdf"][0]
    return {
        "mode": mode,
        "peak_mib": round(_peak_mib(), 1),
        "seconds": round(time.perf_counter() - start, 2),
        "auroc": auroc,
    }


def write_data(
    folder: Path, rows: int, features: int, shards: int, npz: bool = True
) -> float:
    """The synthetic table as shards and (``npz``, what the in-memory driver
    loads) as ``.npz``; returns its MiB (float32)."""
    import numpy as np

    import kocc  # noqa: F401  isort: skip

    from kocc.datasets.shards import write_tfrecord_shards

    rng = np.random.default_rng(0)
    y = (rng.random(rows) < 0.05).astype(np.int64)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    # anomalies scattered uniformly in [-4, 4]^d (far from the Gaussian normals)
    x[y == 1] = rng.uniform(-4.0, 4.0, size=(int(y.sum()), features))
    folder.mkdir(parents=True, exist_ok=True)
    if npz:
        np.savez(folder / "0_synthetic.npz", X=x, y=y)
    chunk = 65536

    def chunks(mask):
        for start in range(0, rows, chunk):
            keep = mask[start : start + chunk]
            yield x[start : start + chunk][keep]

    everything = np.ones(rows, bool)
    write_tfrecord_shards(chunks(everything), folder, shards, "train")
    write_tfrecord_shards(chunks(y == 0), folder, shards, "normal")
    write_tfrecord_shards(chunks(y == 1), folder, max(1, shards // 8), "anomalous")
    return x.nbytes / 2**20


def run_child(mode: str, data: Path, steps: int, score_batch: int = 65536) -> dict:
    """One run in a fresh process (``--child``): its RESULT."""
    args = [mode, str(data), str(steps), str(score_batch)]
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
        },
        timeout=1800,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200000, 800000])
    parser.add_argument("--features", type=int, default=FEATURES)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--modes", nargs="+", default=["baseline", "memory", "shards"])
    parser.add_argument(
        "--score-batch", type=int, default=65536, help="shard_files.score_batch_size"
    )
    parser.add_argument("--child", nargs=4, metavar=("MODE", "DATA", "STEPS", "B"))
    args = parser.parse_args()
    if args.child:
        mode, data, steps, batch = args.child
        result = child(mode, Path(data), int(steps), int(batch))
        print("RESULT " + json.dumps(result), flush=True)
        return
    report: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg(),
        "features": args.features,
        "steps": args.steps,
        "score_batch": args.score_batch,
        "malloc_mmap_threshold": MMAP_THRESHOLD,
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="shard-memory-") as tmp:
        for rows in args.rows:
            data = Path(tmp) / f"rows{rows}"
            mib = write_data(
                data, rows, args.features, args.shards, npz="memory" in args.modes
            )
            runs = [
                run_child(mode, data, args.steps, args.score_batch)
                for mode in args.modes
            ]
            report["sizes"].append(
                {"rows": rows, "data_mib": round(mib, 1), "runs": runs}
            )
    report["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
