"""kocc selects the Keras 2 API or fails with a message that says what to do."""

import os
import subprocess
import sys


def _run(code: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )


def test_importing_kocc_first_selects_tf_keras():
    proc = _run("import kocc, tensorflow as tf; print(tf.keras.__name__)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("tf_keras")


def test_keras3_already_active_raises_import_error_saying_what_to_do():
    proc = _run("import tensorflow as tf; tf.keras.Model; import kocc")
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert "TF_USE_LEGACY_KERAS=1" in proc.stderr
    assert "Keras 3" in proc.stderr


def test_env_var_set_before_tensorflow_lets_kocc_import_after_tensorflow():
    proc = _run(
        "import tensorflow as tf; import kocc; print(tf.keras.__name__)",
        {"TF_USE_LEGACY_KERAS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("tf_keras")
