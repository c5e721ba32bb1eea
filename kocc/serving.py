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
    ModelFileError,
    ServingMetadata,
    certify_network,
    load_saved_model,
    load_trained_model,
    read_serving_metadata,
    vanilla_network,
)
from kocc.metrics import certified_auroc
from kocc.safe_output import atomic_path, check_output
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
            kocc.export.ModelFileError: if the model is empty, truncated or
                corrupt, or a SavedModel lacks kocc's metadata.
            kocc.export.CertificateError: if a run's network cannot be proved
                1-Lipschitz.
        """
        path = Path(path)
        if path.is_dir() and any(
            (path / name).exists() for name in ("saved_model.pb", METADATA_PATH)
        ):
            if not (path / METADATA_PATH).is_file():
                raise ModelFileError(
                    f"{path} is a SavedModel but not a complete kocc serving "
                    f"export: {METADATA_PATH} is missing (it holds the threshold, "
                    "L and the feature shape); export the model again with "
                    "kocc export / kocc.export.save_for_serving"
                )
            metadata = read_serving_metadata(path)
            module = load_saved_model(path)
            if metadata.signature not in module.signatures:
                raise ModelFileError(
                    f"{path} has no signature {metadata.signature!r} (it has "
                    f"{sorted(module.signatures)})"
                )
            signature = module.signatures[metadata.signature]

            def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
                return signature(**{metadata.input_name: x})

            served = cls(serve, module.threshold, metadata)
            # the signature holds its variables weakly: keep them alive (without
            # this, a gradient through the signature fails on deleted variables)
            served._module = module
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

    @property
    def output_keys(self) -> tuple[str, ...]:
        """The signature's outputs (exports older than the ``valid`` output lack it)."""
        return tuple(k for k in OUTPUT_KEYS if k in self.metadata.outputs)

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Check a batch and reshape rows of ``prod(feature_shape)`` values.

        Raises:
            ValueError: on a bad batch (shape, emptiness, NaN/inf).
        """
        x = np.asarray(x)
        shape = self.feature_shape
        if len(shape) > 1 and x.ndim == 2 and x.shape[1] == int(np.prod(shape)):
            x = x.reshape(len(x), *shape)
        return check_batch(x, shape, "inputs")

    def __call__(self, x: np.ndarray, batch_size: int = 8192) -> dict[str, np.ndarray]:
        """Outputs ``score``, ``anomaly_score``, ``certified_radius``,
        ``is_normal`` and ``valid`` (all true: NaN/inf inputs are refused here).

        Args:
            x: inputs of shape ``(n, *feature_shape)``; rows of
                ``prod(feature_shape)`` values (e.g. a CSV) are reshaped.
            batch_size: samples per call.

        Raises:
            ValueError: on a bad batch (shape, emptiness, NaN/inf) or batch size.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        x = self.prepare(x)
        parts: dict[str, list[np.ndarray]] = {key: [] for key in self.output_keys}
        for start in range(0, len(x), int(batch_size)):
            out = self._serve(tf.constant(x[start : start + int(batch_size)]))
            for key in parts:
                parts[key].append(out[key].numpy())
        return {key: np.concatenate(values) for key, values in parts.items()}


def read_inputs(path: str | os.PathLike) -> np.ndarray:
    """Read a batch of inputs from ``.npy`` (any shape) or ``.csv`` (rows = samples).

    A ``.csv`` may start with one header line of column names; every other cell
    must be a number.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: on an unknown suffix, an empty, truncated or non-numeric
            file, or a file without samples.
    """
    path = Path(path)
    if path.suffix not in INPUT_SUFFIXES:
        raise ValueError(
            f"cannot read inputs from {path}: expected one of {INPUT_SUFFIXES}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"input file {path} is empty (0 bytes): no samples")
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError) as err:
            raise ValueError(
                f"{path} is not a numeric .npy array (truncated or not written by "
                f"np.save?): {err}"
            ) from err
    try:
        with path.open(encoding="utf-8") as handle:
            first = handle.readline()
            rest = any(line.strip() for line in handle)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 text CSV file: {err}") from None
    header = any(not _is_number(cell) for cell in first.split(","))
    if not first.strip() and not rest or header and not rest:
        raise ValueError(f"input file {path} holds no samples (no data rows)")
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


