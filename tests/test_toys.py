import numpy as np
import pytest
from scipy.spatial import cKDTree

from kocc.datasets.toys import TOY_NAMES, annulus, disk, far_uniform_points, make_toy


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toys_are_standardized_and_reproducible(name):
    x, scaler = make_toy(name, 1000, seed=3)
    assert x.shape == (1000, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(0), 1, atol=1e-4)
    np.testing.assert_array_equal(x, make_toy(name, 1000, seed=3)[0])
    np.testing.assert_allclose(
        scaler.transform(scaler.inverse_transform(x)), x, atol=1e-5
    )


def test_unknown_toy_is_rejected_with_the_list_of_names():
    with pytest.raises(ValueError, match="two_moons"):
        make_toy("three_moons")


def test_disk_and_annulus_sdf_are_positive_inside_and_zero_on_the_boundary():
    x, sdf = disk(2000, radius=1.0)
    assert (sdf(x) >= 0).all()
    assert sdf(np.array([[1.0, 0.0]]))[0] == pytest.approx(0.0)
    y, sdf2 = annulus(2000, 1.0, 2.0)
    r = np.linalg.norm(y, axis=1)
    assert r.min() >= 1.0 and r.max() <= 2.0
    assert sdf2(np.array([[0.0, 0.0]]))[0] == pytest.approx(-1.0)
    assert sdf2(np.array([[3.0, 0.0]]))[0] == pytest.approx(-1.0)
    assert sdf2(np.array([[1.5, 0.0]]))[0] == pytest.approx(0.5)


def test_far_uniform_points_keep_their_distance_from_the_data():
    x, _ = make_toy("two_moons", 500, seed=0)
    far = far_uniform_points(x, 300, min_distance=0.3, seed=1)
    assert far.shape == (300, 2)
    assert (np.abs(far) <= 3).all()
    assert cKDTree(x).query(far)[0].min() > 0.3
