"""OCSDF under tf.distribute, run in a fresh process by tests/test_distribute.py.

Logical CPU devices must be configured before TensorFlow initializes its
devices, and a ``MultiWorkerMirroredStrategy`` owns its process, so each case
runs as ``python tests/distributed_cases.py CASE [ARGS]`` and prints one JSON
line (``RESULT {...}``) that the test reads. The cases that run on one process
(all but a multi-worker ``two_moons``) can share one:
``python tests/distributed_cases.py several JSON`` runs the cases of
``{"key": [CASE, ARGS...], ...}`` in turn and prints one line per case,
``RESULT {"key": ..., "result": {...}}`` or ``RESULT {"key": ..., "error":
TRACEBACK}`` (TensorFlow is imported, and the training step converted by
autograph, once for all of them).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kocc.architectures import lipschitz_mlp  # noqa: E402
from kocc.distribute import (  # noqa: E402
    current_replica_seed,
    make_strategy,
    replica_seed,
    set_logical_cpus,
)
from kocc.models import OCSDF  # noqa: E402
from kocc.sampling import Ball  # noqa: E402

SEED = 3


def _report(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def _model(orthogonalization: str = "retraction", cls=OCSDF, **kwargs) -> OCSDF:
    model = cls(
        lipschitz_mlp(2, (32, 32), seed=0),
        Ball(4.0, shape=(2,)),
        seed=SEED,
        orthogonalization=orthogonalization,
        **kwargs,
    )
    model.compile(optimizer=tf.keras.optimizers.RMSprop(1e-2))
    return model


class TwoVirtualReplicas(OCSDF):
    """One device drawing the negatives two replicas draw (halves, replica seeds).

    ``negatives_offset`` shifts the replica index, to show that other draws
    give other weights.
    """

    negatives_offset = 0

    def sample_negatives(self, n, seed):
        half = n // 2
        step = seed[1]
        draws = [
            super(TwoVirtualReplicas, self).sample_negatives(
                half, replica_seed(SEED, step, r + self.negatives_offset, 2)
            )
            for r in range(2)
        ]
        return tf.concat(draws, 0)


def _weights(model: OCSDF) -> list[np.ndarray]:
    """The model's weights (with the cached kernels), not its metric trackers."""
    trackers = {id(v) for m in model.metrics for v in m.variables}
    return [np.asarray(w) for w in model.weights if id(w) not in trackers]


def _state(model: OCSDF) -> list[np.ndarray]:
    """Weights and optimizer variables."""
    return _weights(model) + [np.asarray(v) for v in model.optimizer.variables]


def _relative_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(
        float(np.max(np.abs(u - v)) / max(np.max(np.abs(u)), 1.0)) if u.size else 0.0
        for u, v in zip(a, b, strict=True)
    )


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(
        float(np.max(np.abs(u - v))) if u.size else 0.0
        for u, v in zip(a, b, strict=True)
    )


def equivalence(orthogonalization: str) -> dict:
    """Two steps of global batch 2B on two replicas vs on one device."""
    set_logical_cpus(2)
    x = np.random.default_rng(0).normal(size=(128, 2)).astype(np.float32)
    single = _model(orthogonalization, TwoVirtualReplicas)
    other_negatives = _model(orthogonalization, TwoVirtualReplicas)
    other_negatives.negatives_offset = 2
    strategy = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = _model(orthogonalization)
    start = single.get_weights()
    for model in (other_negatives, mirrored):
        model.set_weights(start)
    before = [v.numpy() for v in single.trainable_variables]
    for model in (single, other_negatives, mirrored):
        with model.distribute_strategy.scope():
            model.optimizer.build(model.optimized_variables())
        model.fit(x, batch_size=64, epochs=1, shuffle=False, verbose=0)
    return {
        "replicas": strategy.num_replicas_in_sync,
        "steps": int(mirrored.optimizer.iterations.numpy()),
        "max_diff": _max_diff(_weights(single), _weights(mirrored)),
        "optimizer_relative_diff": _relative_diff(
            [np.asarray(v) for v in single.optimizer.variables],
            [np.asarray(v) for v in mirrored.optimizer.variables],
        ),
        "moved": _max_diff(before, [v.numpy() for v in single.trainable_variables]),
        "other_negatives_diff": _max_diff(_weights(single), _weights(other_negatives)),
    }


