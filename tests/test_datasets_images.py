"""Offline TFDS builders for MNIST / Fashion-MNIST / CIFAR-10 (kocc.datasets.images)."""

import kocc  # noqa: F401  (selects tf-keras; must run before TensorFlow loads)

# isort: split

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from kocc.datasets.images import (
    image_dataset,
    image_spec,
    load_image_arrays,
    read_idx,
    scale_pixels,
)

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

tfds.disable_progress_bar()


@pytest.fixture(scope="session")
def shared_tfds_dir(tmp_path_factory):
    """One TFDS preparation directory for the whole test session (every image
    test module uses this same path, so MNIST is prepared once)."""
    return tmp_path_factory.getbasetemp() / "kocc_tfds"


@pytest.fixture(scope="session")
def data_root():
    root = os.environ.get("KOCC_DATA_DIR")
    assert root, "KOCC_DATA_DIR must point to the shared data folder (../shared/data)"
    return Path(root)


def _sorted_rows(images: np.ndarray) -> list[bytes]:
    """Images as a sorted list of byte strings (TFDS stores examples shuffled)."""
    return sorted(row.tobytes() for row in images.reshape(len(images), -1))


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.data
def test_mnist_builder_yields_the_readme_label_counts(data_root, shared_tfds_dir):
    x_train, y_train = load_image_arrays(
        "mnist", "train", data_dir=data_root, tfds_data_dir=shared_tfds_dir
    )
    x_test, y_test = load_image_arrays(
        "mnist", "test", data_dir=data_root, tfds_data_dir=shared_tfds_dir
    )
    assert np.bincount(y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == MNIST_TEST_COUNTS
    assert x_train.shape == (60000, 28, 28, 1) and x_test.dtype == np.float32
    assert x_train.min() == -1.0 and x_train.max() == 1.0


@pytest.mark.data
def test_mnist_pixels_match_the_raw_idx_file_scaled_to_minus1_1(
    data_root, shared_tfds_dir
):
    raw = read_idx(data_root / "mnist" / "t10k-images-idx3-ubyte.gz")
    x_test, _ = load_image_arrays(
        "mnist", "test", data_dir=data_root, tfds_data_dir=shared_tfds_dir
    )
    expected = (raw / np.float32(127.5) - 1).astype(np.float32)
    assert _sorted_rows(x_test) == _sorted_rows(expected)


@pytest.mark.data
def test_tf_data_pipeline_yields_scaled_images_and_labels(data_root, shared_tfds_dir):
    dataset = image_dataset(
        "mnist", "test[:5]", data_dir=data_root, tfds_data_dir=shared_tfds_dir
    )
    images, labels = zip(*dataset.as_numpy_iterator(), strict=True)
    x, y = load_image_arrays(
        "mnist", "test[:5]", data_dir=data_root, tfds_data_dir=shared_tfds_dir
    )
    np.testing.assert_array_equal(np.stack(images), x)
    assert list(labels) == y.tolist()


@pytest.mark.data
def test_cifar10_builder_has_only_the_test_set_1000_per_class(
    data_root, shared_tfds_dir
):
    x, y = load_image_arrays(
        "cifar10", "test", data_dir=data_root, tfds_data_dir=shared_tfds_dir
    )
    assert x.shape == (10000, 32, 32, 3)
    assert np.bincount(y).tolist() == [1000] * 10
    with pytest.raises(ValueError, match="test set only"):
        load_image_arrays(
            "cifar10", "train", data_dir=data_root, tfds_data_dir=shared_tfds_dir
        )


def test_idx_builder_reads_a_small_fake_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "fashion_mnist"
    folder.mkdir(parents=True)
    for prefix, n in (("train", 12), ("t10k", 5)):
        images = rng.integers(0, 256, (n, 28, 28))
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10, 2049)
    x, y = load_image_arrays(
        "fashion_mnist", "test", data_dir=tmp_path / "data", tfds_data_dir=tmp_path
    )
    assert sorted(y.tolist()) == [0, 1, 2, 3, 4]
    raw = read_idx(folder / "t10k-images-idx3-ubyte.gz")
    labels = np.arange(5) % 10
    for image, label in zip(x, y, strict=True):  # each label keeps its own image
        expected = raw[labels == label][0] / np.float32(127.5) - 1
        np.testing.assert_array_equal(image[..., 0], expected)


def test_missing_dataset_folder_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="mnist"):
        load_image_arrays("mnist", "train", data_dir=tmp_path, tfds_data_dir=tmp_path)


def test_read_idx_rejects_bad_magic_and_truncated_payload(tmp_path):
    bad = tmp_path / "bad.gz"
    _write_idx(bad, np.zeros((2, 3), np.uint8), 1234)
    with pytest.raises(ValueError, match="magic number 1234"):
        read_idx(bad)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as stream:
        stream.write((2049).to_bytes(4, "big") + (10).to_bytes(4, "big") + b"\0" * 3)
    with pytest.raises(ValueError, match="announces shape"):
        read_idx(short)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent.gz")


def test_unknown_names_sources_and_splits_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown image data set"):
        image_spec("svhn")
    with pytest.raises(ValueError, match="source"):
        load_image_arrays("mnist", "train", data_dir=tmp_path, source="web")
    with pytest.raises(ValueError, match="splits"):
        load_image_arrays("mnist", "validation", data_dir=tmp_path)


def test_scale_pixels_maps_0_255_to_minus1_1():
    values = scale_pixels(np.array([0, 127.5, 255], np.float32)).numpy()
    np.testing.assert_allclose(values, [-1.0, 0.0, 1.0])
