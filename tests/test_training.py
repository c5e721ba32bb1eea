"""The one training path (kocc.training): optimizer, compile, timed fit."""

import math

import numpy as np
import pytest
import tensorflow as tf

from kocc.architectures import lipschitz_mlp
from kocc.models import OCSDF
from kocc.sampling import Ball
from kocc.training import (
    OPTIMIZERS,
    make_optimizer,
    repeated_batches,
    steps_per_epoch_for,
    train_ocsdf,
    without_autotuning,
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
