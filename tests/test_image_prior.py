"""GradedBox, the random-intensity pixel prior (kocc.image_prior)."""

import kocc  # noqa: F401  (selects tf-keras; must run before TensorFlow loads)

# isort: split

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from kocc.image_prior import (
    SYMMETRIES,
    DihedralBox,
    GradedBox,
    select_symmetries,
    symmetry_ratios,
)
from kocc.sampling import Box


def test_samples_stay_in_the_box_and_cover_all_intensities():
    domain = GradedBox(-1.0, 1.0, shape=(28, 28, 1))
    z = domain.sample(2000, seed=0).numpy()
    assert z.shape == (2000, 28, 28, 1)
    assert z.min() >= -1.0 and z.max() <= 1.0
    assert bool(tf.reduce_all(domain.contains(z)))
    # per-sample mean pixel = -1 + s (up to u's average): s ~ U(0, 1)
    means = z.reshape(2000, -1).mean(axis=1)
    assert np.quantile(means, 0.05) < -0.85 and np.quantile(means, 0.95) > -0.15
    # the paper's uniform box never comes near the blank image
    uniform = Box(-1.0, 1.0, shape=(28, 28, 1)).sample(2000, seed=0).numpy()
    assert np.abs(uniform.reshape(2000, -1).mean(axis=1)).max() < 0.2


def test_sampling_is_seeded_and_projection_is_the_box_clip():
    domain = GradedBox(-1.0, 1.0, shape=(4,))
    np.testing.assert_array_equal(domain.sample(5, 3), domain.sample(5, 3))
    assert not np.array_equal(domain.sample(5, 3), domain.sample(5, 4))
    z = tf.constant([[-3.0, 0.5, 2.0, 1.0]])
    np.testing.assert_array_equal(domain.project(z), [[-1.0, 0.5, 1.0, 1.0]])


def test_graded_box_serializes_and_validates_like_box():
    domain = GradedBox(-1.0, 1.0, shape=(2, 2, 1))
    config = tf.keras.utils.serialize_keras_object(domain)
    restored = tf.keras.utils.deserialize_keras_object(config)
    assert isinstance(restored, GradedBox) and restored.shape == (2, 2, 1)
    np.testing.assert_array_equal(restored.sample(3, 1), domain.sample(3, 1))
    with pytest.raises(ValueError, match="high > low"):
        GradedBox(1.0, -1.0)


# ------------------------------------------------------------------ DihedralBox
def _asymmetric_images(n=3, side=4):
    # random images have no symmetry of the square (with probability 1)
    return np.random.default_rng(0).uniform(-1, 1, (n, side, side, 1)).astype("f4")


def _turned(images):
    """Every image under each of the 8 symmetries of the square, with the
    symmetry's index (0 = identity)."""
    out = []
    for i, img in enumerate(images):
        for k, variant in enumerate(
            [
                img,
                img[:, ::-1],
                img[::-1, :],
                img[::-1, ::-1],
                img.transpose(1, 0, 2),
                img.transpose(1, 0, 2)[::-1, :],
                img.transpose(1, 0, 2)[:, ::-1],
                img.transpose(1, 0, 2)[::-1, ::-1],
            ]
        ):
            out.append((i, k, variant))
    return out


def _which_variant(z, table):
    for i, k, variant in table:
        if np.array_equal(z, variant):
            return i, k
    return None


def test_dihedral_draws_are_turned_training_images_or_uniform_noise():
    images = _asymmetric_images()
    domain = DihedralBox(images, -1.0, 1.0, box_fraction=0.5)
    z = domain.sample(1400, seed=3).numpy()
    assert z.shape == (1400, 4, 4, 1)
    assert bool(tf.reduce_all(domain.contains(z)))
    table = _turned(images)
    found = [_which_variant(sample, table) for sample in z]
    turned = [f for f in found if f is not None]
    # about half the draws are turned images (binomial sd 0.013 at n = 1400)
    assert 0.45 < len(turned) / len(z) < 0.55
    # all three images and all seven non-identity symmetries, never the identity
    assert {i for i, _ in turned} == {0, 1, 2}
    assert {k for _, k in turned} == set(range(1, 8))
    # the other half is the paper's uniform noise: mean pixel near 0
    noise = np.array([s for s, f in zip(z, found, strict=True) if f is None])
    assert abs(noise.mean()) < 0.05 and noise.min() >= -1 and noise.max() <= 1


