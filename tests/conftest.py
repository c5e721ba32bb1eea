"""Shared test setup: quiet TensorFlow, import kocc first (selects tf-keras)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kocc  # noqa: E402,F401  (must precede any TensorFlow import)
