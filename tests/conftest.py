"""Shared test setup: quiet TensorFlow, import kocc first (selects tf-keras)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under pytest-xdist (setup.cfg: two workers), each worker's TensorFlow gets its
# share of the cores: two workers of two threads each on a 2-core machine
# oversubscribe it (measured: 3,086 CPU s for the suite against 1.8 cores x
# 1,735 s). Set before TensorFlow is imported; inherited by the subprocesses.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault(
        "TF_NUM_INTRAOP_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS))
    )

import pytest  # noqa: E402

import kocc  # noqa: E402,F401  (must precede any TensorFlow import)
from kocc.datasets.paths import DATA_DIR_ENV  # noqa: E402

pytest_plugins = ["pytester"]

#: The one-line reason a ``data`` test gives when the data folder is not set.
DATA_SKIP_REASON = (
    f"needs the shared data sets: set {DATA_DIR_ENV} to their folder "
    f"(e.g. {DATA_DIR_ENV}=../shared/data)"
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"data: needs the shared data sets ({DATA_DIR_ENV}); skipped when "
        f"{DATA_DIR_ENV} is unset, fails when it is set but incomplete",
    )


def pytest_collection_modifyitems(config, items):
    """Test files with ``slow`` tests first; skip ``data`` tests without data.

    The order: pytest-xdist hands whole files to its workers in this order, so
    the long files start first and the short ones fill the end (else a worker
    idles while the other runs the last long file).

    A fresh clone has no data folder: its data tests are skipped with a one-line
    reason naming the variable. When the variable is set, they run: a folder
    that lacks a file fails where the loader raises ``FileNotFoundError`` naming
    it, so a CI whose data are incomplete never passes silently.
    """
    slow_files = {
        item.path for item in items if item.get_closest_marker("slow") is not None
    }
    items.sort(key=lambda item: item.path not in slow_files)  # stable
    if os.environ.get(DATA_DIR_ENV):
        return
    skip = pytest.mark.skip(reason=DATA_SKIP_REASON)
    for item in items:
        if item.get_closest_marker("data") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_tfds_dir(tmp_path_factory):
    """The session's one TFDS preparation folder (one per xdist worker): every
    image test uses it, so MNIST is prepared once."""
    return tmp_path_factory.getbasetemp() / "kocc_tfds"


@pytest.fixture(scope="session", autouse=True)
def _tfds_copies_in_the_session_folder(shared_tfds_dir):
    """TFDS copies that tests prepare without naming a folder go to
    :func:`shared_tfds_dir` too (``$KOCC_TFDS_DIR``), never into the user's
    ``~/tensorflow_datasets``. Subprocesses inherit it."""
    previous = os.environ.get("KOCC_TFDS_DIR")
    os.environ["KOCC_TFDS_DIR"] = str(shared_tfds_dir)
    yield
    if previous is None:
        os.environ.pop("KOCC_TFDS_DIR", None)
    else:
        os.environ["KOCC_TFDS_DIR"] = previous


def pytest_runtest_setup(item):
    """A ``data`` test errors out at once when ``KOCC_DATA_DIR`` names no folder."""
    root = os.environ.get(DATA_DIR_ENV)
    if root and item.get_closest_marker("data") and not os.path.isdir(root):
        pytest.fail(f"{DATA_DIR_ENV}={root!r} is not a directory", pytrace=False)


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


def set_args(*assignments: str) -> list[str]:
    """The ``--set key=value`` arguments of a kocc command, one per assignment."""
    return [arg for assignment in assignments for arg in ("--set", assignment)]


def run_dir_fixture(input_dim: int, network_seed: int, model_seed: int):
    """A module-scoped ``run_dir`` fixture: :func:`make_run_dir` with these
    arguments, trained once per test module that binds it."""

    @pytest.fixture(scope="module")
    def run_dir(tmp_path_factory):
        return make_run_dir(
            tmp_path_factory.mktemp("run"), input_dim, network_seed, model_seed
        )

    return run_dir


def export_dir_fixture(threshold: float):
    """A module-scoped ``export_dir`` fixture: the module's ``run_dir`` exported
    (``kocc.export.export_run``) with this decision threshold."""

    @pytest.fixture(scope="module")
    def export_dir(run_dir, tmp_path_factory):
        from kocc.export import export_run

        path = tmp_path_factory.mktemp("export") / "served"
        export_run(run_dir, path, threshold=threshold)
        return path

    return export_dir


def linear_model(weights, bias: float = 0.0):
    """The Keras model f(x) = w.x + b (one Dense unit), its Lipschitz constant
    ||w||: exact certificates and gradients to test against."""
    import numpy as np
    import tensorflow as tf

    weights = np.asarray(weights, np.float32)
    layer = tf.keras.layers.Dense(1, input_shape=(weights.size,))
    model = tf.keras.Sequential([layer])
    layer.set_weights([weights[:, None], np.array([bias], np.float32)])
    return model


def assert_png(path, min_bytes: int = 5000, min_side: int = 200) -> None:
    """``path`` is a PNG file (signature, IHDR) of a real figure: at least
    ``min_bytes`` and ``min_side`` pixels each way (an empty canvas compresses
    to far less)."""
    import struct
    from pathlib import Path

    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path}: no IHDR chunk"
    width, height = struct.unpack(">II", data[16:24])
    assert min(width, height) >= min_side, (path, width, height)
    assert len(data) >= min_bytes, (path, len(data))
