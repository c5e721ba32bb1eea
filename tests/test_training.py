"""The one training path (kocc.training): optimizer, compile, timed fit."""

import errno
import math
import mmap
import os

import numpy as np
import pytest
import tensorflow as tf

import kocc.models
from kocc.architectures import lipschitz_mlp
from kocc.datasets.pipelines import without_autotuning
from kocc.datasets.tabular import streamed_dataset
from kocc.models import OCSDF, XLA_MIN_FREE_MEMORY_MAPS, memory_map_headroom
from kocc.sampling import Ball
from kocc.training import (
    OPTIMIZERS,
    make_optimizer,
    repeated_batches,
    steps_per_epoch_for,
    train_ocsdf,
)


def test_make_optimizer_rejects_unknown_names_and_bad_rates():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamw'.*'rmsprop'"):
        make_optimizer("adamw")
    for rate in (0.0, -1e-3, math.nan, math.inf):
        with pytest.raises(ValueError, match="learning_rate must be finite and > 0"):
            make_optimizer("adam", rate)
    with pytest.raises(ValueError, match="decay_steps >= 1"):
        make_optimizer("sgd", 1e-2, final_learning_rate=1e-4)
    assert sorted(OPTIMIZERS) == ["adam", "rmsprop", "sgd"]


def test_linear_decay_reaches_the_final_rate_after_decay_steps():
    optimizer = make_optimizer(
        "rmsprop", 1e-2, final_learning_rate=1e-4, decay_steps=100
    )
    schedule = tf.keras.optimizers.schedules.deserialize(
        optimizer.get_config()["learning_rate"]
    )
    assert float(schedule(0)) == pytest.approx(1e-2)
    assert float(schedule(50)) == pytest.approx(0.5 * (1e-2 + 1e-4))
    assert float(schedule(100)) == pytest.approx(1e-4)
    assert float(schedule(1000)) == pytest.approx(1e-4)


def test_repeated_batches_cap_the_batch_at_the_data_size():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    batches = list(repeated_batches(x, 64, seed=0).take(3))
    assert [b.shape for b in batches] == [(5, 2)] * 3
    assert sorted(batches[0].numpy()[:, 0]) == [0, 2, 4, 6, 8]
    assert steps_per_epoch_for(2000, 3) == 667
    with pytest.raises(ValueError, match="steps and epochs must be >= 1"):
        steps_per_epoch_for(0, 3)


def test_in_memory_pipelines_run_without_tf_data_autotuning():
    """The autotuning thread can hold a fit call's end for seconds."""
    x = np.zeros((8, 2), np.float32)
    assert repeated_batches(x, 4).options().autotune.enabled is False
    # the tabular benchmark's stream: 13-16 s after a 3,000-step fit with it on
    assert streamed_dataset(x, 4).options().autotune.enabled is False
    assert (
        without_autotuning(tf.data.Dataset.range(3)).options().autotune.enabled is False
    )
    assert tf.data.Dataset.range(3).options().autotune.enabled is not False


def test_train_ocsdf_runs_exactly_the_requested_updates():
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    model, report = train_ocsdf(
        lipschitz_mlp(2, (8, 8), seed=0),
        Ball(3.0, shape=(2,)),
        repeated_batches(x, 16, seed=0),
        epochs=2,
        steps_per_epoch=steps_per_epoch_for(7, 2),
        margin=0.1,
        lam=10.0,
        nr_steps=1,
        optimizer="adam",
        learning_rate=1e-2,
    )
    assert isinstance(model, OCSDF)
    assert isinstance(model.optimizer, tf.keras.optimizers.Adam)
    assert report.steps == 8 == int(model.optimizer.iterations.numpy())
    assert len(report.history["loss"]) == 2
    assert report.steps_per_second > 0


def _xla_pair_fit(x, jit_compile, steps, seed=3, sample_negatives=None):
    tf.keras.utils.set_random_seed(5)
    model = OCSDF(
        lipschitz_mlp(2, (16, 16), activation="fullsort", seed=0),
        Ball(3.0, shape=(2,)),
        margin=0.1,
        lam=10.0,
        nr_steps=2,
        seed=seed,
    )
    if sample_negatives is not None:
        model.sample_negatives = sample_negatives
    model.compile(optimizer=make_optimizer("rmsprop", 1e-2), jit_compile=jit_compile)
    model.fit(repeated_batches(x, 64, seed=0), steps_per_epoch=steps, verbose=0)
    return model


