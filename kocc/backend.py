"""Selection of the Keras 2 API (tf-keras) that deel-lip needs.

deel-lip 1.5.0 is written against the Keras 2 API. TensorFlow >= 2.16 ships Keras 3
by default and switches ``tf.keras`` to tf-keras only when the environment variable
``TF_USE_LEGACY_KERAS=1`` is set *before* TensorFlow resolves ``tf.keras``. kocc
sets it when it is imported first; when Keras 3 is already active it stops with an
ImportError that says what to do, instead of failing later with an obscure error.
"""

from __future__ import annotations

import importlib.util
import os
import sys

LEGACY_KERAS_ENV = "TF_USE_LEGACY_KERAS"

_KERAS3_MESSAGE = (
    "kocc needs the Keras 2 API (the tf-keras package), but TensorFlow is already "
    "running with Keras {version}. deel-lip, on which kocc is built, does not support "
    "Keras 3. Fix: set the environment variable TF_USE_LEGACY_KERAS=1 before Python "
    "imports TensorFlow (e.g. `export TF_USE_LEGACY_KERAS=1`, or "
    "`os.environ['TF_USE_LEGACY_KERAS'] = '1'` as the first line of your script), "
    "or simply `import kocc` before `import tensorflow`; and make sure tf-keras is "
    "installed (`pip install 'tf-keras~=2.21.0'`)."
)
_TF_KERAS_MISSING = (
    "kocc needs the tf-keras package (Keras 2 API): `pip install 'tf-keras~=2.21.0'`."
)


#: Whether ``TF_CPP_MIN_LOG_LEVEL`` was set by the user (before kocc set its
#: default): the ``kocc`` command line leaves a user's choice alone.
USER_SET_TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL" in os.environ


def configure_keras() -> None:
    """Make ``tf.keras`` resolve to tf-keras (Keras 2) or fail with a clear message.

    If TensorFlow is not imported yet, this only sets the environment
    (``TF_USE_LEGACY_KERAS=1``) that TensorFlow reads when it resolves
    ``tf.keras``, and checks that tf-keras is installed, without importing
    TensorFlow: ``import kocc`` stays fast (``kocc --help`` answers in well under
    a second). If TensorFlow is already imported, its Keras is checked now.

    Raises:
        ImportError: if TensorFlow was imported with Keras 3 active, or tf-keras is
            not installed.
    """
    if "tensorflow" not in sys.modules:
        os.environ[LEGACY_KERAS_ENV] = "1"
        # TensorFlow's C++ INFO lines (oneDNN, CPU features) are noise for a
        # library's users; warnings and errors still show. Set it to override.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
        if importlib.util.find_spec("tf_keras") is None:
            raise ImportError(_TF_KERAS_MISSING)
        return
    import tensorflow as tf

    try:
        keras_module = tf.keras.__name__
    except ImportError as err:  # TF_USE_LEGACY_KERAS=1 but tf-keras is missing
        raise ImportError(_TF_KERAS_MISSING) from err
    if not keras_module.startswith("tf_keras"):
        import keras

        raise ImportError(_KERAS3_MESSAGE.format(version=keras.__version__))