def test_dihedral_draws_turn_every_channel_of_an_image_alike():
    # colour images: each draw is one image under one symmetry, all channels
    # moved together (a channel-wise mix of symmetries would match no variant)
    images = np.random.default_rng(1).uniform(-1, 1, (4, 5, 5, 3)).astype("f4")
    domain = DihedralBox(images, box_fraction=0.0)
    z = domain.sample(400, seed=2).numpy()
    assert z.shape == (400, 5, 5, 3)
    found = [_which_variant(sample, _turned(images)) for sample in z]
    assert all(f is not None and f[1] != 0 for f in found)
    assert {k for _, k in found} == set(range(1, 8))


def test_dihedral_draw_benchmark_finds_the_one_symmetry_draw_equal_to_the_old():
    # benchmarks/dihedral_draw.py times the draw against the previous one (all
    # seven variants built) and checks both give the same samples bit for bit
    script = Path(__file__).parents[1] / "benchmarks" / "dihedral_draw.py"
    done = subprocess.run(
        [sys.executable, str(script), "--batch", "64", "--images", "50"]
        + ["--calls", "20", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{") :])
    assert report["equal_bit_for_bit"] is True
    assert set(report["cpu_ms_per_draw"]) == {"one_symmetry", "all_seven", "plain_box"}
    assert all(ms > 0 for ms in report["cpu_ms_per_draw"].values())


def test_dihedral_box_fraction_one_is_the_paper_sampler_and_zero_all_turned():
    images = _asymmetric_images()
    table = _turned(images)
    uniform = DihedralBox(images, box_fraction=1.0).sample(200, seed=0).numpy()
    assert all(_which_variant(s, table) is None for s in uniform)
    turned = DihedralBox(images, box_fraction=0.0).sample(200, seed=0).numpy()
    assert all(_which_variant(s, table) is not None for s in turned)


def test_dihedral_box_samples_flat_features_seeded():
    images = _asymmetric_images()
    domain = DihedralBox(images[..., 0], shape=(16,), box_fraction=0.0)
    a = domain.sample(50, seed=7).numpy()
    assert a.shape == (50, 16)
    np.testing.assert_array_equal(a, domain.sample(50, seed=7).numpy())
    assert not np.array_equal(a, domain.sample(50, seed=8).numpy())
    table = _turned(images)
    assert all(_which_variant(s.reshape(4, 4, 1), table) for s in a)


def test_dihedral_box_reloads_as_the_plain_box_of_its_bounds():
    domain = DihedralBox(_asymmetric_images(), -1.0, 1.0, box_fraction=0.25)
    config = tf.keras.utils.serialize_keras_object(domain)
    assert config["config"]["box_fraction"] == 0.25
    restored = tf.keras.utils.deserialize_keras_object(config)
    assert type(restored) is Box and restored.shape == (4, 4, 1)
    assert restored.get_config()["low"] == domain.get_config()["low"]


def test_uniform_of_a_box_subclass_draws_the_plain_boxs_noise():
    shape = (4, 4, 1)
    plain = Box(-1.0, 1.0, shape=shape).sample(20, seed=3).numpy()
    for domain in (
        DihedralBox(_asymmetric_images(), -1.0, 1.0, box_fraction=0.0),
        GradedBox(-1.0, 1.0, shape=shape),
    ):
        uniform = domain.uniform()
        assert type(uniform) is Box and uniform.shape == shape
        np.testing.assert_array_equal(uniform.sample(20, seed=3).numpy(), plain)
        assert not np.array_equal(domain.sample(20, seed=3).numpy(), plain)


@pytest.mark.parametrize(
    "images, kwargs, message",
    [
        (np.zeros((0, 4, 4, 1)), {}, "non-empty batch"),
        (np.zeros((4, 4)), {}, "non-empty batch"),
        (np.zeros((2, 4, 5, 1)), {}, "square"),
        (np.full((2, 4, 4, 1), np.nan), {}, "NaN"),
        (np.zeros((2, 4, 4, 1)), {"box_fraction": 1.5}, "box_fraction"),
        (np.zeros((2, 4, 4, 1)), {"shape": (15,)}, "do not fit"),
        (np.zeros((2, 4, 4, 1)), {"low": 1.0, "high": -1.0}, "high > low"),
    ],
)
def test_dihedral_box_rejects_bad_input(images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DihedralBox(images, **kwargs)


def test_dihedral_box_draws_only_the_symmetries_it_is_given():
    images = _asymmetric_images()
    table = _turned(images)
    domain = DihedralBox(
        images, box_fraction=0.0, symmetries=["rotate_90", "mirror_up_down"]
    )
    assert domain.symmetries == ("mirror_up_down", "rotate_90")  # SYMMETRIES order
    found = {_which_variant(s, table)[1] for s in domain.sample(300, 1).numpy()}
    # indices of _turned: 2 = mirror up-down, 5 = rotation by 90 degrees
    assert found == {2, 5}
    assert domain.get_config()["symmetries"] == ["mirror_up_down", "rotate_90"]


@pytest.mark.parametrize(
    "symmetries, message",
    [
        (["rotate_45"], "unknown symmetries"),
        (["rotate_90", "rotate_90"], "repeated"),
        ([], "at least one"),
    ],
)
def test_dihedral_box_rejects_bad_symmetries(symmetries, message):
    with pytest.raises(ValueError, match=message):
        DihedralBox(_asymmetric_images(), symmetries=symmetries)


def _mirror_symmetric_class(n=60, side=8, seed=0):
    """Random images made symmetric under the left-right mirror only, with a
    bright top row so that no other symmetry of the square leaves them close."""
    rng = np.random.default_rng(seed)
    half = rng.uniform(-1, 1, (n, side, side // 2))
    images = np.concatenate([half, half[:, :, ::-1]], axis=2)
    images[:, 0, :] = 1.0
    images[:, -1, :] = -1.0
    return images.astype("f4")


def test_symmetry_ratios_find_the_mirror_a_class_is_invariant_under():
    images = _mirror_symmetric_class()
    ratios = symmetry_ratios(images, sample=30, seed=1)
    assert set(ratios) == set(SYMMETRIES)
    # g(x) = x for the mirror: distance 0 to the class
    assert ratios["mirror_left_right"] < 0.01
    assert min(v for k, v in ratios.items() if k != "mirror_left_right") > 1.1
    assert select_symmetries(images, sample=30) == SYMMETRIES[1:]
    # noisy copies of one random pattern: no symmetry of the square keeps
    # them near the class, all seven are kept
    rng = np.random.default_rng(2)
    pattern = rng.uniform(-1, 1, (6, 6))
    copies = pattern + 0.1 * rng.standard_normal((40, 6, 6))
    assert select_symmetries(copies) == SYMMETRIES
    # i.i.d. noise images are invariant in distribution: a turned one is as
    # close to the others as they are to each other (ratio near 1)
    noise = symmetry_ratios(_asymmetric_images(n=200, side=6))
    assert all(0.8 < r < 1.1 for r in noise.values()), noise


def test_symmetry_ratios_reject_bad_input():
    with pytest.raises(ValueError, match="at least 2 images"):
        symmetry_ratios(np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="square"):
        symmetry_ratios(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match="threshold"):
        select_symmetries(np.zeros((3, 4, 4)), threshold=0)
