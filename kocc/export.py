r"""Export a trained OCSDF network as a TF SavedModel that serves certified scores.

:func:`save_for_serving` writes a SavedModel whose ``serving_default`` signature
maps a batch ``inputs`` of shape ``(n, *feature_shape)`` (float32) to

* ``score``: :math:`f(x)`, the normality score (positive = normal side);
* ``anomaly_score``: :math:`-f(x)` (higher = more anomalous);
* ``certified_radius``: :math:`|f(x) - t| / L`: no l2 perturbation
  :math:`\|\delta\|_2 <` this radius can change the decision at ``x``, because
  ``f`` is ``L``-Lipschitz (Béthune et al., ICML 2023, Sec. 4);
* ``is_normal``: :math:`f(x) \ge t`;
* ``valid``: the row could be scored: its inputs and its score are finite.

A row holding NaN or inf is not scored (the network sees zeros in its place,
so it cannot disturb the other rows) and gets ``valid = False``,
``score = anomaly_score = NaN``, ``certified_radius = 0`` (nothing is
certified) and ``is_normal = False`` (an input that cannot be scored is never
accepted as normal): read ``is_normal`` and ``certified_radius`` only where
``valid`` is true. The other rows of the batch get their usual answers.

The threshold ``t`` and the constant ``L`` are variables of the SavedModel.

The network is exported with deel-lip's *vanilla export*
(:func:`deel.lip.model.vanillaModel`): each constrained layer becomes a plain
``Dense`` / ``Conv2D`` holding its constrained kernel, so serving costs what an
unconstrained network of the same shape costs and the SavedModel loads with
``tf.saved_model.load`` alone (no kocc, no deel-lip). Before anything is
written, the Lipschitz constant of the exported network is bounded from its
actual weights (:func:`kocc.lipschitz_bound.lipschitz_upper_bound`); a network
whose bound exceeds ``1 + lipschitz_tolerance`` is refused, and the radius
divides by :math:`L = \max(1, \text{bound})`, so a certificate is never larger
than what the weights prove.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import tensorflow as tf
from deel.lip.model import vanillaModel
from google.protobuf.message import DecodeError

import kocc
from kocc.lipschitz_bound import LipschitzBoundError, lipschitz_upper_bound
from kocc.models import OCSDF
from kocc.orthogonalization import constrained_layers, sync_constrained_kernels
from kocc.safe_output import (
    COMPLETION_MARKER,
    check_output,
    is_complete,
    output_directory,
)
from kocc.validation import check_non_negative

#: Name of the serving signature (TF Serving's default).
SIGNATURE_KEY = "serving_default"
#: Name of the signature's input tensor.
INPUT_NAME = "inputs"
#: The signature's outputs, in a fixed order.
OUTPUT_KEYS = ("score", "anomaly_score", "certified_radius", "is_normal", "valid")
#: Metadata written next to the SavedModel (``assets.extra`` is ignored by TF).
METADATA_PATH = os.path.join("assets.extra", "kocc_serving.json")
#: Largest relative gap allowed between the exported and the original network.
EXPORT_FIDELITY_RTOL = 1e-5


class CertificateError(ValueError):
    """The network's certificates would not be sound: export refused."""


class ModelFileError(ValueError):
    """A saved model (``.keras`` file, SavedModel, export metadata) cannot be
    read: missing, empty, truncated or corrupt. The message names the path."""


#: Errors that loading a damaged model file raises from zipfile, h5py, JSON,
#: protobuf or TensorFlow; :class:`ModelFileError` replaces them.
LOAD_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,  # TF's checkpoint reader: "Read less bytes than requested"
    TypeError,
    tf.errors.OpError,
)


#: Metadata fields without which an export cannot be served.
_REQUIRED_METADATA = frozenset(
    ("threshold", "lipschitz_constant", "lipschitz_bound", "feature_shape")
)
#: The outputs of every export, including those older than ``valid``.
_FIRST_OUTPUT_KEYS = OUTPUT_KEYS[:4]