class _ReplicaSpread(tf.keras.callbacks.Callback):
    """Largest difference between replicas of every kernel variable, per step."""

    def __init__(self, layers):
        super().__init__()
        self.layers = layers
        self.spread = []

    def on_train_batch_end(self, batch, logs=None):
        worst = 0.0
        for layer in self.layers:
            for name in ("kernel", "wbar", "u", "sig"):
                variable = getattr(layer, name, None)
                if variable is None:
                    continue
                values = [v.numpy() for v in variable.values]
                worst = max(
                    worst, *(float(np.max(np.abs(v - values[0]))) for v in values)
                )
        self.spread.append(worst)


def replicas(orthogonalization: str) -> dict:
    """Kernels identical on the replicas after each step; per-replica negatives."""
    set_logical_cpus(2)
    x = np.random.default_rng(1).normal(size=(256, 2)).astype(np.float32)
    strategy = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = _model(
            orthogonalization, updates_per_sampling=2, negatives_per_batch=16
        )
    spread = _ReplicaSpread(model._constrained)
    model.fit(x, batch_size=64, epochs=2, verbose=0, callbacks=[spread])
    # the negatives of step 7 on each replica, and on one device from the seeds
    draws = strategy.run(
        tf.function(lambda: model.sample_negatives(8, current_replica_seed(SEED, 7)))
    )
    per_replica = [d.numpy() for d in strategy.experimental_local_results(draws)]
    expected = [
        model.sample_negatives(8, replica_seed(SEED, 7, r, 2)).numpy() for r in range(2)
    ]
    return {
        "steps": len(spread.spread),
        "max_spread": max(spread.spread),
        "replicas_differ": float(np.max(np.abs(per_replica[0] - per_replica[1]))),
        "seed_reproduces": max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(per_replica, expected, strict=True)
        ),
        "loss": [float(v) for v in model.history.history["loss"]],
    }


