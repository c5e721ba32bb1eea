"""The main job: ``kocc train recipes/toy2d_two_moons.yaml`` separates the moons."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "toy2d_two_moons.yaml"


def _kocc_command() -> list[str]:
    script = shutil.which("kocc", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "kocc.experiments.cli"]


@pytest.mark.slow
def test_default_two_moons_recipe_has_two_positive_regions_and_auroc(tmp_path):
    pytest.importorskip("yaml", reason="kocc train needs the [experiments] extra")
    out = tmp_path / "run"
    subprocess.run(
        [*_kocc_command(), "train", str(RECIPE), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["auroc"] >= 0.99
    model = tf.keras.models.load_model(out / "model.keras")
    g = np.linspace(-3.0, 3.0, 300, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    scores = model.score_samples(np.stack([gx.ravel(), gy.ravel()], 1))
    _, components = ndimage.label(scores.reshape(gx.shape) > 0)
    assert components == 2  # one region per moon, not a bridge around the centre