@dataclass(frozen=True)
class ServingMetadata:
    """What :func:`save_for_serving` wrote, also stored as JSON in the SavedModel.

    Attributes:
        threshold: decision threshold ``t`` on the score.
        lipschitz_constant: ``L`` used by ``certified_radius`` (``max(1, bound)``).
        lipschitz_bound: the proven upper bound on the exported network.
        feature_shape: shape of one input sample.
        signature: name of the serving signature.
        input_name: name of the signature's input.
        outputs: names of the signature's outputs.
        kocc_version: version of kocc that exported the model.
    """

    threshold: float
    lipschitz_constant: float
    lipschitz_bound: float
    feature_shape: tuple[int, ...]
    signature: str = SIGNATURE_KEY
    input_name: str = INPUT_NAME
    outputs: tuple[str, ...] = OUTPUT_KEYS
    kocc_version: str = kocc.__version__

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "serving metadata") -> ServingMetadata:
        """Parse and check :meth:`to_json`'s output.

        Raises:
            ModelFileError: naming ``source`` and the missing or bad field.
        """
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ModelFileError(f"{source} is not valid JSON: {err}") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or not _REQUIRED_METADATA <= set(data):
            given = set(data) if isinstance(data, dict) else set()
            missing = sorted(_REQUIRED_METADATA - given)
            raise ModelFileError(
                f"{source} lacks {', '.join(missing) or 'its fields'}: the export is "
                "incomplete or damaged; export the model again"
            )
        try:
            data = {k: v for k, v in data.items() if k in known}
            data["feature_shape"] = tuple(int(s) for s in data["feature_shape"])
            data["outputs"] = tuple(data.get("outputs", _FIRST_OUTPUT_KEYS))
            for key in ("threshold", "lipschitz_constant", "lipschitz_bound"):
                data[key] = float(data[key])
        except (TypeError, ValueError) as err:
            raise ModelFileError(f"{source} holds a bad value: {err}") from None
        if not all(s > 0 for s in data["feature_shape"]) or not (
            np.isfinite(data["threshold"]) and data["lipschitz_constant"] >= 1.0
        ):
            raise ModelFileError(
                f"{source} holds impossible values (feature_shape "
                f"{data['feature_shape']}, threshold {data['threshold']!r}, "
                f"lipschitz_constant {data['lipschitz_constant']!r})"
            )
        return cls(**data)


def backbone_of(model: tf.keras.Model) -> tf.keras.Model:
    """The 1-Lipschitz network of an :class:`~kocc.models.OCSDF` (or the model)."""
    return model.backbone if isinstance(model, OCSDF) else model


def vanilla_network(model: tf.keras.Model) -> tf.keras.Model:
    """Plain-Keras copy of the network: constrained layers -> ``Dense``/``Conv2D``.

    The cached constrained kernels are first recomputed from the current
    parameters (``sync_constrained_kernels``), so the copy computes exactly what
    the model's inference-mode call computes.

    Args:
        model: an :class:`~kocc.models.OCSDF` or a deel-lip network.

    Returns:
        A new Keras model (deel-lip's ``vanillaModel``) sharing no variables with
        ``model``.
    """
    if isinstance(model, OCSDF):
        model.sync_constrained_kernels()
    else:
        sync_constrained_kernels(constrained_layers(model))
    return vanillaModel(backbone_of(model))


class CertifiedScorer(tf.Module):
    """The serving module: scores, certified radii and decisions of a network.

    Holds the network's variables, the threshold and ``L`` as tracked
    variables; the network object itself is only called, so the SavedModel
    contains graphs and variables but no Keras metadata.

    Args:
        network: a plain Keras network mapping ``(n, *feature_shape)`` to
            ``(n, 1)`` or ``(n,)`` scores.
        threshold: decision threshold ``t``.
        lipschitz_constant: ``L > 0`` of ``network``.
    """

    def __init__(
        self, network: tf.keras.Model, threshold: float, lipschitz_constant: float
    ) -> None:
        super().__init__(name="kocc_certified_scorer")
        self.feature_shape = tuple(int(s) for s in network.input_shape[1:])
        self.threshold = tf.Variable(
            float(threshold), dtype=tf.float32, trainable=False, name="threshold"
        )
        self.lipschitz_constant = tf.Variable(
            float(lipschitz_constant),
            dtype=tf.float32,
            trainable=False,
            name="lipschitz_constant",
        )
        self.network_variables = list(network.variables)

        def forward(x: tf.Tensor) -> tf.Tensor:
            return tf.reshape(network(x, training=False), [-1])

        self._forward = forward  # a plain function: not tracked, not saved
        spec = tf.TensorSpec((None, *self.feature_shape), tf.float32, INPUT_NAME)
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        feature_axes = list(range(1, 1 + len(self.feature_shape)))
        finite_rows = tf.reduce_all(tf.math.is_finite(inputs), axis=feature_axes)
        row_mask = tf.reshape(finite_rows, [-1] + [1] * len(self.feature_shape))
        # a non-finite row is replaced by zeros: it cannot disturb the others
        raw = self._forward(tf.where(row_mask, inputs, tf.zeros_like(inputs)))
        valid = finite_rows & tf.math.is_finite(raw)
        score = tf.where(valid, raw, tf.fill(tf.shape(raw), float("nan")))
        gap = score - self.threshold
        return {
            "score": score,
            "anomaly_score": -score,
            "certified_radius": tf.where(
                valid, tf.abs(gap) / self.lipschitz_constant, tf.zeros_like(gap)
            ),
            "is_normal": valid & (gap >= 0.0),
            "valid": valid,
        }


