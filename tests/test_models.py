"""OCSDF: training step, SDF learning (Theorem 1), Lipschitz bound, inputs."""

import numpy as np
import pytest
import tensorflow as tf

from kocc.architectures import lipschitz_mlp
from kocc.datasets.toys import annulus, disk
from kocc.losses import OneClassHKR
from kocc.models import OCSDF
from kocc.orthogonalization import orthogonalize
from kocc.sampling import Ball, Box
from kocc.training import repeated_batches

MARGIN = 0.05


def _model(widths=(32, 32), seed=0, **kwargs) -> OCSDF:
    tf.keras.utils.set_random_seed(seed)
    model = OCSDF(
        lipschitz_mlp(2, widths=widths, seed=seed),
        Ball(5.0, shape=(2,)),
        margin=MARGIN,
        **kwargs,
    )
    model.compile(tf.keras.optimizers.RMSprop(1e-3))
    return model


def _grid(n=100, span=3.0):
    g = np.linspace(-span, span, n, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    return np.stack([gx.ravel(), gy.ravel()], 1)


def _max_grad_norm(model, points) -> float:
    x = tf.constant(points)
    with tf.GradientTape() as tape:
        tape.watch(x)
        f = model(x, training=False)
    grad = tape.gradient(f, x)
    return float(tf.reduce_max(tf.norm(grad, axis=1)))


def _train_sdf(x, epochs, lr=2e-3):
    model = _model(widths=(64, 64, 64), seed=0, nr_steps=4)
    model.compile(tf.keras.optimizers.RMSprop(lr))
    ds = repeated_batches(x, 256, seed=0)
    model.fit(ds, epochs=epochs, steps_per_epoch=100, verbose=0)
    return model


@pytest.fixture(scope="module")
def disk_model():
    # 1,500 steps (was 3,000: 0.047 at seed 0). Mean |f - S - m| measured at this
    # budget, model and batch seeds 0-3, 1 and 2 TF threads (identical): 0.044,
    # 0.047, 0.050, 0.033 against the 0.1 bound; untrained 0.77-1.49.
    x, sdf = disk(4096, seed=0)
    return _train_sdf(x, epochs=15), sdf


@pytest.mark.slow
def test_ocsdf_learns_disk_signed_distance(disk_model):
    model, sdf = disk_model
    grid = _grid()
    err = np.abs(model.score_samples(grid) - sdf(grid) - MARGIN)
    assert err.mean() <= 0.1


@pytest.mark.slow
def test_trained_ocsdf_is_one_lipschitz_on_the_domain(disk_model):
    model, _ = disk_model
    points = Ball(5.0, shape=(2,)).sample(10000, seed=123).numpy()
    assert _max_grad_norm(model, points) <= 1.01


#: Mean |f - S - m| bound for the annulus. Measured at this budget (5,000
#: steps, 3 x 64 FullSort) on the project's 2-core machine, model and batch seeds
#: 0-5: 0.074, 0.103, 0.121, 0.119, 0.107, 0.086 (the test runs seed 0; another
#: machine's kernels move the trajectory as much as a seed: 0.1046 was seen there
#: against the former 0.1 bound). A network that has not learned the distance
#: scores far above: 0.43-0.73 untrained, 0.34 after 500 steps.
ANNULUS_ERROR_BOUND = 0.15


@pytest.mark.slow
def test_ocsdf_learns_annulus_signed_distance():
    x, sdf = annulus(4096, inner=1.0, outer=2.0, seed=1)
    model = _train_sdf(x, epochs=50)
    grid = _grid()
    err = np.abs(model.score_samples(grid) - sdf(grid) - MARGIN)
    assert err.mean() <= ANNULUS_ERROR_BOUND


def test_predict_after_fit_uses_the_updated_kernels():
    model = _model()
    x, _ = disk(512, seed=2)
    model.fit(x, batch_size=64, epochs=1, verbose=0)
    fresh = model.backbone(x, training=True).numpy().ravel()  # re-orthogonalizes
    np.testing.assert_allclose(model.score_samples(x), fresh, atol=1e-5)
    # the check can fail: the last update did move the kernels
    model.optimizer.apply_gradients(
        [(tf.ones_like(v), v) for v in model.backbone.trainable_variables]
    )
    stale = model.backbone(x, training=False).numpy().ravel()
    assert np.abs(stale - model.score_samples(x)).max() > 1e-4


def test_chain_rule_gradient_equals_deel_lip_training_mode_gradient():
    """Once-per-step orthogonalization gives the gradient of deel-lip's own call."""
    model = _model(widths=(16, 16))
    backbone = model.backbone
    x = tf.random.stateless_normal((64, 2), seed=[0, 1])
    y = tf.concat([tf.ones(32), -tf.ones(32)], 0)
    loss_fn = OneClassHKR(MARGIN, 100.0)
    kernels = [layer.kernel for layer in model._constrained]
    u_before = [layer.u.numpy() for layer in model._constrained if hasattr(layer, "u")]

    with tf.GradientTape() as tape:
        reference = loss_fn(y, tf.reshape(backbone(x, training=True), [-1]))
    expected = tape.gradient(reference, kernels)

    for layer, u in zip(
        [la for la in model._constrained if hasattr(la, "u")], u_before, strict=True
    ):
        layer.u.assign(u)  # same power-iteration start as the reference call
    with tf.GradientTape() as orth_tape:
        orthos = [orthogonalize(layer) for layer in model._constrained]
    for o in orthos:
        o.assign()
    wbars = [layer.wbar for layer in model._constrained]
    with tf.GradientTape() as tape:
        tape.watch(wbars)
        loss = loss_fn(y, tf.reshape(backbone(x, training=False), [-1]))
    grads = orth_tape.gradient(
        [o.wbar for o in orthos], kernels, output_gradients=tape.gradient(loss, wbars)
    )
    assert float(loss) == pytest.approx(float(reference), rel=1e-5)
    for g, e in zip(grads, expected, strict=True):
        np.testing.assert_allclose(g.numpy(), e.numpy(), atol=1e-5, rtol=1e-4)


def test_fit_logs_losses_scores_and_true_gradient_norm_of_negatives():
    model = _model(nr_steps=2)
    x, _ = disk(256, seed=3)
    model.sync_constrained_kernels()
    # the negatives of the first step, reproduced from the seed
    z = model.sample_negatives(256, tf.constant([0, 0], tf.int64))
    with tf.GradientTape() as tape:
        tape.watch(z)
        f = model.backbone(z, training=False)
    expected = float(tf.reduce_mean(tf.norm(tape.gradient(f, z), axis=1)))
    logs = model.fit(x, batch_size=256, epochs=1, shuffle=False, verbose=0).history
    assert set(logs) == {"loss", "f_pos", "f_neg", "grad_norm_neg"}
    assert logs["grad_norm_neg"][0] == pytest.approx(expected, rel=1e-4)
    assert logs["f_neg"][0] == pytest.approx(float(tf.reduce_mean(f)), rel=1e-4)


def test_warmup_epochs_use_uniform_negatives():
    model = _model(nr_steps=8, warmup_epochs=1)
    seed = tf.constant([0, 7], tf.int64)
    z = model.sample_negatives(100, seed)
    draw_seed = tf.random.experimental.stateless_split(seed, 2)[0]
    uniform = model.domain.sample(100, draw_seed, shape=(2,))
    np.testing.assert_array_equal(z.numpy(), uniform.numpy())
    model._epoch.assign(1)
    assert not np.allclose(model.sample_negatives(100, seed).numpy(), uniform.numpy())


def test_negatives_are_redrawn_every_k_updates():
    model = _model(updates_per_sampling=3, negatives_per_batch=16)
    x, _ = disk(16 * 6, seed=4)
    seen = []

    class Record(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(model._negatives.numpy().copy())

    model.fit(
        x, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[Record()]
    )
    changed = [not np.array_equal(a, b) for a, b in zip(seen, seen[1:], strict=False)]
    assert changed == [False, False, True, False, False]


def test_same_seed_gives_same_weights_after_a_short_fit():
    x, _ = disk(512, seed=5)
    weights = []
    for _ in range(2):
        model = _model(seed=11, nr_steps=3)
        model.fit(x, batch_size=64, epochs=2, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
    other = _model(seed=12, nr_steps=3)
    other.fit(x, batch_size=64, epochs=2, verbose=0)
    assert not np.allclose(weights[0][0], other.get_weights()[0])


def test_lipschitz_mlp_seed_alone_fixes_every_weight():
    # no global seed: kernels, power-iteration vectors and wbar follow the seed
    a, b = (lipschitz_mlp(3, widths=(16, 16), seed=7) for _ in range(2))
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    c = lipschitz_mlp(3, widths=(16, 16), seed=8)
    assert not np.allclose(a.get_weights()[0], c.get_weights()[0])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([[0.0, np.nan], [1.0, 1.0]]), "NaN"),
        (np.array([[0.0, np.inf], [1.0, 1.0]]), "inf"),
        (np.zeros((4, 3)), "3 features but the model was built for 2"),
        (np.zeros((4, 2, 1)), "rank 2"),
        (np.zeros((0, 2)), "empty"),
    ],
)
def test_bad_input_is_rejected_with_a_message_naming_the_problem(bad, message):
    model = _model()
    with pytest.raises(ValueError, match=message):
        model.fit(bad, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=message):
        model.predict(bad)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"nr_steps": -1}, "nr_steps"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"updates_per_sampling": 0}, "updates_per_sampling"),
        ({"updates_per_sampling": 2}, "negatives_per_batch"),
        ({"margin": 0.0}, "margin"),
        ({"lam": -1.0}, "lam"),
    ],
)
def test_invalid_hyperparameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OCSDF(lipschitz_mlp(2, widths=(8,)), Ball(1.0, shape=(2,)), **kwargs)