def write_outputs(
    path: str | os.PathLike,
    outputs: dict[str, np.ndarray],
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
) -> None:
    """Write served outputs, atomically (:func:`kocc.safe_output.atomic_path`).

    ``.csv``: one column per output (header ``score,anomaly_score,
    certified_radius,is_normal,valid``; booleans as 0/1). ``.npz``: one array
    per output. ``.npy``: a structured array with one field per output (read
    it with ``np.load(path)["score"]``; no pickle needed).

    Args:
        path: the output file.
        outputs: the arrays of :class:`ServedModel`.
        overwrite: replace an existing file.
        inputs: files the outputs were computed from: ``path`` may not be one.

    Raises:
        ValueError: on an unknown suffix.
        kocc.safe_output.OutputError: if ``path`` exists (without
            ``overwrite``), is an input or a folder.
    """
    path = Path(path)
    if path.suffix not in OUTPUT_SUFFIXES:
        raise ValueError(
            f"cannot write outputs to {path}: expected one of {OUTPUT_SUFFIXES}"
        )
    keys = [k for k in OUTPUT_KEYS if k in outputs]
    with atomic_path(path, overwrite, inputs) as tmp:
        if path.suffix == ".npz":
            np.savez(tmp, **{k: outputs[k] for k in keys})
        elif path.suffix == ".npy":
            n = len(outputs[keys[0]])
            table = np.empty(n, dtype=[(k, outputs[k].dtype) for k in keys])
            for key in keys:
                table[key] = outputs[key]
            np.save(tmp, table, allow_pickle=False)
        else:
            columns = np.column_stack([outputs[k].astype(np.float64) for k in keys])
            np.savetxt(
                tmp,
                columns,
                delimiter=",",
                header=",".join(keys),
                comments="",
                fmt=["%d" if outputs[k].dtype == bool else "%.9g" for k in keys],
            )


def predict_file(
    model: ServedModel,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    batch_size: int = 8192,
    overwrite: bool = False,
) -> dict[str, np.ndarray]:
    """``kocc predict``: score the samples of a file and write the outputs.

    Args:
        model: see :meth:`ServedModel.load`.
        input_path: ``.npy`` or ``.csv`` inputs, one sample per row.
        output_path: ``.npy``, ``.npz`` or ``.csv`` (see :func:`write_outputs`);
            never ``input_path`` itself.
        batch_size: samples per call.
        overwrite: replace an existing ``output_path``.

    Returns:
        The outputs written.

    Raises:
        kocc.safe_output.OutputError: checked before anything is scored.
    """
    check_output(output_path, "file", overwrite, (input_path,))
    outputs = model(read_inputs(input_path), batch_size=batch_size)
    write_outputs(output_path, outputs, overwrite, (input_path,))
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