def certify_network(
    network: tf.keras.Model, lipschitz_tolerance: float = 1e-3
) -> tuple[float, float]:
    """Prove the network is 1-Lipschitz up to ``lipschitz_tolerance``.

    Args:
        network: a plain Keras network (e.g. :func:`vanilla_network`'s output).
        lipschitz_tolerance: slack allowed above 1 (Björck orthonormalization
            stops at a finite precision).

    Returns:
        ``(L, bound)``: the proven ``bound`` and ``L = max(1, bound)``.

    Raises:
        CertificateError: if the bound exceeds ``1 + lipschitz_tolerance`` or
            cannot be proved.
    """
    check_non_negative(lipschitz_tolerance=lipschitz_tolerance)
    bad = [w.name for w in network.weights if not np.isfinite(w.numpy()).all()]
    if bad:
        raise CertificateError(
            f"the network's weights are not finite (NaN or inf in {', '.join(bad)}):"
            " its training diverged, so no Lipschitz bound can be proved"
        )
    try:
        bound = lipschitz_upper_bound(network)
    except LipschitzBoundError as err:
        raise CertificateError(
            f"cannot prove a Lipschitz bound for the exported network: {err}"
        ) from err
    if not bound <= 1.0 + lipschitz_tolerance:
        raise CertificateError(
            f"the exported network is not 1-Lipschitz: its proven Lipschitz bound "
            f"is {bound!r} > 1 + lipschitz_tolerance = {1 + lipschitz_tolerance!r}"
            ". Certified radii |f - t| / L would be unsound with L = 1. Check that "
            "every layer is a deel-lip constrained layer (SpectralDense, "
            "SpectralConv2D, FrobeniusDense...) with k_coef_lip = 1 and that the "
            "kernels were orthonormalized; or pass a larger lipschitz_tolerance to "
            f"export with radii divided by L = {bound!r}."
        )
    return max(1.0, bound), bound


def _probe_batch(model: tf.keras.Model, feature_shape: tuple[int, ...]) -> np.ndarray:
    """A fixed batch covering the input domain, to check the export is faithful."""
    if isinstance(model, OCSDF):
        return model.domain.sample(64, seed=0, shape=feature_shape).numpy()
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, *feature_shape)).astype(np.float32)


def save_for_serving(
    model: tf.keras.Model,
    path: str | os.PathLike,
    threshold: float | None = None,
    lipschitz_tolerance: float = 1e-3,
    overwrite: bool = False,
) -> ServingMetadata:
    """Write a SavedModel serving scores, certified radii and decisions.

    The folder is written whole or not at all
    (:func:`kocc.safe_output.output_directory`): it is filled as a temporary
    sibling, under a lock on ``path``, and renamed into place last.

    Args:
        model: a trained :class:`~kocc.models.OCSDF`, or a deel-lip network
            with one output.
        path: directory to write (must not exist or be empty, unless
            ``overwrite``).
        threshold: decision threshold ``t`` on the score; ``None`` = 0, the
            level between the training margins ``+m`` and ``-m``.
        lipschitz_tolerance: see :func:`certify_network`.
        overwrite: replace an existing export at ``path``.

    Returns:
        The :class:`ServingMetadata` written to ``assets.extra/kocc_serving.json``.

    Raises:
        ValueError: on a non-finite threshold or a model with several outputs.
        kocc.safe_output.OutputError: if ``path`` is a non-empty folder (without
            ``overwrite``), a file, or is being written by another process.
        CertificateError: if the exported network cannot be proved
            1-Lipschitz, or does not compute what the model computes.
    """
    if threshold is None:
        threshold = 0.0
    try:
        threshold = float(threshold)
    except (TypeError, ValueError) as err:
        raise ValueError(f"threshold must be a number, got {threshold!r}") from err
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    path = check_output(path, "directory", overwrite)  # fail before the work
    backbone = backbone_of(model)
    if tuple(backbone.output_shape[1:]) not in ((1,), ()):
        raise ValueError(
            f"the network must have one output (n, 1), got {backbone.output_shape}"
        )

    network = vanilla_network(model)
    lipschitz, bound = certify_network(network, lipschitz_tolerance)
    feature_shape = tuple(int(s) for s in backbone.input_shape[1:])
    probe = _probe_batch(model, feature_shape)
    expected = backbone(probe, training=False).numpy().reshape(-1)
    exported = network(probe, training=False).numpy().reshape(-1)
    gap = np.max(np.abs(expected - exported))
    if not gap <= EXPORT_FIDELITY_RTOL * max(1.0, np.max(np.abs(expected))):
        raise CertificateError(
            f"the vanilla export does not compute the model's scores (max gap "
            f"{gap:.3g}): a layer was not converted faithfully"
        )

    scorer = CertifiedScorer(network, threshold, lipschitz)
    metadata = ServingMetadata(
        threshold=threshold,
        lipschitz_constant=lipschitz,
        lipschitz_bound=bound,
        feature_shape=feature_shape,
    )
    with output_directory(path, overwrite) as work:
        tf.saved_model.save(
            scorer,
            str(work),
            signatures={SIGNATURE_KEY: scorer.serve.get_concrete_function()},
        )
        (work / METADATA_PATH).parent.mkdir(parents=True, exist_ok=True)
        (work / METADATA_PATH).write_text(metadata.to_json())
    return metadata


