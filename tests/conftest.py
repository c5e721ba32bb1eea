"""Shared test setup: quiet TensorFlow, import kocc first (selects tf-keras)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  (must precede any TensorFlow import)


def make_run_dir(path, input_dim: int, network_seed: int, model_seed: int):
    """A run directory as ``kocc train`` writes it: a briefly trained ``model.keras``.

    A ``(16, 16)`` OCSDF fitted for two epochs on 256 standard normal points of
    ``input_dim`` features; the seeds make it reproducible.
    """
    import numpy as np
    import tensorflow as tf

    from kocc.architectures import lipschitz_mlp
    from kocc.models import OCSDF
    from kocc.sampling import Ball

    x = np.random.default_rng(0).normal(size=(256, input_dim)).astype(np.float32)
    model = OCSDF(
        lipschitz_mlp(input_dim, (16, 16), seed=network_seed),
        Ball(4.0, shape=(input_dim,)),
        seed=model_seed,
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
    model.fit(x, batch_size=64, epochs=2, verbose=0)
    model.save(path / "model.keras")
    return path