def test_xla_update_equals_the_plain_update_on_the_same_negatives():
    x = np.random.default_rng(1).normal(size=(128, 2)).astype(np.float32)
    fixed = tf.constant(
        np.random.default_rng(2).uniform(-3, 3, (64, 2)), dtype=tf.float32
    )
    plain = _xla_pair_fit(x, False, 5, sample_negatives=lambda n, seed: fixed)
    compiled = _xla_pair_fit(x, True, 5, sample_negatives=lambda n, seed: fixed)
    assert compiled.xla_update and not plain.xla_update
    start = lipschitz_mlp(2, (16, 16), activation="fullsort", seed=0)(x).numpy()
    f_plain, f_xla = plain.predict(x, verbose=0), compiled.predict(x, verbose=0)
    # measured: the updates move f by 1.28, XLA and TensorFlow differ by 5e-7
    assert np.abs(f_plain - start).max() > 1e-2
    np.testing.assert_allclose(f_xla, f_plain, atol=1e-5)


def test_xla_update_reproduces_with_its_seed_and_learns_the_distance(tmp_path):
    x = np.random.default_rng(1).normal(size=(256, 2)).astype(np.float32)
    axis = np.linspace(-3, 3, 21, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    radius = np.linalg.norm(grid, axis=1)
    scores = {}
    for name, jit in (("plain", False), ("xla", True), ("xla_again", True)):
        model = _xla_pair_fit(x, jit, 150)
        scores[name] = model.predict(grid, verbose=0)[:, 0]
    np.testing.assert_array_equal(scores["xla"], scores["xla_again"])
    # XLA's stateless random ops draw another stream than TensorFlow's kernels
    assert np.abs(scores["xla"] - scores["plain"]).max() > 1e-3
    # both learn f decreasing away from the blob (measured: 0.84 to 0.96 over
    # seeds 3 and 4 of each step)
    for name in ("plain", "xla"):
        assert np.corrcoef(scores[name], -radius)[0, 1] > 0.75, name
    path = tmp_path / "xla.keras"
    model.save(path)
    reloaded = tf.keras.models.load_model(path)
    assert reloaded.xla_update
    np.testing.assert_allclose(
        reloaded.predict(grid, verbose=0)[:, 0], scores["xla_again"], atol=1e-6
    )


def test_xla_update_keeps_the_nan_check_of_the_batch():
    x = np.random.default_rng(1).normal(size=(64, 2)).astype(np.float32)
    x[5, 1] = np.nan
    model = OCSDF(lipschitz_mlp(2, (8,), seed=0), Ball(3.0, shape=(2,)))
    model.compile(optimizer="rmsprop", jit_compile=True)
    data = tf.data.Dataset.from_tensor_slices(x).batch(64).repeat()
    with pytest.raises(tf.errors.InvalidArgumentError, match="contains NaN or inf"):
        model.fit(data, steps_per_epoch=2, verbose=0)


def test_xla_update_is_refused_before_the_memory_maps_run_out(monkeypatch):
    # XLA keeps every program it compiled until the process exits, each in
    # memory maps of its own; compiling past vm.max_map_count crashed long
    # benchmark processes in libgcc's unwinder (docs/training.md)
    model = OCSDF(lipschitz_mlp(2, (8,), seed=0), Ball(3.0, shape=(2,)))
    low = XLA_MIN_FREE_MEMORY_MAPS - 1
    monkeypatch.setattr(kocc.models, "memory_map_headroom", lambda: low)
    with pytest.raises(OSError, match="vm.max_map_count") as refused:
        model.compile(optimizer="rmsprop", jit_compile=True)
    assert refused.value.errno == errno.ENOMEM  # the CLI reports it in one line
    model.compile(optimizer="rmsprop")  # the plain step is not refused
    assert not model.xla_update
    enough = XLA_MIN_FREE_MEMORY_MAPS
    monkeypatch.setattr(kocc.models, "memory_map_headroom", lambda: enough)
    model.compile(optimizer="rmsprop", jit_compile=True)
    assert model.xla_update


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="Linux only")
def test_memory_map_headroom_counts_the_maps_of_the_process():
    with open("/proc/sys/vm/max_map_count") as f:
        limit = int(f.read())
    before = memory_map_headroom()
    assert 0 < before < limit
    # alternate protections, so that the kernel cannot merge neighbours
    writable = mmap.PROT_READ | mmap.PROT_WRITE
    pages = [
        mmap.mmap(-1, mmap.PAGESIZE, prot=writable if i % 2 else mmap.PROT_READ)
        for i in range(64)
    ]
    try:
        assert before - memory_map_headroom() >= 32
    finally:
        for page in pages:
            page.close()
