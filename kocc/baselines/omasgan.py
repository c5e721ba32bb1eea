r"""OMASGAN (Dionelis et al.): boundary samples and an anomaly discriminator.

"OoD Minimum Anomaly Score GAN for Sample Generation on the Boundary". Three
tasks (paper Section 2), run one after the other by :meth:`OMASGAN.fit`:

1. **GAN on the normal data** (eq. (1)-(2)): an f-GAN in its variational form,
   :math:`\min_G\max_D E_x g_f(V_D(x)) - E_z f^*(g_f(V_D(G(z))))`.
2. **Boundary generator** B (eq. (3)-(5)), initialised from G:

   .. math::
       \min_{\theta_b} -m(B, G) + \mu\, d(B, G) + \nu\, s(B, z),

   with :math:`m` the f-divergence of Task 1 estimated with the frozen Task-1
   critic (only its B-dependent term :math:`-E_z f^*(g_f(V_D(B(z))))` moves),
   :math:`d(B(z_i), G) = \min_{j \le Q}\|B(z_i) - G(z_j)\|_2` (eq. (4)) and the
   dispersion :math:`s(B(z_i), z_i) = \frac1{N-1}\sum_{j\ne i}
   \|z_i - z_j\|_2 / \|B(z_i) - B(z_j)\|_2` (eq. (5)), both averaged over the
   batch.
3. **Negative retraining** (eq. (6)): G' (initialised from G) and a critic C,
   :math:`\min_{G'}\max_C E\log(1 - C(G'(z))) + \alpha E\log C(x)
   + \beta E\log(1 - C(B(z))) + \gamma E\log C(G(z))`; then the **anomaly
   discriminator** J (eq. (7)), :math:`\max_J E\log J(B(z))
   + \delta E\log(1 - J(x)) + (1 - \delta) E\log(1 - J(G'(z)))`.

The anomaly score is J (eq. (8) with :math:`\lambda = 0`). ``call`` returns
the negated logit of J, so that, as in the rest of kocc, *higher means more
normal*.

Deviations from the paper, named: dense networks (the paper uses CNNs with
batch normalization for images), an f-GAN (``divergence`` = ``"gan"``
(Jensen-Shannon, eq. (1)), ``"kl"`` or ``"pearson"``) instead of KLWGAN, the
non-saturating generator losses, and no fD term at inference
(:math:`\lambda = 0`). J is trained after G', against the final (frozen) G'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from kocc.validation import check_batch


def _f_gan_terms(divergence: str):
    """``(g_f, f* o g_f)`` of the f-GAN variational bound (Nowozin et al. 2016).

    GAN: :math:`g_f(v) = -\\log(1 + e^{-v})`, :math:`f^*(t) = -\\log(1 - e^t)`,
    so :math:`f^*(g_f(v)) = \\log(1 + e^v)`; KL: :math:`g_f(v) = v`,
    :math:`f^*(t) = e^{t - 1}`; Pearson: :math:`g_f(v) = v`,
    :math:`f^*(t) = t^2/4 + t`.
    """
    if divergence == "gan":  # Jensen-Shannon up to constants, eq. (1)-(2)
        return (lambda v: -tf.nn.softplus(-v)), tf.nn.softplus
    if divergence == "kl":
        return (lambda v: v), (lambda v: tf.exp(v - 1.0))
    if divergence == "pearson":
        return (lambda v: v), (lambda v: 0.25 * v * v + v)
    raise ValueError(
        f"unknown divergence {divergence!r}: expected 'gan', 'kl' or 'pearson'"
    )


DIVERGENCES: tuple[str, ...] = ("gan", "kl", "pearson")


def dense_network(
    input_dim: int,
    widths: Sequence[int],
    output_dim: int,
    output_activation: str | None = None,
    seed: int = 0,
    name: str = "dense",
) -> tf.keras.Sequential:
    """An MLP with leaky-ReLU (0.2) hidden layers, for generators and critics."""
    layers: list[tf.keras.layers.Layer] = [tf.keras.layers.Input((int(input_dim),))]
    for i, width in enumerate(widths):
        layers += [
            tf.keras.layers.Dense(
                int(width),
                kernel_initializer=tf.keras.initializers.GlorotUniform(seed + i),
            ),
            tf.keras.layers.LeakyReLU(0.2),
        ]
    layers.append(
        tf.keras.layers.Dense(
            int(output_dim),
            activation=output_activation,
            kernel_initializer=tf.keras.initializers.GlorotUniform(seed + 99),
        )
    )
    return tf.keras.Sequential(layers, name=name)


def min_distance(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """:math:`\\min_j \\|a_i - b_j\\|_2` for each row of ``a`` (eq. (4)), ``(n,)``."""
    sq = (
        tf.reduce_sum(a * a, 1)[:, None]
        - 2.0 * tf.matmul(a, b, transpose_b=True)
        + tf.reduce_sum(b * b, 1)[None, :]
    )
    return tf.sqrt(tf.maximum(tf.reduce_min(sq, axis=1), 1e-12))


def pairwise_distances(a: tf.Tensor) -> tf.Tensor:
    """Euclidean distances between the rows of ``a``, ``(n, n)``, 0 on the diagonal."""
    sq = tf.reduce_sum(a * a, 1)
    d2 = sq[:, None] - 2.0 * tf.matmul(a, a, transpose_b=True) + sq[None, :]
    n = tf.shape(a)[0]
    off = 1.0 - tf.eye(n)
    return tf.sqrt(tf.maximum(d2, 1e-12)) * off


def dispersion(b: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    """The scattering measure s of eq. (5), averaged over the batch (scalar)."""
    n = tf.cast(tf.shape(z)[0], tf.float32)
    ratio = pairwise_distances(z) / (pairwise_distances(b) + tf.eye(tf.shape(b)[0]))
    return tf.reduce_sum(ratio) / (n * (n - 1.0))


#: Settings of :class:`OMASGAN` for the 2-D toys (the comparison figure of
#: docs/competitors.md and the tests): small MLPs, a short three-task schedule.
TOY_SETTINGS: dict = dict(
    latent_dim=4,
    generator_widths=(64, 64),
    critic_widths=(64, 64),
    num_reference=512,
    mu=1.0,
    learning_rate=1e-3,
    task_epochs=(60, 30, 30),
)


@tf.keras.utils.register_keras_serializable("kocc")
class OMASGAN(tf.keras.Model):
    r"""OMASGAN: GAN, boundary generator, negative retraining, anomaly discriminator.

    ``fit(x)`` runs the three tasks on normal samples ``x`` with
    ``task_epochs`` epochs each (Task 3 splits its epochs between G'/C and J);
    ``fit(x, task=k, epochs=e)`` runs one task. ``call`` returns the normality
    score :math:`-\mathrm{logit}\,J(x)`, shape ``(n, 1)``.
    :meth:`sample_boundary` draws OMAS samples B(z), :meth:`sample_normal` G(z).

    Args:
        input_dim: number of features (images are flattened by the caller).
        latent_dim: dimension l of the Gaussian latent :math:`z \sim N(0, I_l)`.
        generator_widths: hidden widths of G, B and G'.
        critic_widths: hidden widths of D, C and J.
        output_activation: last activation of the generators (``"tanh"`` for
            pixels in [-1, 1], ``None`` for standardized features).
        divergence: f-divergence of Tasks 1-2: ``"gan"``, ``"kl"``, ``"pearson"``.
        mu: weight of the distance term d in eq. (3) (paper: 0.2).
        nu: weight of the dispersion term s in eq. (3) (paper: 0.25).
        num_reference: Q, the number of G samples in d (paper: 1024).
        alpha, beta, gamma: weights of eq. (6) (paper: alpha + gamma = 0.7,
            beta = 0.7).
        delta: weight of eq. (7) (paper: 0.5).
        learning_rate: Adam learning rate of every network (beta_1 = 0.5).
        task_epochs: epochs of Tasks 1, 2, 3 when ``fit`` runs them all.
        seed: seed of the initializations and of every latent draw.
        **kwargs: passed to ``tf.keras.Model``.

    Raises:
        ValueError: on invalid hyper-parameters (names the one).
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 16,
        generator_widths: Sequence[int] = (128, 128),
        critic_widths: Sequence[int] = (128, 128),
        output_activation: str | None = None,
        divergence: str = "gan",
        mu: float = 0.2,
        nu: float = 0.25,
        num_reference: int = 1024,
        alpha: float = 0.35,
        beta: float = 0.7,
        gamma: float = 0.35,
        delta: float = 0.5,
        learning_rate: float = 2e-4,
        task_epochs: Sequence[int] = (20, 10, 20),
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(input_dim) < 1 or int(latent_dim) < 1:
            raise ValueError(
                f"input_dim and latent_dim must be >= 1, got {input_dim!r}, "
                f"{latent_dim!r}"
            )
        self._g_f, self._f_star_g = _f_gan_terms(str(divergence))
        for label, value in (("mu", mu), ("nu", nu), ("alpha", alpha)):
            if not float(value) >= 0:
                raise ValueError(f"{label} must be >= 0, got {value!r}")
        for label, value in (("beta", beta), ("gamma", gamma)):
            if not float(value) >= 0:
                raise ValueError(f"{label} must be >= 0, got {value!r}")
        if not 0.0 <= float(delta) <= 1.0:
            raise ValueError(f"delta must be in [0, 1], got {delta!r}")
        if int(num_reference) < 1:
            raise ValueError(f"num_reference must be >= 1, got {num_reference!r}")
        if not float(learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
        task_epochs = tuple(int(e) for e in task_epochs)
        if len(task_epochs) != 3 or any(e < 0 for e in task_epochs):
            raise ValueError(
                f"task_epochs must be three epoch counts >= 0, got {task_epochs!r}"
            )
        self.input_dim = int(input_dim)
        self.latent_dim = int(latent_dim)
        self.generator_widths = tuple(int(w) for w in generator_widths)
        self.critic_widths = tuple(int(w) for w in critic_widths)
        self.output_activation = output_activation
        self.divergence = str(divergence)
        self.mu, self.nu = float(mu), float(nu)
        self.num_reference = int(num_reference)
        self.alpha, self.beta = float(alpha), float(beta)
        self.gamma, self.delta = float(gamma), float(delta)
        self.learning_rate = float(learning_rate)
        self.task_epochs = task_epochs
        self.seed = int(seed)

        def generator(offset: int, name: str) -> tf.keras.Sequential:
            return dense_network(
                self.latent_dim,
                self.generator_widths,
                self.input_dim,
                output_activation,
                seed=self.seed * 1000 + offset,
                name=name,
            )

        def critic(offset: int, name: str) -> tf.keras.Sequential:
            return dense_network(
                self.input_dim,
                self.critic_widths,
                1,
                None,
                seed=self.seed * 1000 + offset,
                name=name,
            )

        self.generator = generator(0, "generator")  # G
        self.critic = critic(100, "critic")  # D
        self.boundary_generator = generator(200, "boundary_generator")  # B
        self.retrained_generator = generator(300, "retrained_generator")  # G'
        self.retrain_critic = critic(400, "retrain_critic")  # C
        self.anomaly_discriminator = critic(500, "anomaly_discriminator")  # J
        # the furthest stage reached: 1, 2, 3 (G'/C), 4 (J); saved with the weights
        self.stage = tf.Variable(1, trainable=False, dtype=tf.int64, name="stage")
        self._active_stage = 1
        self.step = tf.Variable(0, trainable=False, dtype=tf.int64, name="step")
        # one Adam per network, each an attribute (a stable path in saved files)
        networks = {
            "g": self.generator,
            "d": self.critic,
            "b": self.boundary_generator,
            "gp": self.retrained_generator,
            "c": self.retrain_critic,
            "j": self.anomaly_discriminator,
        }
        for key, network in networks.items():
            optimizer = tf.keras.optimizers.Adam(
                self.learning_rate, beta_1=0.5, name=f"adam_{key}"
            )
            optimizer.build(network.trainable_variables)  # slots before tracing
            setattr(self, f"optimizer_{key}", optimizer)
        self.trackers = {
            name: tf.keras.metrics.Mean(name=name)
            for name in ("loss_g", "loss_d", "loss_b", "m", "d", "s", "loss_j")
        }
        self.build((None, self.input_dim))

    def get_config(self) -> dict:
        return {
            "input_dim": self.input_dim,
            "latent_dim": self.latent_dim,
            "generator_widths": list(self.generator_widths),
            "critic_widths": list(self.critic_widths),
            "output_activation": self.output_activation,
            "divergence": self.divergence,
            "mu": self.mu,
            "nu": self.nu,
            "num_reference": self.num_reference,
            "alpha": self.alpha,
            "beta": self.beta,
            "gamma": self.gamma,
            "delta": self.delta,
            "learning_rate": self.learning_rate,
            "task_epochs": list(self.task_epochs),
            "seed": self.seed,
            "name": self.name,
        }

    @property
    def metrics(self) -> list:
        return list(self.trackers.values())

    # --------------------------------------------------------------- scores
    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Normality score :math:`-\\mathrm{logit}\\, J(x)`, shape ``(n, 1)``."""
        return -self.anomaly_discriminator(inputs, training=training)

    def score_samples(self, x: Any, batch_size: int = 4096) -> np.ndarray:
        """Normality scores (higher = more normal), 1-D."""
        return self.predict(x, batch_size=batch_size, verbose=0).reshape(-1)

    def predict(self, x: Any, **kwargs: Any) -> np.ndarray:
        return super().predict(check_batch(x, (self.input_dim,), "x"), **kwargs)

    def _latents(self, n: Any, offset: int) -> tf.Tensor:
        seed = tf.stack([tf.constant(self.seed * 10 + offset, tf.int64), self.step])
        return tf.random.stateless_normal([n, self.latent_dim], seed=seed)

    def _sample(self, network: tf.keras.Model, n: int, seed: int) -> np.ndarray:
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n!r}")
        z = tf.random.stateless_normal(
            [int(n), self.latent_dim], seed=[self.seed, int(seed)]
        )
        return network(z, training=False).numpy()

    def sample_normal(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` samples G(z) of the Task-1 generator."""
        return self._sample(self.generator, n, seed)

    def sample_boundary(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` OMAS samples B(z) of the Task-2 boundary generator."""
        return self._sample(self.boundary_generator, n, seed)

    def sample_retrained(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` samples G'(z) of the Task-3 retrained generator."""
        return self._sample(self.retrained_generator, n, seed)

    # ------------------------------------------------------------- training
    def compile(self, **kwargs: Any) -> None:
        """Keras ``compile``; every network has its own Adam (``learning_rate``).

        Raises:
            ValueError: if an ``optimizer`` or ``loss`` is given.
        """
        if kwargs.get("optimizer") is not None or kwargs.get("loss") is not None:
            raise ValueError(
                "OMASGAN trains six networks with their own Adam optimizers and "
                "the paper's losses: set learning_rate= on OMASGAN(...), not "
                "optimizer=/loss= in compile()"
            )
        kwargs.pop("optimizer", None)
        kwargs.pop("loss", None)
        super().compile(optimizer=self.optimizer_g, **kwargs)

    def _update(self, key: str, tape, loss, network: tf.keras.Model) -> None:
        variables = network.trainable_variables
        getattr(self, f"optimizer_{key}").apply_gradients(
            zip(tape.gradient(loss, variables), variables, strict=True)
        )

    def _task1(self, x: tf.Tensor) -> None:
        n = tf.shape(x)[0]
        z = self._latents(n, 1)
        with tf.GradientTape() as tape:
            v_real = self.critic(x, training=True)
            v_fake = self.critic(self.generator(z, training=True), training=True)
            bound = tf.reduce_mean(self._g_f(v_real)) - tf.reduce_mean(
                self._f_star_g(v_fake)
            )
            loss_d = -bound
        self._update("d", tape, loss_d, self.critic)
        z = self._latents(n, 2)
        with tf.GradientTape() as tape:
            v_fake = self.critic(self.generator(z, training=True), training=True)
            loss_g = -tf.reduce_mean(self._g_f(v_fake))  # non-saturating
        self._update("g", tape, loss_g, self.generator)
        self.trackers["loss_d"].update_state(loss_d)
        self.trackers["loss_g"].update_state(loss_g)

    def _task2(self, x: tf.Tensor) -> None:
        n = tf.shape(x)[0]
        z = self._latents(n, 3)
        reference = self.generator(self._latents(self.num_reference, 4), training=False)
        with tf.GradientTape() as tape:
            b = self.boundary_generator(z, training=True)
            # -m(B, G): only the B-term of the frozen critic's bound depends on B
            minus_m = tf.reduce_mean(self._f_star_g(self.critic(b, training=False)))
            d = tf.reduce_mean(min_distance(b, reference))
            s = dispersion(b, z)
            loss_b = minus_m + self.mu * d + self.nu * s
        self._update("b", tape, loss_b, self.boundary_generator)
        self.trackers["loss_b"].update_state(loss_b)
        self.trackers["m"].update_state(-minus_m)
        self.trackers["d"].update_state(d)
        self.trackers["s"].update_state(s)

    def _task3(self, x: tf.Tensor) -> None:
        n = tf.shape(x)[0]
        z = self._latents(n, 5)
        b = self.boundary_generator(z, training=False)
        g = self.generator(self._latents(n, 6), training=False)
        log_sig = tf.math.log_sigmoid
        with tf.GradientTape() as tape:
            c_fake = self.retrain_critic(
                self.retrained_generator(self._latents(n, 7), training=True),
                training=True,
            )
            objective = (
                tf.reduce_mean(log_sig(-c_fake))
                + self.alpha * tf.reduce_mean(log_sig(self.retrain_critic(x)))
                + self.beta * tf.reduce_mean(log_sig(-self.retrain_critic(b)))
                + self.gamma * tf.reduce_mean(log_sig(self.retrain_critic(g)))
            )
            loss_c = -objective
        self._update("c", tape, loss_c, self.retrain_critic)
        with tf.GradientTape() as tape:
            c_fake = self.retrain_critic(
                self.retrained_generator(self._latents(n, 8), training=True)
            )
            loss_gp = -tf.reduce_mean(log_sig(c_fake))  # non-saturating
        self._update("gp", tape, loss_gp, self.retrained_generator)
        self.trackers["loss_d"].update_state(loss_c)
        self.trackers["loss_g"].update_state(loss_gp)

    def _task3_anomaly(self, x: tf.Tensor) -> None:
        n = tf.shape(x)[0]
        b = self.boundary_generator(self._latents(n, 9), training=False)
        gp = self.retrained_generator(self._latents(n, 10), training=False)
        log_sig = tf.math.log_sigmoid
        j = self.anomaly_discriminator
        with tf.GradientTape() as tape:
            objective = (
                tf.reduce_mean(log_sig(j(b, training=True)))
                + self.delta * tf.reduce_mean(log_sig(-j(x, training=True)))
                + (1.0 - self.delta) * tf.reduce_mean(log_sig(-j(gp, training=True)))
            )
            loss_j = -objective
        self._update("j", tape, loss_j, j)
        self.trackers["loss_j"].update_state(loss_j)

    def train_step(self, data: Any) -> dict:
        x = tf.cast(data[0] if isinstance(data, tuple) else data, tf.float32)
        # the stage is a Python value: fit() retraces the step once per stage
        {1: self._task1, 2: self._task2, 3: self._task3, 4: self._task3_anomaly}[
            self._active_stage
        ](x)
        self.step.assign_add(1)
        return {m.name: m.result() for m in self.metrics}

    def fit(
        self,
        x: Any = None,
        y: Any = None,
        task: int | None = None,
        epochs: int | None = None,
        **kwargs: Any,
    ) -> dict[str, tf.keras.callbacks.History]:
        """Run the tasks on normal samples ``x``.

        ``task=None`` runs Tasks 1, 2, 3 with ``task_epochs`` (Task 3's epochs
        train G'/C, then as many train J); ``task=1|2|3`` runs that task for
        ``epochs``, and ``task=4`` trains J alone. When Task 2 starts from a
        model whose B was never trained, B is initialised from G, and likewise
        G' from G at Task 3 (the paper's initialisation).

        Returns:
            ``{"task1": History, ...}``, one per stage run.

        Raises:
            ValueError: for labels, invalid ``x`` (shape, empty, NaN/inf), an
                unknown task, or ``epochs`` without ``task``.
        """
        if y is not None:
            raise ValueError("OMASGAN.fit takes normal samples only (y must be None)")
        x = check_batch(x, (self.input_dim,), "x")
        if task is None:
            if epochs is not None:
                raise ValueError("give epochs with task=; task_epochs sets all three")
            plan = [
                (1, self.task_epochs[0]),
                (2, self.task_epochs[1]),
                (3, self.task_epochs[2]),
                (4, self.task_epochs[2]),
            ]
        else:
            if int(task) not in (1, 2, 3, 4):
                raise ValueError(f"task must be 1, 2, 3 or 4 (J), got {task!r}")
            plan = [(int(task), self.task_epochs[min(int(task), 3) - 1])]
            if epochs is not None:
                plan = [(int(task), int(epochs))]
        histories = {}
        for stage, stage_epochs in plan:
            if stage_epochs == 0:
                continue
            reached = int(self.stage.numpy())
            if stage == 2 and reached < 2:
                self.boundary_generator.set_weights(self.generator.get_weights())
            if stage == 3 and reached < 3:
                self.retrained_generator.set_weights(self.generator.get_weights())
            self.stage.assign(max(stage, reached))
            self._active_stage = stage
            self.train_function = None  # retrace train_step for this stage
            for tracker in self.trackers.values():
                tracker.reset_state()
            histories[f"task{stage}"] = super().fit(x, epochs=stage_epochs, **kwargs)
        return histories
