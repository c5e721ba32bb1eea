"""The OCSDF model: a 1-Lipschitz network trained with ``model.fit`` on normal data.

See Béthune, Novello, Coiffier, Boissin, Serrurier, Vincenot, Picard, "Robust
One-Class Classification with Signed Distance Function using 1-Lipschitz Neural
Networks", ICML 2023.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

import kocc.activations  # noqa: F401  (registers kocc's sorting layers for loading)
from kocc.distribute import (
    ReplicaMean,
    cross_replica_call,
    current_replica_seed,
    global_average_loss,
    per_sample_loss,
)
from kocc.losses import OneClassHKR
from kocc.orthogonalization import (
    CHAIN_RULE,
    ORTHOGONALIZATIONS,
    RETRACTION,
    Orthogonalized,
    constrained_layers,
    kernel_gradients,
    orthogonalize,
    retract,
    sync_constrained_kernels,
)
from kocc.sampling import Domain, as_score_fn, draw_eta, newton_raphson_steps
from kocc.validation import check_batch

#: ``compile(jit_compile=True)`` refuses to build another XLA update when the
#: process has fewer free memory maps than this (``vm.max_map_count`` minus
#: the lines of ``/proc/self/maps``). XLA:CPU keeps every program it compiles
#: until the process exits, each in mappings of its own: one update of the
#: tabular network (3 x 64 FullSort) takes about 400 to 820 maps. Compiling past
#: the limit crashes the process: LLVM's allocation fails ("LLVM compilation
#: error: Cannot allocate memory"), the failed object is unmapped with its
#: unwind tables still registered, and the next C++ exception makes libgcc's
#: unwinder read them (a segmentation fault in ``libgcc_s``; docs/training.md).
XLA_MIN_FREE_MEMORY_MAPS = 8192

#: An upper estimate of the memory maps one XLA-compiled update takes, with the
#: programs of its network's scoring: measured 406 to 409 (a training loop)
#: and 423 to 819 (``kocc benchmark``) for the 3 x 64 tabular network. Used to
#: tell, before a job starts, how many such updates (models built and
#: compiled; :meth:`OCSDF.restart` compiles none) a process can still compile
#: (:func:`xla_updates_room`).
XLA_MAPS_PER_UPDATE = 1000


def memory_map_headroom() -> int | None:
    """Memory maps this process may still create: ``vm.max_map_count`` minus
    its current maps, or None where ``/proc`` does not tell (not Linux)."""
    try:
        with open("/proc/sys/vm/max_map_count", "rb") as f:
            limit = int(f.read())
        with open("/proc/self/maps", "rb") as f:
            used = sum(1 for _ in f)
    except (OSError, ValueError):
        return None
    return limit - used


def xla_updates_room() -> int | None:
    """How many more networks this process can compile with
    ``jit_compile=True`` before :func:`check_xla_memory_maps` refuses:
    ``(headroom - XLA_MIN_FREE_MEMORY_MAPS) // XLA_MAPS_PER_UPDATE``, at least
    0, or None where the headroom is unknown (:func:`memory_map_headroom`)."""
    headroom = memory_map_headroom()
    if headroom is None:
        return None
    return max(0, (headroom - XLA_MIN_FREE_MEMORY_MAPS) // XLA_MAPS_PER_UPDATE)


def check_xla_memory_maps() -> None:
    """Raise before an XLA program is built that could exhaust the process's
    memory maps (:data:`XLA_MIN_FREE_MEMORY_MAPS`), which would crash it."""
    headroom = memory_map_headroom()
    if headroom is None or headroom >= XLA_MIN_FREE_MEMORY_MAPS:
        return
    raise OSError(
        errno.ENOMEM,
        f"jit_compile=True: this process has {headroom} free memory maps "
        f"(vm.max_map_count), fewer than the {XLA_MIN_FREE_MEMORY_MAPS} kept for "
        "another XLA program. XLA keeps every program it compiled (about 400 to 820 "
        "maps per update of a small network) until the process exits, and "
        "compiling past the limit crashes the process with a segmentation "
        "fault. Train the remaining networks in a new process, raise "
        "vm.max_map_count (sysctl), or compile with jit_compile=False",
    )


@tf.keras.utils.register_keras_serializable("kocc")
class OCSDF(tf.keras.Model):
    r"""One-Class Signed Distance Function (paper Algorithm 3, "lazy" training).

    Wraps a 1-Lipschitz ``backbone`` f. ``fit`` takes normal samples only; each
    training step

    1. draws negatives ``z0 ~ U(domain)`` and moves them by ``nr_steps``
       Newton-Raphson steps toward ``f = loss.negative_level`` (``-margin`` for
       the hinge-KR loss; Algorithm 1; 0 steps during the first
       ``warmup_epochs`` epochs). With ``updates_per_sampling = K > 1`` the
       negatives are redrawn every K steps only and reused in between;
    2. computes the loss of the batch (y = +1) and the negatives (y = -1) in
       one forward pass, by default the hinge-KR loss
       :math:`\lambda\max(0, m - yf) - yf`;
    3. updates the parameters and keeps the constrained kernels orthogonal
       (:mod:`kocc.orthogonalization`): by default by a *retraction* after the
       update (warm-started Björck, no differentiation through it); with
       ``orthogonalization="chain_rule"`` by differentiating through one
       orthogonalization per step, as deel-lip's training-mode call does.

    All forward passes of a step read the cached constrained kernels
    (inference mode), so the kernels are orthogonalized once per step, not once
    per forward pass.

    The trained f approximates :math:`S + m`, with S the signed distance to the
    support of the data (positive inside): a normality score. Because f is
    1-Lipschitz, an l2 perturbation of size :math:`\epsilon` changes it by at most
    :math:`\epsilon`, which is what makes the scores certifiable. Either
    orthogonalization setting ends with deel-lip's own orthogonalization of the
    final kernels, so the network that predicts and exports has the same
    provable bound (:mod:`kocc.lipschitz_bound`).

    Logged per epoch: ``loss``, ``f_pos`` (mean f on the batch), ``f_neg`` (mean f
    on the negatives) and ``grad_norm_neg`` (mean :math:`\|\nabla f\|` on the
    negatives; close to 1 for a gradient-norm-preserving network).

    Args:
        backbone: a built Keras model with one output, made of deel-lip layers
            (e.g. :func:`kocc.architectures.lipschitz_mlp`), or any Keras model
            (e.g. an unconstrained baseline trained with another ``loss``).
        domain: where negatives are drawn (:class:`kocc.sampling.Box` or
            :class:`kocc.sampling.Ball`).
        margin: the hinge margin m > 0 of the default loss (default 0.05).
        lam: the hinge weight :math:`\lambda > 0` of the default loss (default 100).
        nr_steps: Newton-Raphson steps T >= 0 per sampling.
        warmup_epochs: epochs at the start with T = 0 (plain uniform negatives).
        updates_per_sampling: parameter updates K >= 1 per negative sampling.
        negatives_per_batch: negatives per step; ``None`` = as many as the batch
            holds positives. Must be an int when ``updates_per_sampling > 1``.
        seed: seed of the negatives' draws (stateless; combined with the step).
        loss: a Keras loss called as ``loss(y, f)`` with labels y = +1 (normal)
            and -1 (negative); the Newton-Raphson target is its
            ``negative_level`` attribute (0 if it has none). Default:
            :class:`kocc.losses.OneClassHKR` ``(margin, lam)``. Give either
            ``loss`` or ``margin``/``lam``, not both.
        orthogonalization: ``"retraction"`` (default, fast) or ``"chain_rule"``
            (see :mod:`kocc.orthogonalization`).
        **kwargs: passed to ``tf.keras.Model`` (e.g. ``name``).

    Raises:
        ValueError: on invalid hyper-parameters or a backbone that is not built,
            does not have one output, or contains training-dependent layers.
    """

    def __init__(
        self,
        backbone: tf.keras.Model,
        domain: Domain,
        margin: float | None = None,
        lam: float | None = None,
        nr_steps: int = 4,
        warmup_epochs: int = 0,
        updates_per_sampling: int = 1,
        negatives_per_batch: int | None = None,
        seed: int = 0,
        loss: tf.keras.losses.Loss | None = None,
        orthogonalization: str = RETRACTION,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if loss is not None and (margin is not None or lam is not None):
            raise ValueError(
                "give either loss= or margin=/lam= (the parameters of the default "
                "OneClassHKR loss), not both"
            )
        if loss is not None and not callable(loss):
            raise ValueError(f"loss must be a Keras loss, got {loss!r}")
        if orthogonalization not in ORTHOGONALIZATIONS:
            raise ValueError(
                f"orthogonalization must be one of {ORTHOGONALIZATIONS}, got "
                f"{orthogonalization!r}"
            )
        if not isinstance(domain, Domain):
            raise ValueError(f"domain must be a kocc.sampling Domain, got {domain!r}")
        if int(nr_steps) < 0:
            raise ValueError(f"nr_steps must be >= 0, got {nr_steps!r}")
        if int(warmup_epochs) < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs!r}")
        if int(updates_per_sampling) < 1:
            raise ValueError(
                f"updates_per_sampling must be >= 1, got {updates_per_sampling!r}"
            )
        if negatives_per_batch is not None and int(negatives_per_batch) < 1:
            raise ValueError(
                f"negatives_per_batch must be >= 1 or None, got {negatives_per_batch!r}"
            )
        if int(updates_per_sampling) > 1 and negatives_per_batch is None:
            raise ValueError(
                "updates_per_sampling > 1 reuses a fixed set of negatives: give "
                "negatives_per_batch as an int"
            )
        if not getattr(backbone, "built", False) or not backbone.inputs:
            raise ValueError(
                "backbone must be a built Keras model with a known input shape "
                "(e.g. start it with tf.keras.layers.Input(shape))"
            )
        out_shape = tuple(backbone.output_shape[1:])
        if out_shape not in ((1,), ()):
            raise ValueError(
                f"backbone must have a single output (n, 1), got (n, {out_shape})"
            )
        self.backbone = backbone
        self.domain = domain
        if loss is None:
            loss = OneClassHKR(
                margin=0.05 if margin is None else margin,
                lam=100.0 if lam is None else lam,
            )
        self.one_class_loss = loss
        self.orthogonalization = orthogonalization
        self.nr_steps = int(nr_steps)
        self.warmup_epochs = int(warmup_epochs)
        self.updates_per_sampling = int(updates_per_sampling)
        self.negatives_per_batch = (
            None if negatives_per_batch is None else int(negatives_per_batch)
        )
        self.feature_shape = tuple(int(s) for s in backbone.input_shape[1:])
        self.domain.resolve_shape(self.feature_shape)  # fail early on a mismatch
        self._constrained = constrained_layers(backbone)
        self._constrained_ids = {id(layer.kernel) for layer in self._constrained}
        # the epoch counter drives the warm-up; a callback added by fit() sets it
        self._epoch = tf.Variable(0, trainable=False, dtype=tf.int64, name="epoch")
        self._negatives = None
        # the optimizer's variables before its first update (restart())
        self._optimizer_start: list[np.ndarray] | None = None
        # compile(jit_compile=True) sets it to the XLA-compiled _update
        self._xla_update: Callable[[tf.Tensor], dict] | None = None
        if self.updates_per_sampling > 1:
            # one set per replica under a tf.distribute strategy
            self._negatives = tf.Variable(
                tf.zeros((self.negatives_per_batch, *self.feature_shape)),
                trainable=False,
                name="negatives",
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        # a variable, not a constant of the traced update: restart() gives the
        # compiled model a new network's seed without tracing it again. Created
        # last: a file saved before it existed holds the others in their order
        self._seed = tf.Variable(
            int(seed), trainable=False, dtype=tf.int64, name="seed"
        )
        self.loss_tracker = ReplicaMean(name="loss")
        self.f_pos_tracker = ReplicaMean(name="f_pos")
        self.f_neg_tracker = ReplicaMean(name="f_neg")
        self.grad_norm_tracker = ReplicaMean(name="grad_norm_neg")
        self.build((None, *self.feature_shape))

    # ------------------------------------------------------------------ config
    @property
    def seed(self) -> int:
        """Seed of the negatives' draws (:meth:`restart` sets a new one)."""
        return int(self._seed.numpy())

    @property
    def margin(self) -> float | None:
        """The loss's margin (``None`` for a loss without one)."""
        margin = getattr(self.one_class_loss, "margin", None)
        return None if margin is None else float(margin)

    @property
    def lam(self) -> float | None:
        """The loss's hinge weight (``None`` for a loss without one)."""
        lam = getattr(self.one_class_loss, "lam", None)
        return None if lam is None else float(lam)

    @property
    def negative_level(self) -> float:
        """The level set the Newton-Raphson steps move negatives to."""
        return float(getattr(self.one_class_loss, "negative_level", 0.0))

    def get_config(self) -> dict:
        return {
            "backbone": tf.keras.utils.serialize_keras_object(self.backbone),
            "domain": tf.keras.utils.serialize_keras_object(self.domain),
            "loss": tf.keras.utils.serialize_keras_object(self.one_class_loss),
            # informative (and what configs saved before ``loss`` existed hold)
            "margin": self.margin,
            "lam": self.lam,
            "nr_steps": self.nr_steps,
            "warmup_epochs": self.warmup_epochs,
            "updates_per_sampling": self.updates_per_sampling,
            "negatives_per_batch": self.negatives_per_batch,
            "seed": self.seed,
            "orthogonalization": self.orthogonalization,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> OCSDF:
        config = dict(config)
        config["backbone"] = tf.keras.utils.deserialize_keras_object(
            config["backbone"], custom_objects=custom_objects
        )
        config["domain"] = tf.keras.utils.deserialize_keras_object(
            config["domain"], custom_objects=custom_objects
        )
        if config.get("loss") is not None:
            config["loss"] = tf.keras.utils.deserialize_keras_object(
                config["loss"], custom_objects=custom_objects
            )
            config.pop("margin", None)
            config.pop("lam", None)
        return cls(**config)

    # ----------------------------------------------------------------- compile
    def compile(self, optimizer: Any = "rmsprop", **kwargs: Any) -> None:
        """Keras ``compile``; the loss is the model's own (``OCSDF(loss=...)``).

        ``jit_compile=True`` compiles the update of :meth:`train_step` (the
        negatives, the loss, the gradient step, the retraction) into one XLA
        program; the batch's NaN/inf check runs before it, outside XLA, which
        drops assertions. It pays for small networks, whose step is mostly
        TensorFlow's per-op dispatch (docs/training.md). XLA's
        stateless random ops draw other numbers than TensorFlow's kernels for
        the same seed, so the run differs from the plain step's and
        reproduces with its seed. Every compiled model's update is a program
        of its own that XLA keeps until the process exits, in memory maps of
        its own: a process holds about 70 to 150 of the tabular recipe's size
        (docs/training.md); networks trained on one model in turn
        (:meth:`restart`) share its program. Compiling past
        ``vm.max_map_count`` would crash it, so ``jit_compile=True`` is
        refused once fewer than :data:`XLA_MIN_FREE_MEMORY_MAPS` maps are
        left (:func:`check_xla_memory_maps`).

        Raises:
            ValueError: if a ``loss`` is given here (give ``loss=``, or
                ``margin=`` and ``lam=``, to ``OCSDF(...)`` instead), or
                ``jit_compile=True`` under a strategy of several replicas.
            OSError: (``ENOMEM``) ``jit_compile=True`` with fewer than
                :data:`XLA_MIN_FREE_MEMORY_MAPS` free memory maps.
        """
        if kwargs.get("loss") is not None:
            raise ValueError(
                "OCSDF trains with its own loss: pass loss= (or margin= and lam= "
                "of the default OneClassHKR) to OCSDF(...) instead of loss= to "
                "compile()"
            )
        kwargs.pop("loss", None)
        jit_compile = bool(kwargs.pop("jit_compile", None))
        if jit_compile and self.distribute_strategy.num_replicas_in_sync > 1:
            raise ValueError(
                "jit_compile=True compiles one replica's update into one XLA "
                "program, which cannot hold the cross-replica write of the "
                f"orthogonal kernels; under a strategy of "
                f"{self.distribute_strategy.num_replicas_in_sync} replicas, "
                "compile with jit_compile=False"
            )
        if jit_compile:
            check_xla_memory_maps()
        # Keras would compile the whole train_step, where XLA drops the
        # batch's NaN check (tf.debugging asserts are ignored under XLA); OCSDF
        # compiles the update only (train_step), and records the choice in the
        # compile config so that a reloaded model trains the same way
        super().compile(optimizer=optimizer, jit_compile=False, **kwargs)
        self._compile_config.config["jit_compile"] = jit_compile
        self._xla_update = (
            tf.function(self._update, jit_compile=True, reduce_retracing=True)
            if jit_compile
            else None
        )

    @property
    def xla_update(self) -> bool:
        """Whether :meth:`train_step` runs its update as one XLA program
        (``compile(jit_compile=True)``)."""
        return self._xla_update is not None

    def compile_from_config(self, config: dict) -> None:
        """Re-compile from a saved compile config (``tf.keras.models.load_model``).

        Keras skips this step for models that override ``compile``; OCSDF's
        override only rejects ``loss``, so the saved config (optimizer, metrics) is
        replayed. The optimizer is then built on :meth:`optimized_variables`, in
        the order :meth:`train_step` passes them, so that the saved optimizer
        state (slot variables are saved and loaded by position) lands on the
        right variables and ``fit`` resumes where it stopped.
        """
        self.compile(**tf.keras.saving.deserialize_keras_object(config))
        if isinstance(self.optimizer, tf.keras.optimizers.Optimizer) and self.built:
            self.optimizer.build(self.optimized_variables())

    def optimized_variables(self) -> list[tf.Variable]:
        """The variables the optimizer updates, in the order it sees them.

        The constrained layers' kernels first, then the other trainable variables
        (biases, unconstrained layers).
        """
        kernels = [layer.kernel for layer in self._constrained]
        direct = [
            v for v in self.trainable_variables if id(v) not in self._constrained_ids
        ]
        return [*kernels, *direct]

    @property
    def metrics(self) -> list:
        return [
            self.loss_tracker,
            self.f_pos_tracker,
            self.f_neg_tracker,
            self.grad_norm_tracker,
        ]

    # --------------------------------------------------------------- forward
    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Normality score f(x), shape ``(n, 1)`` (positive = normal)."""
        return self.backbone(inputs, training=training)

    def sync_constrained_kernels(self) -> None:
        """Recompute the cached constrained kernels from the current parameters.

        Inference-mode calls (``predict``, ``evaluate``, serving) read the cached
        kernels; after an optimizer update they are one step behind until this
        runs. ``fit``, ``evaluate`` and ``predict`` call it themselves.
        """
        if self._constrained:
            with self.distribute_strategy.scope():
                self._sync_graph()

    @tf.function(autograph=False)
    def _sync_graph(self) -> None:
        sync_constrained_kernels(self._constrained)

    @tf.function(autograph=False)
    def _retract_graph(self) -> None:
        # the start of fit: deel-lip's own normalization, from any kernel
        retract(self._constrained, warm=False)

    def load_own_variables(self, store: Any) -> None:
        """Keras loading of the model's own variables (epoch, kept negatives,
        seed); a file saved before the seed was a variable lacks the last one,
        and the seed stays the config's (the same value)."""
        own = self._trainable_weights + self._non_trainable_weights
        if own and own[-1] is self._seed and len(store.keys()) == len(own) - 1:
            for index, variable in enumerate(own[:-1]):
                variable.assign(store[f"{index}"])
            return
        super().load_own_variables(store)

    # --------------------------------------------------------------- restart
    def _record_optimizer_start(self) -> None:
        if (
            self._optimizer_start is None
            and int(self.optimizer.iterations.numpy()) == 0
        ):
            self._optimizer_start = [v.numpy() for v in self.optimizer.variables]

    def restart(self, backbone_weights: list[np.ndarray], seed: int) -> None:
        """Start over as a new network, keeping the compiled update.

        The model takes the state a new ``OCSDF`` of the same backbone
        architecture, settings and domain, built with ``seed`` and compiled with
        the same optimizer, has before its first step: the backbone's weights
        become ``backbone_weights`` (a new backbone's ``get_weights()``, the
        orthogonal kernels' cached values included), the negatives' seed
        ``seed``, the epoch counter 0, the kept negatives (``updates_per_sampling
        > 1``) zero, and the optimizer's variables (step counter, slots) their
        values before its first update. The traced update and, with
        ``jit_compile=True``, its XLA programs are kept: the next ``fit`` does not
        trace or compile again, and trains as the new model would, to the bit
        (tested). An ensemble of networks of one architecture (the tabular
        benchmark's ``training.members``) thus pays for one compilation, and
        keeps one XLA program instead of one per network.

        Args:
            backbone_weights: the new backbone's weights, in ``get_weights()``
                order.
            seed: the new network's seed of the negatives.

        Raises:
            ValueError: if the weights do not match the backbone (count or
                shapes), or the optimizer has taken steps without its start
                being recorded (a model loaded mid-training: build a new one).
        """
        shapes = [tuple(w.shape) for w in self.backbone.weights]
        given = [tuple(np.shape(w)) for w in backbone_weights]
        if given != shapes:
            raise ValueError(
                f"restart needs weights of the backbone's shapes {shapes}, got "
                f"{given}"
            )
        optimizer = self.optimizer
        if optimizer is not None and self._optimizer_start is None:
            if optimizer.variables and int(optimizer.iterations.numpy()) > 0:
                raise ValueError(
                    "restart cannot reset an optimizer that took steps before its "
                    "start was recorded (e.g. a reloaded model): build a new OCSDF"
                )
        with self.distribute_strategy.scope():
            self.backbone.set_weights(backbone_weights)
            self._seed.assign(int(seed))
            self._epoch.assign(0)
            if self._negatives is not None:
                self._negatives.assign(tf.zeros_like(self._negatives))
            if self._optimizer_start is not None:
                for variable, value in zip(
                    optimizer.variables, self._optimizer_start, strict=True
                ):
                    variable.assign(value)

    # ------------------------------------------------------------ negatives
    def sample_negatives(self, n: int | tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Draw ``n`` negatives: uniform in the domain, then Newton-Raphson.

        Uses the cached constrained kernels (inference mode), so call it after
        :meth:`sync_constrained_kernels` (the training step does).

        Args:
            n: number of negatives.
            seed: ``[2]`` int seed; split into the draw's and the eta's seeds.
        """
        seeds = tf.random.experimental.stateless_split(seed, 2)
        z0 = self.domain.sample(n, seeds[0], shape=self.feature_shape)
        steps = tf.where(
            self._epoch < self.warmup_epochs, 0, self.nr_steps
        )  # T = 0 during warm-up
        eta = draw_eta(n, seeds[1])
        return newton_raphson_steps(
            as_score_fn(self.backbone),
            z0,
            steps,
            self.negative_level,
            eta,
            self.domain.project,
        )

    def _step_seed(self) -> tf.Tensor:
        # (seed, step) on one device; (seed, step * R + replica) on R replicas
        return current_replica_seed(self._seed, self.optimizer.iterations)

    def _negatives_for_step(self, n_pos: tf.Tensor) -> tf.Tensor:
        if self._negatives is None:
            n = n_pos if self.negatives_per_batch is None else self.negatives_per_batch
            return self.sample_negatives(n, self._step_seed())
        refresh = tf.equal(self.optimizer.iterations % self.updates_per_sampling, 0)
        return tf.cond(
            refresh,
            lambda: self._negatives.assign(
                self.sample_negatives(self.negatives_per_batch, self._step_seed())
            ).read_value(),
            lambda: self._negatives.read_value(),
        )

    # ------------------------------------------------------------- training
    def train_step(self, data: Any) -> dict:
        """One update (the paper's Algorithm 3): negatives, loss, gradient step.

        The batch is checked for NaN/inf here; the rest (:meth:`_update`) runs as
        one XLA program when the model was compiled with ``jit_compile=True``.
        """
        x = data[0] if isinstance(data, tuple) else data
        x = tf.cast(x, tf.float32)
        x = tf.debugging.assert_all_finite(x, "training batch contains NaN or inf")
        update = self._xla_update or self._update
        return update(x)

    def _update(self, x: tf.Tensor) -> dict:
        n_pos = tf.shape(x)[0]
        chain_rule = self.orthogonalization == CHAIN_RULE

        # 1. chain rule: one orthogonalization per step, recorded for the VJP.
        #    Retraction: the cached kernels are already those of the parameters.
        if chain_rule:
            with tf.GradientTape() as orth_tape:
                orthos = [orthogonalize(layer) for layer in self._constrained]
            # written once for all replicas (kocc.distribute.cross_replica_call)
            cross_replica_call(
                lambda *values: [
                    Orthogonalized(o.layer, *v).assign()
                    for o, v in zip(orthos, values, strict=True)
                ],
                *[(o.wbar, o.u, o.sigma) for o in orthos],
            )
        # 2. negatives with the up-to-date constrained kernels
        z = tf.stop_gradient(self._negatives_for_step(n_pos))
        n_neg = tf.shape(z)[0]
        # 3. positives and negatives in one forward pass
        wbar_vars = [layer.wbar for layer in self._constrained]
        direct_vars = self.optimized_variables()[len(self._constrained) :]
        with tf.GradientTape() as tape:
            tape.watch(wbar_vars)
            tape.watch(z)
            f = tf.reshape(self.backbone(tf.concat([x, z], 0), training=False), [-1])
            y = tf.concat([tf.ones([n_pos]), -tf.ones([n_neg])], 0)
            # averaged over the global batch (all replicas' samples)
            loss, mean_loss = global_average_loss(
                per_sample_loss(self.one_class_loss, y, f)
            )
            if self.backbone.losses:
                penalty = tf.add_n(self.backbone.losses)
                loss += tf.nn.scale_regularization_loss(penalty)
                mean_loss += penalty
        grads = tape.gradient(loss, [*wbar_vars, *direct_vars, z, f])
        n_wbar, n_direct = len(wbar_vars), len(direct_vars)
        wbar_grads = grads[:n_wbar]
        direct_grads = grads[n_wbar : n_wbar + n_direct]
        grad_z, grad_f = grads[-2], grads[-1]
        kernels = [layer.kernel for layer in self._constrained]
        if chain_rule:
            kernel_grads = orth_tape.gradient(
                [o.wbar for o in orthos], kernels, output_gradients=wbar_grads
            )
        else:
            kernel_grads = kernel_gradients(self._constrained, wbar_grads)
        self.optimizer.apply_gradients(
            [
                (g, v)
                for g, v in zip(
                    [*kernel_grads, *direct_grads],
                    [*kernels, *direct_vars],
                    strict=True,
                )
                if g is not None
            ]
        )
        # 4. retraction: back onto the orthogonal kernels, warm-started
        #    (once for all replicas: the kernels stay identical on every one)
        if not chain_rule:
            cross_replica_call(lambda: retract(self._constrained))

        # dL/dz_i = dL/df_i * grad f(z_i), and dL/df_i != 0 for every negative
        # of a hinge-KR loss (dL/df_i = 1/N or (1 + lam)/N, up to the sign)
        axes = list(range(1, len(z.shape)))
        grad_norm = tf.sqrt(tf.reduce_sum(grad_z * grad_z, axis=axes)) / tf.abs(
            grad_f[n_pos:]
        )
        self.loss_tracker.update_state(mean_loss)
        self.f_pos_tracker.update_state(f[:n_pos])
        self.f_neg_tracker.update_state(f[n_pos:])
        self.grad_norm_tracker.update_state(grad_norm)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data: Any) -> dict:
        """Evaluate on normal samples, or on labelled samples ``(x, y)``, y = ±1."""
        if isinstance(data, tuple) and len(data) > 1 and data[1] is not None:
            x, y = data[0], data[1]
        else:
            x = data[0] if isinstance(data, tuple) else data
            y = tf.ones(tf.shape(x)[:1])
        f = tf.reshape(self.backbone(tf.cast(x, tf.float32), training=False), [-1])
        y = tf.reshape(tf.cast(y, tf.float32), [-1])
        self.loss_tracker.update_state(self.one_class_loss(y, f))
        positive = y > 0
        self.f_pos_tracker.update_state(tf.boolean_mask(f, positive))
        self.f_neg_tracker.update_state(tf.boolean_mask(f, tf.logical_not(positive)))
        return {m.name: m.result() for m in self.metrics[:3]}

    # ----------------------------------------------------- Keras entry points
    def _checked(self, x: Any, name: str) -> Any:
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            spec = spec[0] if isinstance(spec, tuple) else spec
            if tuple(spec.shape[1:]) != self.feature_shape:
                raise ValueError(
                    f"{name} yields samples of shape {tuple(spec.shape[1:])} but the "
                    f"model was built for {self.feature_shape}"
                )
            return x
        if isinstance(x, (np.ndarray, list, tf.Tensor)):
            return check_batch(x, self.feature_shape, name)
        return x

    def fit(self, x: Any = None, y: Any = None, **kwargs: Any):
        """Keras ``fit`` on normal samples ``x`` (no labels needed).

        Validates ``x`` (rank, feature shape, emptiness, NaN/inf), keeps the epoch
        counter for the warm-up, and leaves the cached constrained kernels in
        sync with the final parameters.

        Raises:
            ValueError: for invalid ``x`` (the message names the problem).
        """
        x = self._checked(x, "x")
        with self.distribute_strategy.scope():  # writes reach every replica
            if self.orthogonalization == RETRACTION and self._constrained:
                # start on the constraint set: kernel <- wbar / c (same function)
                self._retract_graph()
            if isinstance(self.optimizer, tf.keras.optimizers.Optimizer):
                # slots in optimized_variables() order, before BackupAndRestore
                # restores them (saved optimizer state is matched by position)
                self.optimizer.build(self.optimized_variables())
                self._record_optimizer_start()
        callbacks = list(kwargs.pop("callbacks", None) or [])
        callbacks.append(_EpochCounter(self._epoch))
        try:
            return super().fit(x, y, callbacks=callbacks, **kwargs)
        finally:
            self.sync_constrained_kernels()

    def evaluate(self, x: Any = None, y: Any = None, **kwargs: Any):
        self.sync_constrained_kernels()
        return super().evaluate(self._checked(x, "x"), y, **kwargs)

    def predict(self, x: Any, **kwargs: Any) -> np.ndarray:
        """Normality scores ``f(x)``, shape ``(n, 1)``, from the current weights."""
        self.sync_constrained_kernels()
        return super().predict(self._checked(x, "x"), **kwargs)

    def score_samples(self, x: Any, batch_size: int = 4096) -> np.ndarray:
        """Normality scores ``f(x)`` as a 1-D array (higher = more normal)."""
        return self.predict(x, batch_size=batch_size, verbose=0).reshape(-1)


class _EpochCounter(tf.keras.callbacks.Callback):
    """Keeps the model's epoch variable equal to the epoch being trained."""

    def __init__(self, variable: tf.Variable) -> None:
        super().__init__()
        self.variable = variable

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.variable.assign(epoch)