class _StopAt(tf.keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def persistence() -> dict:
    """BackupAndRestore resume and .keras save/load of a mirrored model."""
    set_logical_cpus(2)
    x = np.random.default_rng(2).normal(size=(256, 2)).astype(np.float32)
    strategy = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    fit = dict(batch_size=64, epochs=4, shuffle=False, verbose=0)
    with strategy.scope():
        straight = _model(warmup_epochs=1)
        start = straight.get_weights()
        interrupted = _model(warmup_epochs=1)
        interrupted.set_weights(start)
    straight.fit(x, **fit)
    with tempfile.TemporaryDirectory() as tmp:
        backup = tf.keras.callbacks.BackupAndRestore(os.path.join(tmp, "backup"))
        try:
            interrupted.fit(x, callbacks=[backup, _StopAt(2)], **fit)
        except RuntimeError:
            pass
        with strategy.scope():
            resumed = _model(warmup_epochs=1)
        history = resumed.fit(x, callbacks=[backup], **fit)
        path = os.path.join(tmp, "model.keras")
        resumed.save(path)
        loaded = tf.keras.models.load_model(path)  # outside the strategy
        probe = np.random.default_rng(3).normal(size=(64, 2)).astype(np.float32)
        with strategy.scope():
            reloaded_in_scope = tf.keras.models.load_model(path)
        steps_before = int(reloaded_in_scope.optimizer.iterations.numpy())
        reloaded_in_scope.fit(x, batch_size=64, epochs=1, verbose=0)
        return {
            "resumed_epochs": len(history.history["loss"]),
            "resumed_epoch_counter": int(resumed._epoch.numpy()),
            "resumed_steps": int(resumed.optimizer.iterations.numpy()),
            "resume_vs_straight": _max_diff(_state(straight), _state(resumed)),
            "loaded_scores_diff": float(
                np.max(
                    np.abs(
                        loaded.predict(probe, verbose=0)
                        - resumed.predict(probe, verbose=0)
                    )
                )
            ),
            "loaded_type": type(loaded).__name__,
            "reloaded_steps_before": steps_before,
            "reloaded_steps_after": int(reloaded_in_scope.optimizer.iterations.numpy()),
            "metrics_logged": sorted(history.history),
        }


def xla_refused() -> dict:
    """``compile(jit_compile=True)`` of a model built under two replicas."""
    set_logical_cpus(2)
    strategy = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = OCSDF(lipschitz_mlp(2, (32, 32), seed=0), Ball(4.0, shape=(2,)))
        try:
            model.compile(optimizer="rmsprop", jit_compile=True)
        except ValueError as error:
            return {"error": str(error), "replicas": strategy.num_replicas_in_sync}
    return {"error": None, "replicas": strategy.num_replicas_in_sync}


def restart() -> dict:
    """Under two replicas, a model restarted as the network of another seed
    (``OCSDF.restart``) against a new model of that seed, five steps each.

    The other cases' network (2 x 32): the cases share a process, and
    TensorFlow's collectives of a new strategy there expect the shapes of the
    earlier strategies' (a mismatch aborts them)."""
    set_logical_cpus(2)
    strategy = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)

    def data(seed: int) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(x).shuffle(64, seed=seed).repeat()

    def new(seed: int) -> OCSDF:
        with strategy.scope():
            model = OCSDF(
                lipschitz_mlp(2, (32, 32), seed=seed), Ball(4.0, shape=(2,)), seed=seed
            )
            model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
        return model

    restarted = new(1)
    restarted.fit(data(1).batch(16), epochs=1, steps_per_epoch=5, verbose=0)
    with strategy.scope():
        weights = lipschitz_mlp(2, (32, 32), seed=2).get_weights()
    restarted.restart(weights, seed=2)
    restarted.fit(data(2).batch(16), epochs=1, steps_per_epoch=5, verbose=0)
    fresh = new(2)
    fresh.fit(data(2).batch(16), epochs=1, steps_per_epoch=5, verbose=0)
    return {
        "replicas": strategy.num_replicas_in_sync,
        "seed": restarted.seed,
        "steps": int(restarted.optimizer.iterations.numpy()),
        "max_diff": _max_diff(_state(restarted), _state(fresh)),
        "moved": _max_diff(restarted.backbone.get_weights(), weights),
    }


