"""OCSDF under ``tf.distribute``: replica seeds, global-batch loss, one kernel write.

Keras trains a model under a :class:`tf.distribute.Strategy` by running its
``train_step`` once per replica (one device, or one device of one worker) on
that replica's slice of the global batch, then summing the replicas'
gradients. Three things of the OCSDF step need care there, and the helpers of
this module are what :class:`kocc.models.OCSDF` uses for them:

* **the loss is averaged over the global batch** (Keras' custom-training
  guide): each replica divides the *sum* of its per-sample losses by the
  number of samples of all replicas (:func:`global_average_loss`), so the
  summed gradients are those of the mean over the global batch;
* **each replica draws its own negatives**: the draw of step ``t`` on replica
  ``r`` of ``R`` is seeded by ``(seed, t * R + r)`` (:func:`replica_seed`).
  With one replica this is ``(seed, t)``, the seed of a single-device run, and
  for a given seed and replica count the draws reproduce;
* **the constrained kernels are written once, for all replicas**: the
  retraction (or the chain rule's cached ``wbar``) writes deel-lip's
  ``kernel``/``wbar``/``u``/``sig`` variables. Inside a replica those are
  mirrored variables that may not be assigned per replica; the write runs in
  the cross-replica context (:func:`cross_replica_call`), once, from the
  first replica's values, and every replica receives the same kernels.

Without a strategy (the default strategy, one replica) all helpers reduce to
what the single-device step did before, with nothing added to its graph.

:func:`make_strategy` builds the strategies by name (``"default"``,
``"mirrored"``, ``"multi_worker"``) and :func:`set_logical_cpus` splits the CPU
into logical devices, which is how the tests and the throughput benchmark run
two replicas on one machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

#: Strategy names of :func:`make_strategy` (and of a recipe's ``distribute``).
STRATEGIES = ("default", "mirrored", "multi_worker")


# ------------------------------------------------------------------ replicas
def num_replicas() -> int:
    """Replicas in sync of the current replica context (1 outside a strategy)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None:  # cross-replica context
        return int(tf.distribute.get_strategy().num_replicas_in_sync)
    return int(ctx.num_replicas_in_sync)


def replica_seed(
    seed: int | tf.Tensor,
    step: int | tf.Tensor,
    replica_id: int | tf.Tensor = 0,
    replicas: int = 1,
) -> tf.Tensor:
    """The ``[2]`` int64 stateless seed ``(seed, step * replicas + replica_id)``.

    Distinct for every (step, replica) pair of a run, and equal to
    ``(seed, step)`` with one replica.
    """
    step = tf.cast(step, tf.int64)
    if replicas > 1:
        step = step * replicas + tf.cast(replica_id, tf.int64)
    return tf.stack([tf.cast(seed, tf.int64), step])


def current_replica_seed(seed: int, step: int | tf.Tensor) -> tf.Tensor:
    """:func:`replica_seed` of the replica that runs this code (inside a step)."""
    ctx = tf.distribute.get_replica_context()
    replicas = num_replicas()
    replica_id = ctx.replica_id_in_sync_group if replicas > 1 else 0
    return replica_seed(seed, step, replica_id, replicas)


def global_average_loss(per_sample: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    r"""The replica's share of the mean loss over the global batch, and that mean.

    Returns ``(loss, mean)``. ``loss = sum_i l_i / N`` with N the number of
    samples of all replicas (summed across them, so an uneven last batch is
    exact): the gradients the strategy sums over replicas are the gradients of
    the global mean (``tf.nn.compute_average_loss``). ``mean = loss * R`` is
    what a loss tracker averages over the R replicas: their average is the
    global mean. With one replica both are the plain mean.

    Raises:
        ValueError: if ``per_sample`` is not one value per sample (rank 1).
    """
    if per_sample.shape.rank != 1:
        raise ValueError(
            "the loss must return one value per sample (shape (n,)) to be "
            f"averaged over the global batch, got shape {per_sample.shape}"
        )
    replicas = num_replicas()
    count = tf.shape(per_sample)[0]
    if replicas > 1:
        count = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, count
        )
    loss = tf.nn.compute_average_loss(per_sample, global_batch_size=count)
    mean = loss * replicas if replicas > 1 else loss
    return loss, mean


def per_sample_loss(loss: Callable, y: tf.Tensor, f: tf.Tensor) -> tf.Tensor:
    """The unreduced values of ``loss`` (a Keras loss's ``call``), shape ``(n,)``.

    A Keras loss's own reduction is refused inside a replica
    (``Reduction.AUTO``); its per-sample values are reduced by
    :func:`global_average_loss` instead.
    """
    if isinstance(loss, tf.keras.losses.Loss):
        values = loss.call(y, f)
    else:
        values = loss(y, f)
    values = tf.convert_to_tensor(values)
    if values.shape.rank is not None and values.shape.rank > 1:
        values = tf.reshape(values, [tf.shape(values)[0], -1])
        values = tf.reduce_mean(values, axis=-1)
    return values


