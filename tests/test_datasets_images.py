"""Image data sets through TFDS (kocc.datasets.images): TFDS' own builders
(download and prepare; the download faked here, no network) and the offline
builders reading a manual folder."""

import kocc  # noqa: F401  (selects tf-keras; must run before TensorFlow loads)

# isort: split

import gzip
import socket
from pathlib import Path

import numpy as np
import pytest
import requests
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from kocc.datasets.images import (
    image_dataset,
    image_spec,
    load_image_arrays,
    read_idx,
    resolve_source,
    scale_pixels,
)
from kocc.datasets.paths import data_dir

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

tfds.disable_progress_bar()


@pytest.fixture(scope="session")
def data_root():
    """``$KOCC_DATA_DIR`` (the ``data`` marker skips these tests when unset)."""
    return data_dir()


def _sorted_rows(images: np.ndarray) -> list[bytes]:
    """Images as a sorted list of byte strings (TFDS stores examples shuffled)."""
    return sorted(row.tobytes() for row in images.reshape(len(images), -1))


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    with gzip.open(path, "wb") as stream:
        stream.write(_idx_bytes(array, magic))


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


# ------------------------------------------------ TFDS' normal path, download faked
@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection fails: these tests must never reach the network."""

    def refuse(*args, **kwargs):
        raise OSError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def fake_download(monkeypatch, tmp_path, no_network):
    """TFDS' DownloadManager answers from ``tmp_path/extracted``.

    ``download_and_extract`` maps each URL to the file of the same name (without
    ``.gz``: what TFDS hands its builder after extraction), or a ``.tar.gz`` URL
    to a folder; the calls are recorded.
    """
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    calls = []

    def local_path(url):
        name = url.rsplit("/", 1)[-1]
        return extracted / name.removesuffix(".tar.gz").removesuffix(".gz")

    def download_and_extract(self, url_or_urls):
        calls.append(url_or_urls)
        if isinstance(url_or_urls, dict):
            return {key: local_path(url) for key, url in url_or_urls.items()}
        return local_path(url_or_urls)

    monkeypatch.setattr(
        tfds.download.DownloadManager, "download_and_extract", download_and_extract
    )
    monkeypatch.delenv("KOCC_DATA_DIR", raising=False)
    return extracted, calls


def test_without_a_data_folder_mnist_is_downloaded_and_prepared_by_tfds(
    fake_download, monkeypatch, tmp_path
):
    extracted, calls = fake_download
    rng = np.random.default_rng(1)
    raw = {}
    for prefix, n in (("train", 12), ("t10k", 5)):
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        raw[prefix] = images, (np.arange(n) * 3) % 10
        (extracted / f"{prefix}-images-idx3-ubyte").write_bytes(
            _idx_bytes(raw[prefix][0], 2051)
        )
        (extracted / f"{prefix}-labels-idx1-ubyte").write_bytes(
            _idx_bytes(raw[prefix][1], 2049)
        )
    # TFDS' mnist builder reads a fixed number of examples: the tiny files' counts
    monkeypatch.setattr(tfds_mnist, "_TRAIN_EXAMPLES", 12)
    monkeypatch.setattr(tfds_mnist, "_TEST_EXAMPLES", 5)
    store = tmp_path / "tfds"

    x, y = load_image_arrays("mnist", "train", tfds_data_dir=store)

    assert len(calls) == 1 and "train-images-idx3-ubyte.gz" in str(calls[0])
    assert (store / "mnist").is_dir()  # prepared into the TFDS data directory
    images, labels = raw["train"]
    assert sorted(y.tolist()) == sorted(labels.tolist())
    expected = images[..., None] / np.float32(127.5) - 1
    assert _sorted_rows(x) == _sorted_rows(expected.astype(np.float32))
    # the prepared copy is reused: no second download
    x_test, y_test = load_image_arrays("mnist", "test", tfds_data_dir=store)
    assert len(calls) == 1 and x_test.shape == (5, 28, 28, 1)
    assert sorted(y_test.tolist()) == sorted(raw["t10k"][1].tolist())


def test_without_a_data_folder_cifar10_has_tfds_train_and_test_splits(
    fake_download, tmp_path
):
    extracted, _ = fake_download
    folder = extracted / "cifar-10-binary" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    names = image_spec("cifar10").class_names
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n")
    rng = np.random.default_rng(2)
    planes = {}  # file -> (labels, images stored channel-first as in CIFAR's .bin)
    for index, stem in enumerate(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    ):
        labels = np.array([index % 10, (index + 3) % 10], np.uint8)
        chw = rng.integers(0, 256, (2, 3, 32, 32)).astype(np.uint8)
        rows = [
            np.concatenate([[lab], img.reshape(-1)])
            for lab, img in zip(labels, chw, strict=True)
        ]
        (folder / f"{stem}.bin").write_bytes(np.stack(rows).astype(np.uint8).tobytes())
        planes[stem] = labels, chw

    x, y = load_image_arrays("cifar10", "test", tfds_data_dir=tmp_path / "tfds")
    x_train, _ = load_image_arrays("cifar10", "train", tfds_data_dir=tmp_path / "tfds")

    assert x_train.shape == (10, 32, 32, 3)
    labels, chw = planes["test_batch"]
    assert sorted(y.tolist()) == sorted(labels.tolist())
    hwc = chw.transpose(0, 2, 3, 1) / np.float32(127.5) - 1  # channels last
    assert _sorted_rows(x) == _sorted_rows(hwc.astype(np.float32))


def test_a_data_folder_selects_the_manual_builders_and_never_downloads(
    fake_download, monkeypatch, tmp_path
):
    _, calls = fake_download
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for prefix, n in (("train", 3), ("t10k", 4)):
        _write_idx(
            folder / f"{prefix}-images-idx3-ubyte.gz", np.zeros((n, 28, 28)), 2051
        )
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n), 2049)
    monkeypatch.setenv("KOCC_DATA_DIR", str(tmp_path / "data"))
    x, y = load_image_arrays("mnist", "test", tfds_data_dir=tmp_path / "tfds")
    assert x.shape == (4, 28, 28, 1) and sorted(y.tolist()) == [0, 1, 2, 3]
    assert calls == []
    assert (tmp_path / "tfds" / "kocc_mnist").is_dir()


def test_auto_source_is_local_exactly_when_a_data_folder_is_given(monkeypatch):
    monkeypatch.delenv("KOCC_DATA_DIR", raising=False)
    assert resolve_source("auto") == "tfds"
    assert resolve_source("auto", data_dir="somewhere") == "local"
    assert resolve_source("tfds", data_dir="somewhere") == "tfds"
    monkeypatch.setenv("KOCC_DATA_DIR", "somewhere")
    assert resolve_source("auto") == "local"
    assert resolve_source("tfds") == "tfds"


def test_a_failed_download_says_how_to_work_offline(monkeypatch, tmp_path, no_network):
    def unreachable(self, url_or_urls):
        raise requests.exceptions.ConnectionError("Name or service not known")

    monkeypatch.setattr(
        tfds.download.DownloadManager, "download_and_extract", unreachable
    )
    monkeypatch.delenv("KOCC_DATA_DIR", raising=False)
    with pytest.raises(OSError, match="KOCC_DATA_DIR") as info:
        load_image_arrays("fashion_mnist", "test", tfds_data_dir=tmp_path)
    assert "fashion_mnist" in str(info.value)
    assert "Name or service not known" in str(info.value)
