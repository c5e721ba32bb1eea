"""Negative-sampling priors for images: the pixel box with a random intensity
(:class:`GradedBox`) and the pixel box mixed with turned and mirrored training
images (:class:`DihedralBox`).

OCSDF draws its negatives uniformly in the domain ``B = [-1, 1]^d`` before the
Newton-Raphson steps (paper Algorithm 1). In ``d = 784`` dimensions such draws
concentrate around the centre of the box (every pixel near 0, i.e. grey noise
with about half the pixels "inked"); none lies near the dark corner where the
images of MNIST-like data sets live (mostly ``-1`` background). A network trained
against them learns "darker = more normal", which ranks images with little ink
(digit 1, trousers) as the most normal of all, whatever the normal class
(measured in docs/images.md).

:class:`GradedBox` keeps the same domain ``B`` (same support, same projection)
but draws every negative with its own intensity:

.. math::
    z = \\ell + s\\,u \\odot (h - \\ell), \\qquad s \\sim U(0, 1),\\;
    u \\sim U(0, 1)^d,

i.e. uniform in the sub-box ``[l, l + s (h - l)]``, a mixture that covers the
whole range from blank images (``s`` near 0) to the paper's uniform noise
(``s = 1``). It is a deviation from the paper's sampler, used by the CPU
profiles of the image recipes (``domain.kind: graded_box``).

:class:`DihedralBox` replaces a fraction of the uniform draws by training
images of the normal class under a symmetry of the square (mirrors, rotations
by 90, 180, 270 degrees): negatives with the ink and strokes of the class but
not its shape (``domain.kind: dihedral_box``, measured in docs/images.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from kocc.sampling import Box


@tf.keras.utils.register_keras_serializable("kocc")
class GradedBox(Box):
    """The box ``[low, high]`` sampled with a random intensity per sample.

    ``z = low + s * u * (high - low)`` with ``s ~ U(0, 1)`` per sample and
    ``u ~ U(0, 1)`` per feature; projection and membership are those of
    :class:`kocc.sampling.Box`.

    Args:
        low: lower bound (the "blank" corner), scalar or per feature.
        high: upper bound, same convention; ``high > low`` everywhere.
        shape: feature shape, needed when both bounds are scalars.

    Raises:
        ValueError: as :class:`kocc.sampling.Box`.
    """

    def _sample(self, n, seed, shape):
        seeds = tf.random.experimental.stateless_split(seed, 2)
        intensity = tf.random.stateless_uniform(
            (n,) + (1,) * len(shape), seed=seeds[0], dtype=tf.float32
        )
        u = tf.random.stateless_uniform((n, *shape), seed=seeds[1], dtype=tf.float32)
        return self.low + (self.high - self.low) * intensity * u

    def __repr__(self) -> str:
        return f"GradedBox(low={self.low.tolist()}, high={self.high.tolist()})"


#: The seven symmetries of the square other than the identity, in the order of
#: :func:`_dihedral_variants` (the names of ``domain.symmetries`` in recipes).
SYMMETRIES = (
    "mirror_left_right",
    "mirror_up_down",
    "rotate_180",
    "mirror_diagonal",
    "rotate_90",
    "rotate_270",
    "mirror_anti_diagonal",
)


def _dihedral_variants(images: tf.Tensor) -> tf.Tensor:
    """The seven symmetries of the square other than the identity (the dihedral
    group D4) of a batch ``(n, H, W, C)`` with ``H == W``: ``(n, 7, H, W, C)``,
    in the order of :data:`SYMMETRIES`."""
    transposed = tf.transpose(images, [0, 2, 1, 3])
    return tf.stack(
        [
            tf.reverse(images, [2]),  # mirror left-right
            tf.reverse(images, [1]),  # mirror up-down
            tf.reverse(images, [1, 2]),  # rotation by 180 degrees
            transposed,  # mirror about the main diagonal
            tf.reverse(transposed, [1]),  # rotation by 90 degrees
            tf.reverse(transposed, [2]),  # rotation by 270 degrees
            tf.reverse(transposed, [1, 2]),  # mirror about the anti-diagonal
        ],
        axis=1,
    )


def check_symmetries(symmetries: Any) -> tuple[str, ...]:
    """``symmetries`` as a tuple of names of :data:`SYMMETRIES`, in that order.

    Raises:
        ValueError: for an unknown name, a repeated name or an empty list.
    """
    names = [symmetries] if isinstance(symmetries, str) else list(symmetries)
    unknown = [name for name in names if name not in SYMMETRIES]
    if unknown:
        raise ValueError(
            f"unknown symmetries {unknown}: expected names among {list(SYMMETRIES)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"symmetries are repeated: {names}")
    if not names:
        raise ValueError("symmetries must name at least one symmetry")
    return tuple(name for name in SYMMETRIES if name in names)


def _nearest_distances(
    queries: np.ndarray, images: np.ndarray, exclude: np.ndarray | None = None
) -> np.ndarray:
    """l2 distance from every query (rows) to its nearest row of ``images``;
    ``exclude[i]`` is a row of ``images`` that query ``i`` may not use."""
    squared = (
        np.einsum("ij,ij->i", queries, queries)[:, None]
        + np.einsum("ij,ij->i", images, images)[None, :]
        - 2.0 * queries @ images.T
    )
    if exclude is not None:
        squared[np.arange(len(queries)), exclude] = np.inf
    return np.sqrt(np.maximum(squared.min(axis=1), 0.0))


def symmetry_ratios(images: Any, sample: int = 500, seed: int = 0) -> dict[str, float]:
    r"""How far each symmetry moves the class, relative to its own spread.

    For a seeded subsample ``S`` of the ``images`` (at most ``sample`` of
    them) and every symmetry ``g`` of :data:`SYMMETRIES`:

    .. math::
        r(g) = \frac{\operatorname{median}_{x \in S}\, d(g(x), X)}
                    {\operatorname{median}_{x \in S}\, d(x, X \setminus \{x\})}

    with ``d(y, X)`` the l2 distance from ``y`` to its nearest image of ``X``
    (all images). ``r(g)`` near 1 or below: a turned image is as close to the
    class as the class's own images are to each other, i.e. the class is
    (nearly) invariant under ``g``. Uses only the images, no labels.

    Args:
        images: images of one class, ``(n, H, W)`` or ``(n, H, W, C)``,
            ``H == W``, ``n >= 2``.
        sample: size of the subsample ``S`` (cost ``O(sample * n * H * W * C)``).
        seed: seed of the subsample.

    Returns:
        ``{name: r(g)}`` for the seven names of :data:`SYMMETRIES`.

    Raises:
        ValueError: for fewer than two images, non-square or non-finite images.
    """
    array = _square_images(images)
    if len(array) < 2:
        raise ValueError(f"need at least 2 images, got {len(array)}")
    if sample < 1:
        raise ValueError(f"sample must be >= 1, got {sample}")
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(array))[: min(sample, len(array))]
    flat = array.reshape(len(array), -1).astype(np.float64)
    own = np.median(_nearest_distances(flat[chosen], flat, exclude=chosen))
    variants = _dihedral_variants(tf.constant(array[chosen])).numpy()
    ratios = {}
    for index, name in enumerate(SYMMETRIES):
        turned = variants[:, index].reshape(len(chosen), -1).astype(np.float64)
        moved = np.median(_nearest_distances(turned, flat))
        ratios[name] = float(moved / max(own, np.finfo(np.float64).tiny))
    return ratios


def select_symmetries(
    images: Any, threshold: float = 1.1, sample: int = 500, seed: int = 0
) -> tuple[str, ...]:
    """The symmetries under which the class does *not* look invariant: those
    whose :func:`symmetry_ratios` exceeds ``threshold``, in the order of
    :data:`SYMMETRIES` (possibly none).

    The rule of ``domain.symmetries: auto``. With ``threshold`` 1.1 it keeps
    all seven on every MNIST digit and drops the left-right mirror on six
    Fashion-MNIST classes (T-shirts, pullovers, dresses, coats, shirts, bags),
    whose ratio is 0.95-1.06 (docs/images.md, "Negative sampler").

    Raises:
        ValueError: as :func:`symmetry_ratios`, and for ``threshold <= 0``.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    ratios = symmetry_ratios(images, sample=sample, seed=seed)
    return tuple(name for name in SYMMETRIES if ratios[name] > threshold)


