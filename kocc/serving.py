r"""Score and evaluate data with a serving export or a trained run.

The export itself (:func:`kocc.export.save_for_serving`) is a plain TF
SavedModel: any TensorFlow runtime can serve it. This module is the Python side
of ``kocc predict`` and ``kocc evaluate``: one :class:`ServedModel` for either a
serving export or a run directory (``model.keras``, exported in memory with the
same soundness check), batching and input checks, ``.npy`` / ``.csv`` inputs,
``.npy`` / ``.npz`` / ``.csv`` outputs, and the AUROC and certified AUROC
(Béthune et al., ICML 2023, Proposition 1) of normal versus anomalous samples:
an l2 attack of radius :math:`\epsilon` lowers a normal score by at most
:math:`L\epsilon` and raises an anomalous one by at most :math:`L\epsilon`, so
the certified AUROC is the AUROC of :math:`f(x) - L\epsilon` against
:math:`f(z) + L\epsilon` (:func:`kocc.metrics.certified_auroc`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from kocc.export import (
    METADATA_PATH,
    OUTPUT_KEYS,
    CertifiedScorer,
    ServingMetadata,
    certify_network,
    load_trained_model,
    read_serving_metadata,
    vanilla_network,
)
from kocc.metrics import certified_auroc
from kocc.validation import check_batch

#: Input file formats :func:`read_inputs` understands.
INPUT_SUFFIXES = (".npy", ".csv")
#: Output file formats :func:`write_outputs` understands.
OUTPUT_SUFFIXES = (".npy", ".npz", ".csv")


class ServedModel:
    """Certified scores of a serving export or of a trained run.

    Build it with :meth:`load`. Calling it on a batch returns the serving
    signature's outputs as numpy arrays.

    Args:
        serve: maps a float32 batch to the signature's output tensors.
        threshold: the decision threshold variable.
        metadata: what the export stores (threshold, ``L``, feature shape).
    """

    def __init__(
        self,
        serve: Callable[[tf.Tensor], dict[str, tf.Tensor]],
        threshold: tf.Variable,
        metadata: ServingMetadata,
    ) -> None:
        self._serve = serve
        self._threshold = threshold
        self.metadata = metadata

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        threshold: float | None = None,
        lipschitz_tolerance: float = 1e-3,
    ) -> ServedModel:
        """Load a serving export, a run directory or a ``.keras`` file.

        Args:
            path: a SavedModel written by :func:`kocc.export.save_for_serving`,
                a run directory holding ``model.keras``, or a ``.keras`` file.
            threshold: decision threshold to use instead of the stored one
                (for a run: instead of 0).
            lipschitz_tolerance: for a run, see
                :func:`kocc.export.certify_network`.

        Raises:
            FileNotFoundError: if ``path`` is none of these.
            kocc.export.CertificateError: if a run's network cannot be proved
                1-Lipschitz.
        """
        path = Path(path)
        if (path / METADATA_PATH).is_file():
            metadata = read_serving_metadata(path)
            module = tf.saved_model.load(str(path))
            signature = module.signatures[metadata.signature]

            def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
                return signature(**{metadata.input_name: x})

            served = cls(serve, module.threshold, metadata)
        else:
            model = load_trained_model(path)
            network = vanilla_network(model)
            lipschitz, bound = certify_network(network, lipschitz_tolerance)
            scorer = CertifiedScorer(network, 0.0, lipschitz)
            metadata = ServingMetadata(
                threshold=0.0,
                lipschitz_constant=lipschitz,
                lipschitz_bound=bound,
                feature_shape=scorer.feature_shape,
            )
            served = cls(scorer.serve, scorer.threshold, metadata)
        if threshold is not None:
            served.set_threshold(threshold)
        return served

    @property
    def threshold(self) -> float:
        return float(self._threshold.numpy())

    def set_threshold(self, threshold: float) -> None:
        """Use another decision threshold (in memory; the export is unchanged).

        Raises:
            ValueError: for a non-finite threshold.
        """
        if not np.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
        self._threshold.assign(float(threshold))

    @property
    def lipschitz_constant(self) -> float:
        return float(self.metadata.lipschitz_constant)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.metadata.feature_shape)

    def __call__(self, x: np.ndarray, batch_size: int = 8192) -> dict[str, np.ndarray]:
        """Outputs ``score``, ``anomaly_score``, ``certified_radius``, ``is_normal``.

        Args:
            x: inputs of shape ``(n, *feature_shape)``; rows of
                ``prod(feature_shape)`` values (e.g. a CSV) are reshaped.
            batch_size: samples per call.

        Raises:
            ValueError: on a bad batch (shape, emptiness, NaN/inf) or batch size.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        x = np.asarray(x)
        shape = self.feature_shape
        if len(shape) > 1 and x.ndim == 2 and x.shape[1] == int(np.prod(shape)):
            x = x.reshape(len(x), *shape)
        x = check_batch(x, shape, "inputs")
        parts: dict[str, list[np.ndarray]] = {key: [] for key in OUTPUT_KEYS}
        for start in range(0, len(x), int(batch_size)):
            out = self._serve(tf.constant(x[start : start + int(batch_size)]))
            for key in OUTPUT_KEYS:
                parts[key].append(out[key].numpy())
        return {key: np.concatenate(values) for key, values in parts.items()}