def two_moons(out_dir: str, steps: str, shards: str = "0", *overrides: str) -> dict:
    """A short fit of the two-moons recipe, on one process or as a worker.

    With ``TF_CONFIG`` set, this process is one worker of a
    ``MultiWorkerMirroredStrategy`` (each worker takes its share of every
    global batch of ``batch_size``); without, it trains alone for the same
    updates of the same batch (``overrides``: more recipe ``key=value``).
    With ``shards > 0`` the training set is written as that many TFRecord
    files (one copy per process) and read back by
    :func:`kocc.datasets.shards.sharded_dataset` (``AutoShardPolicy.FILE``:
    each worker reads its own files). The chief (or the lone process) writes
    ``model.keras`` into ``out_dir``, another worker into
    ``out_dir/worker_<i>``. Reports the AUROC on the recipe's test normals and
    anomalies and a fingerprint of the trained weights.
    """
    from kocc.datasets.shards import sharded_dataset, write_tfrecord_shards
    from kocc.distribute import is_chief
    from kocc.experiments.recipes import load_recipe
    from kocc.experiments.toy_experiment import toy_data
    from kocc.experiments.training import build_mlp_ocsdf
    from kocc.metrics import certified_auroc
    from kocc.training import fit_ocsdf, repeated_batches

    distributed = bool(os.environ.get("TF_CONFIG"))
    strategy = make_strategy("multi_worker" if distributed else "default")
    recipe_path = Path(__file__).parents[1] / "recipes" / "toy2d_two_moons.yaml"
    recipe = load_recipe(recipe_path, [f"training.steps={steps}", *overrides])
    tf.keras.utils.set_random_seed(recipe.seed)
    x_train, x_test, anomalies = toy_data(recipe)
    with strategy.scope():
        model = build_mlp_ocsdf(
            2, recipe.model, recipe.domain, recipe.training, seed=recipe.seed
        )
    chief = is_chief(strategy)
    task = strategy.cluster_resolver.task_id if distributed else 0
    if int(shards):
        files = write_tfrecord_shards(
            np.array_split(x_train, 8), Path(out_dir) / f"shards_{task}", int(shards)
        )
        batches = sharded_dataset(
            files, (2,), recipe.training.batch_size, shuffle_buffer=len(x_train)
        )
    else:
        batches = repeated_batches(
            x_train, recipe.training.batch_size, seed=recipe.seed
        )
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        batches = batches.with_options(options)
    report = fit_ocsdf(model, batches, epochs=1, steps_per_epoch=int(steps))
    target = Path(out_dir)
    if not chief:
        target = target / f"worker_{task}"
    target.mkdir(parents=True, exist_ok=True)
    model.save(target / "model.keras")
    weights = np.concatenate([np.ravel(w) for w in model.backbone.get_weights()])
    return {
        "chief": chief,
        "replicas": strategy.num_replicas_in_sync,
        "steps": int(model.optimizer.iterations.numpy()),
        "seconds": report.seconds,
        "auroc": certified_auroc(
            model.score_samples(x_test), model.score_samples(anomalies), 0.0
        ),
        "weights_norm": float(np.linalg.norm(weights.astype(np.float64))),
        "weights_sum": float(np.sum(weights.astype(np.float64))),
    }


def surface(out_dir: str) -> dict:
    """``run_surface`` of a sphere's points with the recipe's ``distribute``
    section (two logical CPU devices) and without: replicas, Chamfer, loss."""
    import trimesh

    from kocc.experiments.surface_pipeline import run_surface

    set_logical_cpus(2)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trimesh.creation.icosphere(4).export(out / "sphere.off")
    config = {
        "input": {"n_points": 2048},
        "model": {"widths": [64, 64]},
        "training": {"steps": 400, "epochs": 4, "batch_size": 256},
        "extraction": {"resolution": 40},
        "baseline": {"enabled": False},
        "metrics": {"n_samples": 5000},
        "render": {"enabled": False},
    }
    mirrored = dict(
        config, distribute={"strategy": "mirrored", "devices": ["/cpu:0", "/cpu:1"]}
    )
    result = {}
    for name, recipe in (("mirrored", mirrored), ("single", config)):
        metrics = run_surface(out / "sphere.off", out / name, recipe)["ocsdf"]
        result[name] = {
            key: metrics.get(key)
            for key in ("replicas", "chamfer", "hausdorff", "watertight", "error")
        }
    return result


CASES = {
    "surface": surface,
    "equivalence": equivalence,
    "replicas": replicas,
    "persistence": persistence,
    "xla_refused": xla_refused,
    "restart": restart,
    "two_moons": two_moons,
}


def several(cases: str) -> None:
    """Run the cases of the JSON ``{"key": [CASE, ARGS...]}`` in turn: one
    RESULT line each, with the case's result or the traceback of its error."""
    for key, (name, *args) in json.loads(cases).items():
        try:
            result = {"key": key, "result": CASES[name](*args)}
        except Exception:  # reported to the case's test, the next case runs
            result = {"key": key, "error": traceback.format_exc()}
        _report(result)


if __name__ == "__main__":
    if sys.argv[1] == "several":
        several(sys.argv[2])
    else:
        _report(CASES[sys.argv[1]](*sys.argv[2:]))
