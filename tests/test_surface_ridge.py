"""Ridge extraction (kocc.surface_ridge): one sheet on the surface where the shell
encloses an interior, the local level elsewhere, and the errors it names."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import kocc  # noqa: F401
from kocc.surface_ridge import LocalLevel, ridge_field, ridge_regions
from kocc.surfaces import extract_mesh

RADIUS, MARGIN, HALF_THICKNESS = 0.8, 0.1, 0.15
BOUNDS = np.array([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])


def hollow_sphere_score(x: tf.Tensor) -> tf.Tensor:
    """m - |r - R|: a distance-like score peaked on the sphere of radius R."""
    return MARGIN - tf.abs(tf.norm(x, axis=1) - RADIUS)


def test_ridge_of_a_hollow_shell_is_one_sheet_on_the_surface():
    level = MARGIN - HALF_THICKNESS  # the shell R - 0.15 <= r <= R + 0.15
    shell = extract_mesh(hollow_sphere_score, 48, level=level, bounds=BOUNDS)
    ridge = extract_mesh(
        hollow_sphere_score, 48, level=level, bounds=BOUNDS, surface="ridge"
    )
    radii = np.linalg.norm(shell.vertices, axis=1)
    # the shell: two sheets, 0.15 inside and outside the sphere
    assert len(shell.split(only_watertight=False)) == 2
    assert np.abs(np.abs(radii - RADIUS) - HALF_THICKNESS).max() < 0.01
    # the ridge: one closed sheet on the sphere, enclosing the ball
    assert ridge.is_watertight and len(ridge.split(only_watertight=False)) == 1
    spacing = 3.0 / 47
    error = np.abs(np.linalg.norm(ridge.vertices, axis=1) - RADIUS)
    # measured: 0.047 spacings at most (the kink of |r - R| is found between
    # grid points by the central differences, module docstring)
    assert error.max() < 0.15 * spacing, error.max() / spacing
    assert ridge.volume == pytest.approx(4 / 3 * np.pi * RADIUS**3, rel=0.02)
    assert ridge.metadata["grid_evaluation"]["ridge_points"] > 0


def test_ridge_leaves_a_shell_that_encloses_nothing_unchanged():
    def ball(x):  # {f >= level} is a solid ball: no interior, no ridge band
        return MARGIN - tf.norm(x, axis=1)

    shell = extract_mesh(ball, 40, level=-0.7, bounds=BOUNDS)
    ridge = extract_mesh(ball, 40, level=-0.7, bounds=BOUNDS, surface="ridge")
    np.testing.assert_array_equal(ridge.faces, shell.faces)
    np.testing.assert_allclose(ridge.vertices, shell.vertices, atol=1e-6)
    assert ridge.metadata["grid_evaluation"]["ridge_points"] == 0


def test_a_shell_leaking_through_a_gap_loses_its_ridge_and_a_lower_level_restores_it():
    # a gap between the points: the score dips by 0.1 on a cap of the sphere,
    # so at the level 0.05 the shell has a hole there, its interior joins the
    # exterior, and the mesh falls back to the shell's boundary, which is off
    # the sphere; at the level -0.05 (what kocc.surface_ridge's
    # DEFAULT_RIDGE_LEVEL_OFFSET does for a fit) the shell is closed and the
    # ridge is one sheet on the sphere again
    pole = tf.constant([[0.0, 0.0, RADIUS]])

    def dented(x):
        cap = tf.maximum(0.0, 1.0 - tf.norm(x - pole, axis=1) / 0.4)
        return hollow_sphere_score(x) - 0.1 * cap

    leaking = extract_mesh(dented, 48, level=0.05, bounds=BOUNDS, surface="ridge")
    closed = extract_mesh(dented, 48, level=-0.05, bounds=BOUNDS, surface="ridge")
    assert leaking.metadata["grid_evaluation"]["ridge_points"] == 0
    leaking_error = np.abs(np.linalg.norm(leaking.vertices, axis=1) - RADIUS)
    assert np.median(leaking_error) > 0.03  # the shell's sheets, 0.05 off
    assert closed.metadata["grid_evaluation"]["ridge_points"] > 0
    assert closed.is_watertight and len(closed.split(only_watertight=False)) == 1
    closed_error = np.abs(np.linalg.norm(closed.vertices, axis=1) - RADIUS)
    assert np.median(closed_error) < 0.15 * 3.0 / 47
    assert closed.volume == pytest.approx(4 / 3 * np.pi * RADIUS**3, rel=0.03)


@pytest.mark.parametrize("reach, band_layers", [(1.5, []), (2.0, [0, 1, 2])])
def test_ridge_band_holds_a_whole_wall_up_to_twice_the_reach(reach, band_layers):
    # a hollow cube whose wall is 3 points thick: wall layer 0 is 1 point from
    # the exterior and 3 from the interior, layer 1 is 2 from both, layer 2 3
    # and 1: 4 in all, so the whole wall is in the band for reach >= 2
    shell = np.zeros((16, 16, 16), bool)
    shell[3:13, 3:13, 3:13] = True
    shell[6:10, 6:10, 6:10] = False
    regions = ridge_regions(shell, reach)
    assert regions.interior.sum() == 4**3 and regions.interior[6:10, 6:10, 6:10].all()
    # across the wall at the middle of a face (Euclidean distances are longer
    # toward the cube's edges): layers 0, 1, 2 are x = 3, 4, 5 and 12, 11, 10
    for layers in (regions.band[3:6, 8, 8], regions.band[12:9:-1, 7, 8]):
        np.testing.assert_array_equal(layers, np.isin([0, 1, 2], band_layers))
    assert not regions.band[~shell].any()
    norms = np.linalg.norm(regions.outward[:, regions.band], axis=0)
    np.testing.assert_allclose(norms, 1.0, atol=1e-6)
    assert not regions.outward[:, ~regions.band].any()


def test_ridge_field_is_positive_inside_and_negative_outside_the_ridge():
    grid = np.linspace(-1.5, 1.5, 32)
    xyz = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1)
    volume = hollow_sphere_score(tf.constant(xyz.reshape(-1, 3), tf.float32))
    volume = volume.numpy().reshape(32, 32, 32)
    level = MARGIN - 0.2
    field = ridge_field(volume, level, ridge_regions(volume >= level))
    r = np.linalg.norm(xyz, axis=-1)
    spacing = grid[1] - grid[0]
    assert (field[r < RADIUS - spacing] > 0).all()  # the interior and inner side
    assert (field[r > RADIUS + spacing] < 0).all()  # the outer side and exterior


def test_local_level_follows_the_nearby_points_above_the_floor():
    points = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    scores = np.array([0.5, 0.2, 0.2, 0.2])
    local = LocalLevel.of(points, scores, floor=-1.0, offset=0.1)
    assert local.spacing == pytest.approx(1.0)  # median nearest-neighbour gap
    # at the origin: weight 1 for itself, exp(-1/2) for its three neighbours
    w = np.exp(-0.5)
    expected = (0.5 + 3 * w * 0.2) / (1 + 3 * w) - 0.1
    at_points = local(points)
    assert at_points[0] == pytest.approx(expected)
    assert at_points[0] > at_points[1]  # the higher-scored point lifts it
    # far away the nearest point alone counts
    assert local(np.array([[40.0, 0, 0]]))[0] == pytest.approx(0.2 - 0.1)
    assert local.high == pytest.approx(0.5 - 0.1)
    # never below the floor
    floored = LocalLevel.of(points, scores, floor=0.0, offset=0.5)
    assert floored(np.array([[40.0, 0, 0]]))[0] == 0.0
    assert (floored(points) >= 0.0).all() and floored.high == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(surface="hull"), r"surface must be one of \('shell', 'ridge'\)"),
        (dict(surface="ridge", ridge_reach=0.0), "ridge_reach"),
        (dict(surface="ridge", local_offset=-1.0), "local_offset must be >= 0"),
    ],
)
def test_extract_mesh_names_a_bad_surface_mode_reach_or_offset(kwargs, message):
    with pytest.raises(ValueError, match=message):
        extract_mesh(hollow_sphere_score, 8, level=0.0, bounds=BOUNDS, **kwargs)


def test_ridge_regions_need_a_3d_grid_and_local_level_matching_scores():
    with pytest.raises(ValueError, match="3-D boolean grid"):
        ridge_regions(np.ones((4, 4), bool))
    with pytest.raises(ValueError, match=r"\(n, 3\) points and n scores"):
        LocalLevel.of(np.zeros((5, 3)), np.zeros(4), floor=0.0, offset=0.2)