def test_domain_must_match_the_input_shape():
    with pytest.raises(ValueError, match="shape"):
        OCSDF(lipschitz_mlp(2, widths=(8,)), Box([0, 0, 0], [1, 1, 1]))


def test_compile_rejects_a_foreign_loss():
    model = OCSDF(lipschitz_mlp(2, widths=(8,)), Ball(1.0, shape=(2,)))
    with pytest.raises(ValueError, match="margin"):
        model.compile("rmsprop", loss="mse")


@pytest.fixture(scope="module")
def briefly_fitted_model():
    """A (32, 32) OCSDF after one epoch on 256 disk points (not modified by users)."""
    model = _model()
    x, _ = disk(256, seed=6)
    model.fit(x, batch_size=64, epochs=1, verbose=0)
    return model, x


def test_saved_model_file_reloads_with_identical_scores(briefly_fitted_model, tmp_path):
    model, x = briefly_fitted_model
    model.save(tmp_path / "m.keras")
    restored = tf.keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(restored, OCSDF)
    assert restored.get_config()["margin"] == MARGIN
    np.testing.assert_allclose(
        restored.score_samples(x), model.score_samples(x), atol=1e-6
    )


def test_repeated_predict_gives_identical_scores(briefly_fitted_model):
    model, x = briefly_fitted_model
    first = model.score_samples(x)
    np.testing.assert_array_equal(model.score_samples(x), first)