#: File name of the trained model in a run directory (``kocc train --out DIR``).
RUN_MODEL_FILE = "model.keras"


def load_trained_model(path: str | os.PathLike) -> tf.keras.Model:
    """Load a trained model from a run directory or a ``.keras`` file.

    Args:
        path: a run directory written by ``kocc train`` (holding
            ``model.keras``) or a ``.keras`` file.

    Warns:
        UserWarning: if a run directory lacks the completion marker that
            ``kocc train`` writes last (:data:`kocc.safe_output.COMPLETION_MARKER`):
            the run may be incomplete, or was written by something else.

    Raises:
        FileNotFoundError: if there is no such model.
        ModelFileError: if the file is empty, truncated or not a Keras model.
    """
    path = Path(path)
    file = path / RUN_MODEL_FILE if path.is_dir() else path
    if not file.is_file() or file.suffix != ".keras":
        raise FileNotFoundError(
            f"{path} is neither a run directory holding {RUN_MODEL_FILE} nor a "
            ".keras file"
        )
    if file.stat().st_size == 0:
        raise ModelFileError(f"{file} is empty (0 bytes): not a saved model")
    if not zipfile.is_zipfile(file):
        raise ModelFileError(
            f"{file} is not a .keras archive (not a zip file, or truncated)"
        )
    try:
        model = tf.keras.models.load_model(file, compile=False)
    except LOAD_ERRORS as err:
        raise ModelFileError(
            f"cannot load {file}: {type(err).__name__}: {err} (the file is "
            "truncated or corrupt, or was not written by model.save)"
        ) from err
    if path.is_dir() and not is_complete(path):
        warnings.warn(
            f"run directory {str(path)!r} has no {COMPLETION_MARKER} marker: it "
            "is not a run kocc train finished (interrupted, copied in part, or "
            "written by other code); using its model.keras anyway",
            UserWarning,
            stacklevel=2,
        )
    return model


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    threshold: float | None = None,
    lipschitz_tolerance: float = 1e-3,
    overwrite: bool = False,
) -> ServingMetadata:
    """``kocc export``: the trained model of a run as a serving SavedModel.

    Args:
        run_dir: a run directory (``model.keras`` inside) or a ``.keras`` file.
        out: the SavedModel directory to write; never ``run_dir`` itself or a
            folder holding it (:class:`kocc.safe_output.OutputIsInputError`).
        threshold: decision threshold (``None`` = 0).
        lipschitz_tolerance: see :func:`certify_network`.
        overwrite: replace an existing export at ``out``.

    Returns:
        The metadata written.
    """
    check_output(out, "directory", overwrite, (run_dir,))  # before loading
    model = load_trained_model(run_dir)
    return save_for_serving(model, out, threshold, lipschitz_tolerance, overwrite)


def read_serving_metadata(path: str | os.PathLike) -> ServingMetadata:
    """The metadata of a SavedModel written by :func:`save_for_serving`.

    Raises:
        FileNotFoundError: if ``path`` is not such a SavedModel.
        ModelFileError: if the metadata is unreadable or incomplete.
    """
    file = Path(path) / METADATA_PATH
    if not file.is_file():
        raise FileNotFoundError(
            f"{path} is not a kocc serving export (no {METADATA_PATH}); write one "
            "with kocc.export.save_for_serving"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ModelFileError(f"cannot read {file}: {err}") from None
    return ServingMetadata.from_json(text, source=str(file))


def load_saved_model(path: str | os.PathLike) -> tf.Module:
    """``tf.saved_model.load`` with a :class:`ModelFileError` for a damaged folder.

    Raises:
        ModelFileError: if ``saved_model.pb`` or the variables are missing,
            truncated or corrupt.
    """
    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise ModelFileError(f"{path} holds no saved_model.pb: not a SavedModel")
    try:
        return tf.saved_model.load(str(path))
    except (*LOAD_ERRORS, DecodeError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelFileError(
            f"cannot load the SavedModel {path}: {type(err).__name__}: {detail} "
            "(saved_model.pb or variables/ truncated or corrupt; export it again)"
        ) from err
