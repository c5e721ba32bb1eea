"""A negative-sampling prior for images: the pixel box with a random intensity.

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
"""

from __future__ import annotations

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