def read_inputs(path: str | os.PathLike) -> np.ndarray:
    """Read a batch of inputs from ``.npy`` (any shape) or ``.csv`` (rows = samples).

    A ``.csv`` may start with one header line of column names; every other cell
    must be a number.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: on an unknown suffix or a non-numeric file.
    """
    path = Path(path)
    if path.suffix not in INPUT_SUFFIXES:
        raise ValueError(
            f"cannot read inputs from {path}: expected one of {INPUT_SUFFIXES}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path} is not a numeric .npy array: {err}") from err
    with path.open() as handle:
        first = handle.readline()
    header = any(not _is_number(cell) for cell in first.split(","))
    try:
        data = np.loadtxt(path, delimiter=",", skiprows=int(header), ndmin=2)
    except ValueError as err:
        raise ValueError(f"{path} is not a numeric CSV file: {err}") from err
    return data.astype(np.float32)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_outputs(path: str | os.PathLike, outputs: dict[str, np.ndarray]) -> None:
    """Write served outputs.

    ``.csv``: one column per output (header ``score,anomaly_score,
    certified_radius,is_normal``; ``is_normal`` as 0/1). ``.npz``: one array
    per output. ``.npy``: a structured array with one field per output (read
    it with ``np.load(path)["score"]``; no pickle needed).

    Raises:
        ValueError: on an unknown suffix.
    """
    path = Path(path)
    if path.suffix not in OUTPUT_SUFFIXES:
        raise ValueError(
            f"cannot write outputs to {path}: expected one of {OUTPUT_SUFFIXES}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, **outputs)
        return
    n = len(outputs[OUTPUT_KEYS[0]])
    if path.suffix == ".npy":
        table = np.empty(n, dtype=[(k, outputs[k].dtype) for k in OUTPUT_KEYS])
        for key in OUTPUT_KEYS:
            table[key] = outputs[key]
        np.save(path, table, allow_pickle=False)
        return
    columns = np.column_stack([outputs[k].astype(np.float64) for k in OUTPUT_KEYS])
    np.savetxt(
        path,
        columns,
        delimiter=",",
        header=",".join(OUTPUT_KEYS),
        comments="",
        fmt=["%.9g", "%.9g", "%.9g", "%d"],
    )


def predict_file(
    model: ServedModel,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    batch_size: int = 8192,
) -> dict[str, np.ndarray]:
    """``kocc predict``: score the samples of a file and write the outputs.

    Args:
        model: see :meth:`ServedModel.load`.
        input_path: ``.npy`` or ``.csv`` inputs, one sample per row.
        output_path: ``.npy``, ``.npz`` or ``.csv`` (see :func:`write_outputs`).
        batch_size: samples per call.

    Returns:
        The outputs written.
    """
    outputs = model(read_inputs(input_path), batch_size=batch_size)
    write_outputs(output_path, outputs)
    return outputs


def evaluate(
    model: ServedModel,
    normal: np.ndarray,
    anomalous: np.ndarray,
    epsilons: Sequence[float] = (0.0,),
    batch_size: int = 8192,
) -> dict:
    r"""``kocc evaluate``: AUROC, certified AUROC and decisions on labelled data.

    Args:
        model: see :meth:`ServedModel.load`.
        normal: normal samples ``x``.
        anomalous: anomalous samples ``z``.
        epsilons: l2 radii :math:`\epsilon \ge 0` of the certified AUROC.
        batch_size: samples per call.

    Returns:
        A JSON-ready dict: ``auroc``, ``certified_auroc`` (one value per
        :math:`\epsilon`, keyed by its string), ``threshold``,
        ``lipschitz_constant``, ``normal_accepted`` and ``anomalies_rejected``
        (fractions decided right at the threshold) and the median certified
        radius of each group.

    Raises:
        ValueError: on a negative or non-finite radius, or bad samples.
    """
    radii = [float(e) for e in epsilons]
    if not radii or any(not (np.isfinite(e) and e >= 0) for e in radii):
        raise ValueError(f"epsilons must be finite and >= 0, got {list(epsilons)}")
    out_n = model(normal, batch_size)
    out_a = model(anomalous, batch_size)
    lip = model.lipschitz_constant
    certified = certified_auroc(
        out_n["score"], out_a["score"], np.asarray([0.0, *radii]), lipschitz=lip
    )
    return {
        "n_normal": int(len(out_n["score"])),
        "n_anomalous": int(len(out_a["score"])),
        "auroc": float(certified[0]),
        "certified_auroc": {
            str(e): float(a) for e, a in zip(radii, certified[1:], strict=True)
        },
        "threshold": model.threshold,
        "lipschitz_constant": lip,
        "normal_accepted": float(np.mean(out_n["is_normal"])),
        "anomalies_rejected": float(np.mean(~out_a["is_normal"])),
        "median_certified_radius": {
            "normal": float(np.median(out_n["certified_radius"])),
            "anomalous": float(np.median(out_a["certified_radius"])),
        },
    }