@pytest.mark.parametrize("orthogonalization", ["retraction", "chain_rule"])
def test_trained_network_has_a_proven_lipschitz_bound(orthogonalization):
    """Whatever the training scheme, the predicting network is certified."""
    from kocc.export import vanilla_network
    from kocc.lipschitz_bound import lipschitz_upper_bound

    model = _model(widths=(64, 64), orthogonalization=orthogonalization)
    model.compile(tf.keras.optimizers.RMSprop(5e-3))  # large steps: a hard case
    x, _ = disk(1024, seed=8)
    model.fit(x, batch_size=128, epochs=3, verbose=0)
    network = vanilla_network(model)
    assert lipschitz_upper_bound(network) <= 1.0 + 1e-3
    grid = _grid(50, span=5.0)
    np.testing.assert_allclose(
        network.predict(grid, verbose=0).ravel(), model.score_samples(grid), atol=1e-5
    )
    points = Ball(5.0, shape=(2,)).sample(4096, seed=9).numpy()
    assert _max_grad_norm(model, points) <= 1.01


def test_fit_projects_kernels_far_from_orthogonal_before_training():
    """A kernel set by hand, with singular values 2.5 (where Newton-Schulz
    diverges) that the layer's power-iteration vector barely sees, is
    projected by deel-lip's normalization when ``fit`` starts."""
    model = _model(widths=(64, 64))
    square = [layer for layer in model._constrained if layer.kernel.shape == (64, 64)]
    rng = np.random.default_rng(0)
    for layer in square:
        u = layer.u.numpy() + 0.2 * rng.normal(size=(1, 64)) / 8.0  # u: (1, 64)
        u /= np.linalg.norm(u)
        layer.kernel.assign(2.5 * np.eye(64) - 1.5 * u.T @ u)
    x, _ = disk(512, seed=10)
    model.fit(x, batch_size=64, epochs=1, verbose=0)
    for layer in square:
        k = layer.kernel.numpy()
        assert np.isfinite(k).all()
        assert np.abs(k.T @ k - np.eye(64)).max() < 1e-2


def test_retraction_keeps_kernels_orthogonal_during_training():
    model = _model(widths=(64, 64))
    x, _ = disk(512, seed=10)
    model.fit(x, batch_size=64, epochs=2, verbose=0)
    for layer in model._constrained[:-1]:  # spectral layers
        k = layer.kernel.numpy()
        gram = k @ k.T if k.shape[0] < k.shape[1] else k.T @ k
        assert np.abs(gram - np.eye(len(gram))).max() < 1e-2