def _square_images(images: Any) -> np.ndarray:
    """``images`` as a float32 batch ``(n, H, W, C)`` of finite square images."""
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or len(array) == 0:
        raise ValueError(
            "images must be a non-empty batch (n, H, W) or (n, H, W, C), got "
            f"shape {np.shape(images)}"
        )
    if array.shape[1] != array.shape[2]:
        raise ValueError(
            f"images must be square (H == W) to be turned by 90 degrees, got "
            f"{array.shape[1]} x {array.shape[2]}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("images contain NaN or inf")
    return array


@tf.keras.utils.register_keras_serializable("kocc")
class DihedralBox(Box):
    r"""The pixel box, with half of its draws replaced by turned training images.

    A draw is, with probability ``box_fraction``, uniform in the box (the
    paper's sampler), else one of the training ``images`` (chosen uniformly)
    under one of the seven non-identity symmetries of the square, chosen
    uniformly: the two mirrors, the two diagonal mirrors and the rotations by
    90, 180 and 270 degrees. The Newton-Raphson steps of OCSDF (paper
    Algorithm 1) then move every draw toward the level set ``f = -m`` as usual.

    Why: uniform draws in ``[-1, 1]^784`` are grey noise, far from every digit,
    and a network trained against them ranks images by how far they are from
    grey noise, which other digits share (docs/images.md, "Negative sampler").
    A turned or mirrored digit has the ink, stroke width and size of the normal
    class but not its shape, so it teaches the network the shape. This uses a
    prior about the data, not labels: the normal class is assumed *not* to be
    invariant under these symmetries. A class that is (a ring, a plus sign)
    gets negatives inside its own support; the hinge then cannot be satisfied
    on them, and the detector degrades toward that class's symmetric part.

    The certificate is unaffected: it holds for any 1-Lipschitz f, whatever
    the negatives it was trained against.

    Projection and membership are those of :class:`kocc.sampling.Box`. The
    training images are not part of :meth:`get_config` (they would be the
    whole class): a model saved and reloaded gets the plain :class:`Box` of
    the same bounds as its domain (:meth:`from_config`), which is all that
    scoring, the certificate and image synthesis need.

    Args:
        images: training images of the normal class, ``(n, H, W)`` or
            ``(n, H, W, C)`` with ``H == W`` (a square, so that the rotations
            by 90 degrees keep the shape), finite.
        low: lower bound of the box, scalar or per feature.
        high: upper bound, same convention; ``high > low`` everywhere.
        shape: feature shape of a sample, e.g. ``(H, W, C)`` or ``(H*W*C,)``
            for a network on flattened pixels; default: the images' shape.
        box_fraction: probability in ``[0, 1]`` that a draw is uniform in the
            box (1: the paper's sampler).
        symmetries: names of :data:`SYMMETRIES` to draw from (uniformly),
            default all seven; :func:`select_symmetries` picks them from the
            images.

    Raises:
        ValueError: as :class:`kocc.sampling.Box`, and for images that are
            empty, not finite, not square, of a size that does not fit
            ``shape``, a ``box_fraction`` outside ``[0, 1]``, or symmetries
            that :func:`check_symmetries` rejects.
    """

    def __init__(
        self,
        images: Any,
        low: Any = -1.0,
        high: Any = 1.0,
        shape: Any = None,
        box_fraction: float = 0.5,
        symmetries: Any = SYMMETRIES,
    ):
        array = _square_images(images)
        if not (0.0 <= float(box_fraction) <= 1.0):
            raise ValueError(f"box_fraction must be in [0, 1], got {box_fraction!r}")
        super().__init__(low, high, shape=array.shape[1:] if shape is None else shape)
        if int(np.prod(self.shape)) != int(np.prod(array.shape[1:])):
            raise ValueError(
                f"images of shape {array.shape[1:]} do not fit samples of shape "
                f"{self.shape}"
            )
        self.images = tf.constant(array)
        self.box_fraction = float(box_fraction)
        self.symmetries = check_symmetries(symmetries)
        # Row k: for every pixel of a draw turned by the k-th selected
        # symmetry, the flat index of the source pixel it is read from.
        side = array.shape[1]
        pixels = tf.reshape(tf.range(side * side), (1, side, side, 1))
        sources = tf.reshape(_dihedral_variants(pixels), (len(SYMMETRIES), -1))
        self._pixel_sources = tf.gather(
            sources, [SYMMETRIES.index(name) for name in self.symmetries]
        )

    def _sample(self, n, seed, shape):
        seeds = tf.random.experimental.stateless_split(seed, 4)
        uniform = super()._sample(n, seeds[0], shape)
        count = tf.shape(self.images)[0]
        index = tf.random.stateless_uniform(
            (n,), seed=seeds[1], maxval=count, dtype=tf.int32
        )
        which = tf.random.stateless_uniform(
            (n,), seed=seeds[2], maxval=len(self.symmetries), dtype=tf.int32
        )
        # Only the drawn symmetry of each image is built: one gather of its
        # pixels through that symmetry's row of source indices.
        chosen = tf.gather(self.images, index)
        flat = tf.reshape(chosen, (n, -1, tf.shape(chosen)[-1]))
        turned = tf.gather(flat, tf.gather(self._pixel_sources, which), batch_dims=1)
        turned = tf.reshape(turned, (n, *shape))
        in_box = tf.random.stateless_uniform((n,), seed=seeds[3]) < self.box_fraction
        in_box = tf.reshape(in_box, (n,) + (1,) * len(shape))
        return self.project(tf.where(in_box, uniform, turned))

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "box_fraction": self.box_fraction,
            "symmetries": list(self.symmetries),
        }

    @classmethod
    def from_config(cls, config: dict) -> Box:
        """The plain :class:`Box` of the same bounds (the images are not saved)."""
        config = dict(config)
        config.pop("box_fraction", None)
        config.pop("symmetries", None)
        return Box(**config)

    def __repr__(self) -> str:
        return (
            f"DihedralBox({int(self.images.shape[0])} images, "
            f"low={self.low.tolist()}, high={self.high.tolist()}, "
            f"box_fraction={self.box_fraction}, symmetries={list(self.symmetries)})"
        )