def audit_certified_radii(
    model: ServedModel,
    x: np.ndarray,
    fraction: float = 0.99,
    steps: int = 20,
    random_directions: int = 4,
    seed: int = 0,
    batch_size: int = 4096,
) -> dict:
    r"""Try to change decisions with perturbations inside the certified radii.

    For each sample :math:`x` with radius :math:`r(x) = |f(x) - t| / L`, the
    attacker gets the l2 ball of radius :math:`\rho = \text{fraction}\cdot r(x)`:

    * projected gradient descent on :math:`y\,(f(x + \delta) - t)`, with
      :math:`y = +1` for a normal decision and :math:`-1` otherwise (``steps``
      normalized-gradient steps of :math:`2.5\rho/\text{steps}`, projected on
      the ball; every iterate is checked), the strongest first-order attacker
      of the decision;
    * ``random_directions`` random directions at norm :math:`\rho`.

    With ``fraction < 1`` no decision may change (Béthune et al., ICML 2023,
    Sec. 4); with ``fraction > 1`` the flips measure how tight the radius is.
    Samples whose margin :math:`|f - t|` is within a few hundred float32
    roundings (:math:`10^{-4}\max(1, |f|)`) are skipped: their radius is ~0
    and the float32 forward pass is not exact to that level.

    Args:
        model: see :meth:`ServedModel.load` (the SavedModel's own signature is
            attacked, gradients included).
        x: samples ``(n, *feature_shape)``.
        fraction: radius fraction :math:`> 0` given to the attacker.
        steps: PGD steps ``>= 1``.
        random_directions: random perturbations per sample ``>= 0``.
        seed: seed of the random directions.
        batch_size: samples per call.

    Returns:
        ``samples`` (audited), ``skipped``, ``perturbations`` (tried: one PGD
        path counted once, plus the random ones), ``flipped`` (decisions
        changed), ``max_score_change_per_unit`` (largest
        :math:`|f(x+\delta) - f(x)| / \|\delta\|` seen: at most ``L`` for a
        sound model, up to the float32 rounding of the scores, about
        :math:`10^{-7}|f| / \|\delta\|`), ``lipschitz_constant`` and the
        arguments.
    """
    if not (np.isfinite(fraction) and fraction > 0):
        raise ValueError(f"fraction must be finite and > 0, got {fraction!r}")
    if int(steps) < 1 or int(random_directions) < 0:
        raise ValueError(
            f"steps must be >= 1 and random_directions >= 0, got {steps!r}, "
            f"{random_directions!r}"
        )
    x = model.prepare(x)
    out = model(x, batch_size)
    score, threshold = out["score"], model.threshold
    keep = np.abs(score - threshold) > 1e-4 * np.maximum(1.0, np.abs(score))
    x, score, normal = x[keep], score[keep], out["is_normal"][keep]
    rho_all = fraction * out["certified_radius"][keep]
    column = (-1,) + (1,) * (x.ndim - 1)
    rng = np.random.default_rng(seed)
    flipped, tried, max_rate = 0, 0, 0.0

    def norms(v: np.ndarray) -> np.ndarray:
        return _l2_norms(v).reshape(column)

    for start in range(0, len(x), int(batch_size)):
        part = slice(start, start + int(batch_size))
        xb, fb, nb = x[part], score[part], normal[part]
        rho = rho_all[part].reshape(column)

        for _ in range(int(random_directions)):
            u = rng.normal(size=xb.shape)
            flip, rate = _changed(model, xb, fb, nb, rho * u / norms(u))
            flipped, max_rate = flipped + int(flip.sum()), max(max_rate, rate)
            tried += len(xb)
        sign = tf.constant(np.where(nb, 1.0, -1.0), tf.float32)
        delta = np.zeros(xb.shape, np.float64)
        ever = np.zeros(len(xb), bool)
        for _ in range(int(steps)):
            z = tf.constant((xb + delta).astype(np.float32))
            with tf.GradientTape() as tape:
                tape.watch(z)
                objective = tf.reduce_sum(sign * model._serve(z)["score"])
            grad = tape.gradient(objective, z).numpy().astype(np.float64)
            delta -= 2.5 * rho / steps * grad / np.maximum(norms(grad), 1e-30)
            delta *= np.minimum(1.0, rho / np.maximum(norms(delta), 1e-30))
            flip, rate = _changed(model, xb, fb, nb, delta)
            ever, max_rate = ever | flip, max(max_rate, rate)
        flipped += int(ever.sum())
        tried += len(xb)
    return {
        "samples": int(len(x)),
        "skipped": int((~keep).sum()),
        "perturbations": int(tried),
        "flipped": int(flipped),
        "max_score_change_per_unit": max_rate,
        "lipschitz_constant": model.lipschitz_constant,
        "fraction": float(fraction),
        "steps": int(steps),
        "random_directions": int(random_directions),
    }


def _l2_norms(v: np.ndarray) -> np.ndarray:
    """l2 norm of each sample of a batch, float64, shape ``(n,)``."""
    return np.sqrt((v.astype(np.float64) ** 2).reshape(len(v), -1).sum(axis=1))


def _changed(
    model: ServedModel,
    x: np.ndarray,
    score: np.ndarray,
    normal: np.ndarray,
    delta: np.ndarray,
) -> tuple[np.ndarray, float]:
    """Decisions changed (or made invalid) at ``x + delta``, and the largest
    score change per unit of perturbation."""
    moved_x = (x + delta).astype(np.float32)
    res = model._serve(tf.constant(moved_x))
    size = _l2_norms(moved_x.astype(np.float64) - x)  # the perturbation applied
    moved = np.abs(res["score"].numpy() - score)
    rate = float(np.max(moved[size > 0] / size[size > 0], initial=0.0))
    return (res["is_normal"].numpy() != normal) | ~res["valid"].numpy(), rate