def test_loss_is_a_constructor_argument_saved_with_the_model(tmp_path):
    loss = OneClassHKR(margin=0.2, lam=10.0)
    model = OCSDF(
        lipschitz_mlp(2, widths=(8,), seed=0), Ball(5.0, shape=(2,)), loss=loss
    )
    assert (model.margin, model.lam, model.negative_level) == (0.2, 10.0, -0.2)
    config = model.get_config()
    assert config["loss"]["config"]["margin"] == 0.2
    assert config["orthogonalization"] == "retraction"
    model.compile("rmsprop")
    model.fit(disk(128, seed=11)[0], batch_size=64, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = tf.keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(restored.one_class_loss, OneClassHKR)
    assert (restored.margin, restored.lam) == (0.2, 10.0)
    with pytest.raises(ValueError, match="either loss= or margin="):
        OCSDF(lipschitz_mlp(2, widths=(8,)), Ball(5.0, shape=(2,)), loss=loss, lam=1.0)
    with pytest.raises(ValueError, match="orthogonalization"):
        OCSDF(
            lipschitz_mlp(2, widths=(8,)), Ball(5.0, shape=(2,)), orthogonalization="x"
        )


def _restart_case(jit_compile: bool, seed: int) -> OCSDF:
    """A small tabular-like OCSDF: Adam with a decaying rate (optimizer slots and
    a schedule of the step), batches of 32 over 70 rows (a smaller last batch)."""
    tf.keras.utils.set_random_seed(seed)
    model = OCSDF(
        lipschitz_mlp(3, widths=(16, 16)),
        Box(-3.0, 3.0, shape=(3,)),
        margin=0.3,
        lam=1.0,
        nr_steps=2,
        seed=seed,
    )
    rate = tf.keras.optimizers.schedules.PolynomialDecay(1e-2, 12, 1e-3)
    model.compile(tf.keras.optimizers.Adam(rate), jit_compile=jit_compile)
    return model


def _fit_rows(model: OCSDF, seed: int) -> None:
    x = np.random.default_rng(3).normal(size=(70, 3)).astype(np.float32)
    data = (
        tf.data.Dataset.from_tensor_slices(x)
        .shuffle(70, seed=seed)
        .repeat()
        .batch(32)  # 32, 32, 6: the last batch of a pass is smaller
    )
    model.fit(data, epochs=2, steps_per_epoch=6, verbose=0)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_restart_trains_the_network_a_new_model_would_without_tracing_again(
    jit_compile,
):
    model = _restart_case(jit_compile, seed=1)
    _fit_rows(model, seed=1)
    step = model._xla_update or model.train_function
    traces = step.experimental_get_tracing_count()
    tf.keras.utils.set_random_seed(2)
    model.restart(lipschitz_mlp(3, widths=(16, 16)).get_weights(), seed=2)
    assert (model.seed, int(model.optimizer.iterations)) == (2, 0)
    _fit_rows(model, seed=2)
    new = _restart_case(jit_compile, seed=2)
    _fit_rows(new, seed=2)
    # every weight (backbone, seed, epoch) and optimizer slot equal to the bit
    for a, b in zip(model.get_weights(), new.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.optimizer.variables, new.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = np.random.default_rng(4).normal(size=(50, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.score_samples(x), new.score_samples(x))
    # the update was neither traced nor (XLA) compiled again for the new network
    assert step.experimental_get_tracing_count() == traces
    assert int(model.optimizer.iterations) == 12 and model.get_config()["seed"] == 2


def test_restart_rejects_weights_of_another_backbone():
    model = _restart_case(False, seed=1)
    other = lipschitz_mlp(3, widths=(16, 8)).get_weights()
    with pytest.raises(ValueError, match="restart needs weights of the backbone's"):
        model.restart(other, seed=2)
    assert model.seed == 1  # nothing changed


def test_file_saved_before_the_seed_was_a_variable_still_loads():
    # such a file holds the model's own variables without the last one, the seed
    model = _restart_case(False, seed=7)
    model.load_own_variables({"0": np.int64(3)})  # epoch only
    assert int(model._epoch.numpy()) == 3 and model.seed == 7
    model.load_own_variables({"0": np.int64(4), "1": np.int64(9)})  # epoch, seed
    assert int(model._epoch.numpy()) == 4 and model.seed == 9
    with pytest.raises(ValueError, match="expected 2 variables"):
        model.load_own_variables({})
