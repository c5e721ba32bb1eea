"""Certified coarse-to-fine grid evaluation (kocc.certified_grid) in extract_mesh:
the same mesh as the dense grid, fewer evaluations, and no pruning without a
proven Lipschitz bound."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import trimesh

import kocc  # noqa: F401
from kocc.activations import GroupSort2
from kocc.architectures import lipschitz_mlp
from kocc.certified_grid import evaluate_grid_certified, proven_lipschitz_bound
from kocc.surfaces import (
    ImplicitSurface,
    IsotropicStandardization,
    evaluate_grid,
    extract_mesh,
    fit_point_cloud,
)


def _assert_same_mesh(dense: trimesh.Trimesh, pruned: trimesh.Trimesh) -> None:
    assert pruned.vertices.shape == dense.vertices.shape
    np.testing.assert_array_equal(pruned.faces, dense.faces)
    np.testing.assert_allclose(pruned.vertices, dense.vertices, rtol=0, atol=1e-6)
    assert pruned.is_watertight == dense.is_watertight


@pytest.fixture(scope="module")
def fitted_sphere() -> ImplicitSurface:
    points, _ = trimesh.sample.sample_surface(
        trimesh.creation.icosphere(4), 1024, seed=0
    )
    points = points * 2.0 + np.array([3.0, -1.0, 0.5])  # not standardized already
    return fit_point_cloud(
        points, widths=(32, 32), activation="groupsort2", steps=600, epochs=1, seed=0
    )


def test_pruned_extraction_of_a_fitted_surface_gives_the_dense_mesh(fitted_sphere):
    dense = extract_mesh(fitted_sphere, 64, lipschitz_pruning=False)
    pruned = extract_mesh(fitted_sphere, 64)
    _assert_same_mesh(dense, pruned)
    assert pruned.is_watertight
    stats = pruned.metadata["grid_evaluation"]
    assert stats["lipschitz_bound"] == pytest.approx(
        1.0 / fitted_sphere.standardization.scale, rel=2e-3
    )
    # only a shell around the level set is evaluated (measured: 42 %; the
    # shell is thick at 64^3 after a short fit, whose f is flat, |grad f| < 1)
    assert stats["evaluated_points"] < 0.7 * stats["grid_points"]
    assert stats["pruned"] and not dense.metadata["grid_evaluation"]["pruned"]
    assert dense.metadata["grid_evaluation"]["evaluated_points"] == 64**3


def test_pruned_extraction_at_an_explicit_level_and_cut_by_the_box(fitted_sphere):
    level = fitted_sphere.level + 0.05
    low, high = fitted_sphere.bounds
    # the box cuts the surface on +x: the padded grid closes it on the face
    bounds = np.stack([low, high - np.array([0.4 * (high - low)[0], 0.0, 0.0])])
    dense = extract_mesh(
        fitted_sphere, 40, level=level, bounds=bounds, lipschitz_pruning=False
    )
    pruned = extract_mesh(fitted_sphere, 40, level=level, bounds=bounds)
    _assert_same_mesh(dense, pruned)
    assert pruned.is_watertight
    assert pruned.vertices[:, 0].max() == pytest.approx(bounds[1, 0], abs=1e-5)


def hollow_octahedron(radius: float, margin: float) -> tf.keras.Sequential:
    """f = m - | |x|_1 - R |: a Keras chain with a proven bound whose shell
    {f >= level} encloses an interior (Dense and GroupSort2 layers: pairs
    (t, -t) sorted give |t|)."""
    model = tf.keras.Sequential(
        [
            tf.keras.layers.Input((3,)),
            tf.keras.layers.Dense(6),
            GroupSort2(),
            tf.keras.layers.Dense(2),
            GroupSort2(),
            tf.keras.layers.Dense(1),
        ]
    )
    pairs = np.zeros((3, 6), np.float32)
    for i in range(3):
        pairs[i, 2 * i], pairs[i, 2 * i + 1] = 1.0, -1.0  # (x_i, -x_i)
    l1 = np.zeros((6, 2), np.float32)
    l1[1::2, 0], l1[1::2, 1] = 1.0, -1.0  # (|x|_1 - R, R - |x|_1)
    model.set_weights(
        [
            pairs,
            np.zeros(6, np.float32),
            l1,
            np.array([-radius, radius], np.float32),
            np.array([[0.0], [-1.0]], np.float32),  # m - | |x|_1 - R |
            np.array([margin], np.float32),
        ]
    )
    return model


def test_pruned_ridge_extraction_gives_the_dense_ridge_mesh(fitted_sphere):
    # a hollow shell: the band evaluated exactly after the certified pass
    octahedron = hollow_octahedron(radius=1.05, margin=0.1)
    bounds = np.array([[-1.6, -1.6, -1.6], [1.6, 1.6, 1.6]])
    kwargs = dict(level=-0.35, bounds=bounds, surface="ridge")
    dense = extract_mesh(octahedron, 50, lipschitz_pruning=False, **kwargs)
    pruned = extract_mesh(octahedron, 50, **kwargs)
    _assert_same_mesh(dense, pruned)
    stats = pruned.metadata["grid_evaluation"]
    assert stats["pruned"] and stats["ridge_points"] > 0
    assert stats["evaluated_points"] < 0.5 * stats["grid_points"]
    np.testing.assert_allclose(np.abs(pruned.vertices).sum(axis=1), 1.05, atol=0.02)
    # a fitted surface: the level interval of the local level certified
    dense = extract_mesh(fitted_sphere, 64, surface="ridge", lipschitz_pruning=False)
    pruned = extract_mesh(fitted_sphere, 64, surface="ridge")
    _assert_same_mesh(dense, pruned)
    stats = pruned.metadata["grid_evaluation"]
    assert stats["pruned"] and stats["evaluated_points"] < stats["grid_points"]
    low, high = stats["level_range"]
    assert low == fitted_sphere.level and high > low  # the local level is used


def test_pruned_extraction_of_a_random_lipschitz_mlp_gives_the_dense_mesh():
    network = lipschitz_mlp(3, (16, 16), "fullsort", seed=1)
    probe = np.random.default_rng(0).uniform(-1, 1, (4000, 3)).astype(np.float32)
    scores = network(probe, training=False).numpy().ravel()
    surface = ImplicitSurface(
        network,
        IsotropicStandardization(np.array([0.1, 0.2, -0.3], np.float32), 0.7),
        level=float(np.quantile(scores, 0.9)),
        bounds=np.array([[-0.6, -0.5, -1.0], [0.8, 0.9, 0.4]], np.float32),
    )
    dense = extract_mesh(surface, 37, lipschitz_pruning=False)
    pruned = extract_mesh(surface, 37)
    _assert_same_mesh(dense, pruned)
    assert pruned.metadata["grid_evaluation"]["pruned"]


def _cone_grids(lipschitz: float):
    """The certified and the dense 61^3 grid of a 1-Lipschitz cone.

    f(x) = 0.6 - |x| at level 0 (the sphere of radius 0.6), certified with the
    given Lipschitz bound.
    """

    def cone(x):
        return 0.6 - tf.norm(x, axis=1)

    bounds = np.array([[-1.0] * 3, [1.0] * 3], np.float32)
    spacing = (bounds[1] - bounds[0]) / 60
    grid = evaluate_grid_certified(cone, bounds[0], spacing, 61, 0.0, lipschitz, 4096)
    return grid, evaluate_grid(cone, bounds, 61)


def test_certified_grid_keeps_every_value_on_its_side_of_the_level():
    grid, exact = _cone_grids(1.0)
    assert not np.isnan(grid.volume).any()
    np.testing.assert_array_equal(np.sign(grid.volume), np.sign(exact))
    # exact where a neighbour (within one cell) is on the other side
    crossing = np.zeros(exact.shape, bool)
    sign = exact > 0
    for axis in range(3):
        change = (
            sign[(slice(None),) * axis + (slice(1, None),)]
            != sign[(slice(None),) * axis + (slice(None, -1),)]
        )
        crossing[(slice(None),) * axis + (slice(1, None),)] |= change
        crossing[(slice(None),) * axis + (slice(None, -1),)] |= change
    np.testing.assert_array_equal(grid.volume[crossing], exact[crossing])
    assert grid.exact_points < 0.5 * 61**3


def test_a_wrong_lipschitz_bound_would_change_the_sign_somewhere():
    # the certificate is what keeps the signs: with L = 0.02 for a
    # 1-Lipschitz cone, blocks crossing the level get certified and filled
    grid, exact = _cone_grids(0.02)
    assert np.any(np.sign(grid.volume) != np.sign(exact))


class _Subclassed(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = tf.keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)


def test_networks_without_a_proven_bound_are_evaluated_densely():
    softplus = tf.keras.Sequential(
        [
            tf.keras.layers.Input((3,)),
            tf.keras.layers.Dense(8, activation="softplus"),
            tf.keras.layers.Dense(1),
        ]
    )
    subclassed = _Subclassed()
    subclassed(tf.zeros((1, 3)))
    assert proven_lipschitz_bound(softplus) is None
    assert proven_lipschitz_bound(subclassed) is None
    assert proven_lipschitz_bound(lambda x: x) is None

    def sphere(x):
        return 0.5 - tf.norm(x, axis=1)

    bounds = np.array([[-1.0] * 3, [1.0] * 3])
    probe = np.random.default_rng(0).uniform(-1, 1, (1000, 3)).astype(np.float32)
    softplus_level = float(np.median(softplus(probe).numpy()))
    for model, level in ((sphere, 0.0), (softplus, softplus_level)):
        surface = ImplicitSurface(
            model,
            IsotropicStandardization(np.zeros(3, np.float32), 1.0),
            level=level,
            bounds=bounds,
        )
        stats = extract_mesh(surface, 20).metadata["grid_evaluation"]
        assert stats["lipschitz_bound"] is None
        assert stats["evaluated_points"] == 20**3


def test_bound_of_a_plain_relu_chain_is_the_product_of_spectral_norms():
    tf.keras.utils.set_random_seed(0)
    relu = tf.keras.Sequential(
        [
            tf.keras.layers.Input((3,)),
            tf.keras.layers.Dense(16, activation="relu"),
            tf.keras.layers.Dense(1),
        ]
    )
    norms = [np.linalg.norm(w, 2) for w in relu.get_weights()[::2]]
    assert proven_lipschitz_bound(relu) == pytest.approx(np.prod(norms), rel=1e-6)
    weights = relu.get_weights()
    weights[0][0, 0] = np.nan
    relu.set_weights(weights)
    assert proven_lipschitz_bound(relu) is None


def test_a_bound_too_loose_to_pay_falls_back_to_dense_evaluation():
    tf.keras.utils.set_random_seed(0)
    relu = tf.keras.Sequential(
        [
            tf.keras.layers.Input((3,)),
            tf.keras.layers.Dense(32, activation="relu"),
            tf.keras.layers.Dense(32, activation="relu"),
            tf.keras.layers.Dense(1),
        ]
    )
    relu.set_weights([w * 4.0 for w in relu.get_weights()])  # bound ~ 64x too big
    probe = np.random.default_rng(0).uniform(-1, 1, (1000, 3)).astype(np.float32)
    surface = ImplicitSurface(
        relu,
        IsotropicStandardization(np.zeros(3, np.float32), 1.0),
        level=float(np.median(relu(probe).numpy())),
        bounds=np.array([[-1.0] * 3, [1.0] * 3]),
    )
    mesh = extract_mesh(surface, 40)
    stats = mesh.metadata["grid_evaluation"]
    assert stats["lipschitz_bound"] > 50
    assert not stats["pruned"]
    assert stats["exact_points"] == 40**3
    assert stats["evaluated_points"] == 40**3 + 10**3  # + the first centres
    _assert_same_mesh(extract_mesh(surface, 40, lipschitz_pruning=False), mesh)