def cross_replica_call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` once in the cross-replica context.

    ``args`` are (nested lists of) tensors; anything else reaches ``fn`` by
    closure. Inside a replica (a strategy's ``train_step``), ``fn`` runs once
    per worker through ``merge_call``, with the first replica's values of
    ``args``; its writes to mirrored variables then go to every replica. In the
    cross-replica context, or without a strategy, it simply runs (the default
    strategy's ``merge_call`` adds nothing to the graph).
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        return fn(*args)

    def merged(strategy, *values):
        first = tf.nest.map_structure(
            lambda v: strategy.experimental_local_results(v)[0], values
        )
        return fn(*first)

    return ctx.merge_call(merged, args=args)


class ReplicaMean(tf.keras.metrics.Mean):
    """``tf.keras.metrics.Mean`` whose saved state also reloads in a strategy scope.

    A mean's ``total``/``count`` are summed over replicas (sync-on-read); their
    cross-replica ``assign`` divides the value by the replica count, which
    tf-keras' ``.keras`` loader hands over as an HDF5 dataset that cannot be
    divided. The values are read into arrays first.
    """

    def load_own_variables(self, store) -> None:
        super().load_own_variables({key: np.asarray(store[key]) for key in store})


# ---------------------------------------------------------------- strategies
def set_logical_cpus(count: int) -> list:
    """Split the first CPU into ``count`` logical devices (before TF starts).

    The logical devices share the machine's cores: replicas on them measure the
    strategy's overhead, not a speed-up.

    Raises:
        ValueError: if ``count < 1``.
        RuntimeError: if TensorFlow has already initialized its devices with
            another split.
    """
    if int(count) < 1:
        raise ValueError(f"count must be >= 1, got {count!r}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(int(count))]
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != int(count):
            raise
    return tf.config.list_logical_devices("CPU")


def make_strategy(
    name: str = "default",
    devices: Sequence[str] | None = None,
    communication: str = "auto",
) -> tf.distribute.Strategy:
    """A :class:`tf.distribute.Strategy` by name.

    Args:
        name: ``"default"`` (no distribution: ``tf.distribute.get_strategy()``),
            ``"mirrored"`` (the devices of one machine:
            ``MirroredStrategy(devices)``, all GPUs when ``devices`` is None) or
            ``"multi_worker"`` (``MultiWorkerMirroredStrategy``, the cluster
            described by the ``TF_CONFIG`` environment variable).
        devices: the mirrored strategy's devices, e.g. ``["/gpu:0", "/gpu:1"]``.
        communication: collective implementation of ``multi_worker``:
            ``"auto"``, ``"ring"`` (gRPC) or ``"nccl"``.

    Raises:
        ValueError: unknown ``name`` or ``communication``, devices given to a
            strategy that does not take them, or ``multi_worker`` without a
            valid ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}: expected one of {STRATEGIES}")
    if devices is not None and name != "mirrored":
        raise ValueError(f"devices are chosen by the {name!r} strategy, not given")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(
            devices=list(devices) if devices else None
        )
    implementations = {
        "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
        "ring": tf.distribute.experimental.CommunicationImplementation.RING,
        "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
    }
    if communication not in implementations:
        raise ValueError(
            f"unknown communication {communication!r}: expected one of "
            f"{sorted(implementations)}"
        )
    check_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=implementations[communication]
        )
    )


def check_tf_config(environ: dict | None = None) -> dict:
    """The parsed ``TF_CONFIG`` of a multi-worker run, or a clear error.

    Raises:
        ValueError: ``TF_CONFIG`` unset, not JSON, without ``cluster.worker``
            or with a ``task`` that is not one of the listed workers.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "multi_worker needs the TF_CONFIG environment variable, e.g. "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from err
    workers = config.get("cluster", {}).get("worker")
    task = config.get("task", {})
    if not workers:
        raise ValueError("TF_CONFIG has no cluster.worker list of host:port")
    kind, index = task.get("type"), task.get("index")
    if not (
        (kind == "chief" and config["cluster"].get("chief"))
        or (kind == "worker" and isinstance(index, int) and 0 <= index < len(workers))
    ):
        raise ValueError(
            f"TF_CONFIG task {task!r} is not one of the {len(workers)} workers"
        )
    return config


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run's outputs (models, reports).

    True without multi-worker training; with ``MultiWorkerMirroredStrategy``,
    true on the chief (worker 0 when the cluster has no ``chief`` task).
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (
        task_type == "worker"
        and task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )
