"""Image data sets (MNIST, Fashion-MNIST, CIFAR-10) through tensorflow-datasets.

Two ways in, both through ``tfds.load``:

* **TFDS' normal path** (``source="tfds"``; the default when no data folder is
  given): TFDS' own ``mnist`` / ``fashion_mnist`` / ``cifar10`` builders download
  the published files and prepare them into the TFDS data directory, as in any
  Keras tutorial. Needs a network the first time; later calls reuse the
  prepared copy.
* **A manual folder** (``source="local"``; the default when ``data_dir`` is
  given or ``KOCC_DATA_DIR`` is set): three offline builders read local copies
  with TFDS' *manual directory* mechanism (``DownloadConfig(manual_dir=...)``),
  so ``tfds.load`` works without a network:

=====================  ==================  ======================================
builder                manual directory    files
=====================  ==================  ======================================
``kocc_mnist``         ``<data>/mnist``    ``{train,t10k}-{images-idx3,labels-
                                           idx1}-ubyte.gz``
``kocc_fashion_mnist`` ``<data>/fashion_   same idx names
                       mnist``
``kocc_cifar10``       ``<data>/cifar10``  ``test_from_jpeg_lossy.npz`` (keys
                                           ``x_test``, ``y_test``): the CIFAR-10
                                           *test* set only, decoded from JPEG
=====================  ==================  ======================================

The offline builders' features are those of TFDS' own builders (``image``: uint8
``(H, W, C)``, ``label``: ``ClassLabel``), so both ways give the same arrays.
``kocc_cifar10`` has a single ``test`` split (the only part of CIFAR-10 in the
shared folder); the one-class protocol splits it per class (see
:mod:`kocc.experiments.image_benchmark`). TFDS' ``cifar10`` has ``train`` and ``test``.

TFDS writes a prepared copy (TFRecord files) the first time a builder is loaded:
into ``tfds_dir``, else ``$KOCC_TFDS_DIR``, else TFDS' default
(``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``). A manual folder is only read.

Pixels are mapped to ``[-1, 1]`` by :func:`scale_pixels`, ``x / 127.5 - 1``, so the
negative-sampling domain of OCSDF is the box ``B = [-1, 1]^(H*W*C)``
(:data:`PIXEL_DOMAIN_BOUNDS`).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from kocc.datasets.paths import DATA_DIR_ENV
from kocc.datasets.paths import data_dir as resolve_data_dir
from kocc.extras import require

tfds = require("tensorflow_datasets")

#: Environment variable naming where TFDS writes its prepared copies.
TFDS_DIR_ENV = "KOCC_TFDS_DIR"

#: Pixels live in ``[low, high]`` after :func:`scale_pixels`.
PIXEL_DOMAIN_BOUNDS = (-1.0, 1.0)

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


@dataclass(frozen=True)
class ImageDatasetSpec:
    """What kocc knows about an image data set.

    Attributes:
        name: kocc's name (``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``).
        builder: name of the offline TFDS builder defined in this module.
        tfds_name: name of TFDS' own (downloading) builder with the same features.
        folder: sub-folder of the data directory the builder reads.
        image_shape: ``(H, W, C)``.
        class_names: label names, index = label.
        local_splits: splits the offline builder provides.
    """

    name: str
    builder: str
    tfds_name: str
    folder: str
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    local_splits: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


_FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_CIFAR_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

IMAGE_DATASETS: dict[str, ImageDatasetSpec] = {
    "mnist": ImageDatasetSpec(
        "mnist",
        "kocc_mnist",
        "mnist",
        "mnist",
        (28, 28, 1),
        tuple(str(d) for d in range(10)),
        ("train", "test"),
    ),
    "fashion_mnist": ImageDatasetSpec(
        "fashion_mnist",
        "kocc_fashion_mnist",
        "fashion_mnist",
        "fashion_mnist",
        (28, 28, 1),
        _FASHION_NAMES,
        ("train", "test"),
    ),
    "cifar10": ImageDatasetSpec(
        "cifar10",
        "kocc_cifar10",
        "cifar10",
        "cifar10",
        (32, 32, 3),
        _CIFAR_NAMES,
        ("test",),
    ),
}


def image_spec(name: str) -> ImageDatasetSpec:
    """The :class:`ImageDatasetSpec` of a data set name.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    key = str(name).lower().replace("-", "_")
    if key not in IMAGE_DATASETS:
        raise ValueError(
            f"unknown image data set {name!r}: expected one of {sorted(IMAGE_DATASETS)}"
        )
    return IMAGE_DATASETS[key]


# ------------------------------------------------------------------ raw readers
def _require_file(path: Path, builder: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"{builder}: missing file {str(path)!r}. The manual directory must hold "
            "the files listed in kocc.datasets.images (e.g. "
            "KOCC_DATA_DIR=../shared/data)."
        )
    return path


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (``.gz`` or plain) of unsigned bytes: images or labels.

    The header is a magic number (2051 for 3-D image arrays, 2049 for label
    vectors) followed by one big-endian int32 per dimension.

    Args:
        path: the file.

    Returns:
        uint8 array ``(n, H, W)`` for images, ``(n,)`` for labels.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the magic number is not an idx ubyte magic or the payload
            size does not match the header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"idx file {str(path)!r} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        raw = stream.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for an idx header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC):
        raise ValueError(
            f"{path}: idx magic number {magic} is neither {_IDX_IMAGES_MAGIC} "
            f"(images) nor {_IDX_LABELS_MAGIC} (labels)"
        )
    rank = magic & 0xFF
    header = 4 + 4 * rank
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    payload = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if payload.size != int(np.prod(dims)):
        raise ValueError(
            f"{path}: header announces shape {dims} ({int(np.prod(dims))} bytes) "
            f"but the file holds {payload.size} bytes of data"
        )
    return payload.reshape(dims)


def read_idx_split(folder: Path, prefix: str, builder: str):
    """Images ``(n, 28, 28, 1)`` and labels ``(n,)`` of one idx split.

    Args:
        folder: the manual directory.
        prefix: ``"train"`` or ``"t10k"``.
        builder: builder name, for error messages.

    Raises:
        FileNotFoundError: if a file is missing.
        ValueError: if images and labels disagree in count.
    """
    images = read_idx(_require_file(folder / f"{prefix}-images-idx3-ubyte.gz", builder))
    labels = read_idx(_require_file(folder / f"{prefix}-labels-idx1-ubyte.gz", builder))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{builder}: {prefix} images {images.shape} and labels {labels.shape} "
            "do not match"
        )
    return images[..., None], labels.astype(np.int64)


def read_cifar10_npz(folder: Path, builder: str = "kocc_cifar10"):
    """Images ``(10000, 32, 32, 3)`` and labels of ``test_from_jpeg_lossy.npz``.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if keys or shapes are not the documented ones.
    """
    path = _require_file(folder / "test_from_jpeg_lossy.npz", builder)
    with np.load(path) as data:
        missing = {"x_test", "y_test"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: missing key(s) {sorted(missing)}")
        images, labels = data["x_test"], data["y_test"].reshape(-1)
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8:
        raise ValueError(
            f"{path}: x_test must be uint8 (n, 32, 32, 3), got {images.dtype} "
            f"{images.shape}"
        )
    if len(labels) != len(images):
        raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels")
    return images, labels.astype(np.int64)


# --------------------------------------------------------------------- builders
_MANUAL_IDX = (
    "Put the four idx files {{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte.gz in "
    "the manual directory (kocc passes $KOCC_DATA_DIR/{folder})."
)


def _image_feature(spec: ImageDatasetSpec) -> tfds.features.FeatureConnector:
    """uint8 ``(H, W, C)`` images stored raw (no PNG encoding: faster to prepare
    and to read; decoded, they are what TFDS' ``Image`` feature yields)."""
    return tfds.features.Tensor(shape=spec.image_shape, dtype=np.uint8)


class _LocalImageBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Offline builder of a labelled image data set read from local files.

    Features ``image`` (:func:`_image_feature` of ``SPEC``) and ``label`` (the
    spec's class names); a subclass says what it reads (:meth:`_description`)
    and yields the examples of its files (:meth:`_examples`).
    """

    VERSION = tfds.core.Version("1.0.0")
    SPEC: ImageDatasetSpec

    def _description(self) -> str:
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self._description(),
            features=tfds.features.FeaturesDict(
                {
                    "image": _image_feature(self.SPEC),
                    "label": tfds.features.ClassLabel(
                        names=list(self.SPEC.class_names)
                    ),
                }
            ),
            supervised_keys=("image", "label"),
        )

    @staticmethod
    def _examples(images: np.ndarray, labels: np.ndarray):
        for index in range(len(labels)):
            yield index, {"image": images[index], "label": int(labels[index])}


class _IdxBuilder(_LocalImageBuilder, skip_registration=True):
    """Offline builder of an MNIST-format data set (idx ``.gz`` files)."""

    RELEASE_NOTES = {"1.0.0": "Read from local idx files (manual directory)."}

    def _description(self) -> str:
        return f"{self.SPEC.name} read from local idx files (kocc)."

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        folder = Path(dl_manager.manual_dir)
        return {
            "train": self._generate_examples(folder, "train"),
            "test": self._generate_examples(folder, "t10k"),
        }

    def _generate_examples(self, folder: Path, prefix: str):
        yield from self._examples(*read_idx_split(folder, prefix, self.name))


class KoccMnist(_IdxBuilder):
    """MNIST from ``$KOCC_DATA_DIR/mnist`` (idx ``.gz``), features of TFDS ``mnist``."""

    SPEC = IMAGE_DATASETS["mnist"]
    MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_IDX.format(folder="mnist")


class KoccFashionMnist(_IdxBuilder):
    """Fashion-MNIST from ``$KOCC_DATA_DIR/fashion_mnist`` (idx ``.gz``)."""

    SPEC = IMAGE_DATASETS["fashion_mnist"]
    MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_IDX.format(folder="fashion_mnist")


class KoccCifar10(_LocalImageBuilder):
    """CIFAR-10 *test set* decoded from JPEG (``$KOCC_DATA_DIR/cifar10``).

    Not pixel-exact and in a different order than the official test set; a single
    ``test`` split of 10,000 images, 1,000 per class.
    """

    SPEC = IMAGE_DATASETS["cifar10"]
    RELEASE_NOTES = {"1.0.0": "Read from test_from_jpeg_lossy.npz (manual dir)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put test_from_jpeg_lossy.npz (keys x_test uint8 (10000, 32, 32, 3), "
        "y_test) in the manual directory (kocc passes $KOCC_DATA_DIR/cifar10)."
    )

    def _description(self) -> str:
        return "CIFAR-10 test set decoded from JPEG copies (lossy; kocc)."

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        return {"test": self._generate_examples(Path(dl_manager.manual_dir))}

    def _generate_examples(self, folder: Path):
        yield from self._examples(*read_cifar10_npz(folder, self.name))


# ---------------------------------------------------------------------- loading
def tfds_dir(path: str | os.PathLike | None = None) -> str | None:
    """Where TFDS keeps prepared copies: ``path``, else ``$KOCC_TFDS_DIR``, else
    ``None`` (TFDS' default, ``~/tensorflow_datasets``)."""
    if path is not None:
        return str(Path(path).expanduser())
    return os.environ.get(TFDS_DIR_ENV) or None


def scale_pixels(image: tf.Tensor) -> tf.Tensor:
    """Map uint8 pixels ``[0, 255]`` to float32 ``[-1, 1]``: ``x / 127.5 - 1``."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


#: Accepted values of ``source``.
SOURCES = ("auto", "local", "tfds")


def resolve_source(source: str, data_dir: str | os.PathLike | None = None) -> str:
    """Where images come from: ``"local"`` (a manual folder) or ``"tfds"``.

    Args:
        source: ``"local"``, ``"tfds"``, or ``"auto"``: ``"local"`` when a data
            folder is given (``data_dir``, else ``$KOCC_DATA_DIR``), ``"tfds"``
            (TFDS' download and prepare) otherwise.
        data_dir: the caller's data folder, if any.

    Raises:
        ValueError: for another ``source``.
    """
    if source not in SOURCES:
        raise ValueError(
            f"source must be 'auto', 'local' (offline builders reading the data "
            f"directory) or 'tfds' (TFDS' own download), got {source!r}"
        )
    if source != "auto":
        return source
    return "local" if data_dir is not None or os.environ.get(DATA_DIR_ENV) else "tfds"


def _load_from_tfds(spec: ImageDatasetSpec, **kwargs):
    """``tfds.load`` of TFDS' own builder: download and prepare on first use."""
    try:
        return tfds.load(spec.tfds_name, **kwargs)
    except OSError as error:  # requests' connection errors are OSErrors too
        raise OSError(
            f"TFDS could not download and prepare {spec.tfds_name!r} "
            f"({type(error).__name__}: {error}). Without a network, give a folder "
            f"holding local copies: data_dir=... or {DATA_DIR_ENV} (its "
            f"{spec.folder}/ sub-folder, see kocc.datasets.images)."
        ) from error


def _load_raw(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None,
    tfds_data_dir: str | os.PathLike | None,
    source: str,
    batch_size: int | None,
):
    spec = image_spec(name)
    source = resolve_source(source, data_dir)
    kwargs = {
        "split": split,
        "data_dir": tfds_dir(tfds_data_dir),
        "as_supervised": True,
        "batch_size": batch_size,
        "shuffle_files": False,
    }
    if source == "tfds":
        return spec, _load_from_tfds(spec, **kwargs)
    base_split = split.split("[")[0]
    if base_split not in spec.local_splits:
        raise ValueError(
            f"{spec.name} has splits {list(spec.local_splits)} in the local copy, "
            f"got {split!r}"
            + (
                " (the shared CIFAR-10 is the test set only; the one-class protocol "
                "splits it per class)"
                if spec.name == "cifar10"
                else ""
            )
        )
    manual_dir = resolve_data_dir(data_dir) / spec.folder
    if not manual_dir.is_dir():
        raise FileNotFoundError(
            f"{spec.builder}: folder {str(manual_dir)!r} does not exist; the data "
            f"directory must contain {spec.folder}/"
        )
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    dataset = tfds.load(
        spec.builder,
        download_and_prepare_kwargs={"download_config": config},
        **kwargs,
    )
    return spec, dataset


def image_dataset(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    tfds_data_dir: str | os.PathLike | None = None,
    source: str = "auto",
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(image, label)`` with pixels in ``[-1, 1]``.

    Args:
        name: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
        split: a TFDS split (``"train"``, ``"test"``, ``"test[:50%]"`` ...).
        data_dir: the folder of local copies (default ``$KOCC_DATA_DIR``); used
            with ``source="local"``.
        tfds_data_dir: where TFDS writes prepared copies (see :func:`tfds_dir`).
        source: ``"local"`` (offline builders reading ``data_dir``), ``"tfds"``
            (TFDS' own builders, which download and prepare) or ``"auto"``
            (``"local"`` when a data folder is given, see
            :func:`resolve_source`).

    Returns:
        Unbatched dataset of float32 ``(H, W, C)`` images and int64 labels.

    Raises:
        ValueError: unknown name, split or source.
        FileNotFoundError: missing data directory or file.
        OSError: TFDS could not download (the message says how to work offline).
    """
    _, dataset = _load_raw(name, split, data_dir, tfds_data_dir, source, None)
    return dataset.map(
        lambda image, label: (scale_pixels(image), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def load_image_arrays(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    tfds_data_dir: str | os.PathLike | None = None,
    source: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """A whole split as numpy arrays, through ``tfds.load(..., batch_size=-1)``.

    Same arguments as :func:`image_dataset`.

    Returns:
        ``(x, y)``: float32 ``(n, H, W, C)`` in ``[-1, 1]`` and int64 ``(n,)``.
    """
    _, batch = _load_raw(name, split, data_dir, tfds_data_dir, source, -1)
    images, labels = tfds.as_numpy(batch)
    x = images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return x, labels.astype(np.int64)
