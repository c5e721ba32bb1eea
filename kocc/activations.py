r"""Sorting activations with a fast sort: FullSort, GroupSort and GroupSort2.

deel-lip's ``GroupSort`` / ``FullSort`` call ``tf.sort``, whose CPU kernel is a
full ``TopKV2`` per row and whose gradient scatters through the indices; in an
OCSDF training step of the paper's ``4 x 512`` FullSort network they take most
of the time (each Newton-Raphson step and the loss pass sort every hidden
activation, forward and backward).

:func:`sort_rows` sorts the rows of a matrix with a bitonic sorting network
(Batcher, 1968) of element-wise ``min``/``max``, compiled by XLA into a few
vectorized loops. The values travel with their column index, packed into one
``int64`` key: the high 32 bits are the float's bits mapped to an
order-preserving integer, the low 32 bits the column. The network therefore
yields the sorted values *bit for bit* and the permutation ``p`` at once, and
the gradient is the permutation's transpose: ``dL/dx[p[j]] = dL/dy[j]``, one
``unsorted_segment_sum`` (no second sort, no scatter through ``TopKV2``).
Rows whose length is not a power of two are padded with the largest key.

The layers below are deel-lip's ``FullSort`` and ``GroupSort`` with this sort:
same outputs (bit for bit, ties aside), same configuration, same Lipschitz
constant (1; a sort is a permutation of its input that depends on the input,
piecewise an orthogonal map), so :mod:`kocc.lipschitz_bound` and the vanilla
export treat them as deel-lip's.

Everything is TensorFlow/XLA (no per-sample Python) and runs unchanged on a
GPU; it was timed on CPU only (``benchmarks/train_throughput.py``,
``docs/performance.md``).

Groups of two (GroupSort2, MaxMin: ``y_{2i}, y_{2i+1} = min, max(x_{2i},
x_{2i+1})``) need no sorting network. deel-lip splits the pairs out of a
``(..., C/2, 2)`` view and concatenates them back, strided copies that cost
more than the layer's matrix product (:func:`sort_pairs`). Here each entry is
compared with its partner ``s = swap(x)`` (the pairs reversed in place), and
a pair whose first entry is the larger is swapped: ``y = where(m, s, x)`` with
``m_{2i} = m_{2i+1} = [x_{2i} > x_{2i+1}]``. The gradient is the same
permutation's transpose, ``dL/dx = where(m, swap(dL/dy), dL/dy)``. Each
pass is one XLA-compiled loop (:func:`_sorted_pairs_values`,
:func:`_sorted_pairs_gradient`, which recomputes ``m`` from ``x`` rather than
storing it): TensorFlow's own element-wise CPU kernels are not built for
AVX2, and the separate reversals and selections took about 21 of the 58 ms of
the surface recipe's training step on an AVX2 machine (profile in
``docs/performance.md``); XLA compiles the fused loop for the host CPU (and
for a GPU unchanged). The outputs and the gradients equal deel-lip's bit for
bit, ties included (at a tie inside a pair deel-lip's ``min`` and ``max``
both pass their gradient to the first entry; so does this one); subnormals
and signed zeros pass through untouched (``y`` is always a permutation of
``x``'s bits), where deel-lip's ``min``/``max`` may differ. A training run with
either layer is the same run up to rounding: TensorFlow's graph rewrites fuse
the neighbouring ops differently around an XLA call.

The sorting network's loops run over Python integers (static shapes), so the
compiled functions are traced without autograph's source conversion
(``autograph=False``; see :mod:`kocc.orthogonalization` for what it cost).
"""

from __future__ import annotations

import tensorflow as tf
from deel.lip.activations import FullSort as DeelFullSort
from deel.lip.activations import GroupSort as DeelGroupSort
from deel.lip.activations import GroupSort2 as DeelGroupSort2
from tensorflow.python.eager import record  # is a gradient tape recording?

_INT64_MAX = (1 << 63) - 1
_INT32_MAX = (1 << 31) - 1
_SIGN_MASK = 0x7FFFFFFF
_LOW32 = 0xFFFFFFFF


def _order_preserving_int(bits: tf.Tensor) -> tf.Tensor:
    """Map float32 bits (as int32) to int32 keys in the floats' order (involution)."""
    flip = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 31), _SIGN_MASK)
    return tf.bitwise.bitwise_xor(bits, flip)


def _bitonic_sort_columns(keys: tf.Tensor) -> tf.Tensor:
    """Ascending bitonic sort of the *columns* of ``(n, c)``, ``n`` a power of two.

    ``log2(n) (log2(n) + 1) / 2`` stages of compare-exchange; each stage is a
    reshape and an element-wise min/max between whole rows, i.e. between
    contiguous vectors of ``c`` keys (feature-major layout: one sorting network
    runs on ``c`` samples at once, which the CPU's vector units do in a few
    instructions per compare-exchange).
    """
    n = keys.shape[0]
    size = 2
    while size <= n:
        # merge sorted halves of each block of `size`: compare i with its mirror
        blocks = tf.reshape(keys, [n // size, 2, size // 2, -1])
        low, high = blocks[:, 0], tf.reverse(blocks[:, 1], [1])
        keys = tf.reshape(
            tf.stack(
                [tf.minimum(low, high), tf.reverse(tf.maximum(low, high), [1])], 1
            ),
            [n, -1],
        )
        half = size // 4
        while half >= 1:
            blocks = tf.reshape(keys, [n // (2 * half), 2, half, -1])
            low, high = blocks[:, 0], blocks[:, 1]
            keys = tf.reshape(
                tf.stack([tf.minimum(low, high), tf.maximum(low, high)], 1), [n, -1]
            )
            half //= 2
        size *= 2
    return keys


#: Keys sorted per block of samples: a block of ``BLOCK_KEYS // n`` samples (all
#: ``n`` features of each) stays in the core's cache through the network's
#: stages instead of streaming through memory (8k-16k keys were fastest of
#: 4k-64k in one run of 32,768 x 128 values).
BLOCK_KEYS = 16384

#: Fewest samples per block (unless the batch has fewer): each compare-exchange
#: runs between vectors of this many keys, and shorter vectors leave the
#: network's per-stage overhead uncovered. 128 samples of 512 features sorted
#: 1.7-2.2x faster than the 32 that ``BLOCK_KEYS`` alone gives (values and
#: permutation of 256 x 512 and 512 x 512; 32,768 x 512 values 3.2x), with
#: 32-512 tried (docs/performance.md).
MIN_BLOCK_SAMPLES = 128


def _sort_rows_of_keys(keys: tf.Tensor, pad_value: int) -> tf.Tensor:
    """Sort the rows of integer keys ``(m, n)`` (inside an XLA function).

    Pads the rows to a power of two with ``pad_value`` (the largest key), cuts the
    samples into blocks of ``max(MIN_BLOCK_SAMPLES, BLOCK_KEYS // n)`` samples
    (all of them if fewer), transposes each block to feature-major
    ``(n, samples)``, sorts its columns (:func:`_bitonic_sort_columns`) and
    transposes back.
    """
    n = keys.shape[-1]
    padded = 1 << max(0, (n - 1).bit_length())
    if padded != n:
        keys = tf.pad(keys, [[0, 0], [0, padded - n]], constant_values=pad_value)
    rows = tf.shape(keys)[0]
    samples = tf.clip_by_value(
        rows, 1, max(MIN_BLOCK_SAMPLES, BLOCK_KEYS // padded)
    )  # a batch smaller than a block is one block, not padded up to one
    blocks = (rows + samples - 1) // samples
    keys = tf.pad(
        keys, [[0, blocks * samples - rows], [0, 0]], constant_values=pad_value
    )
    keys = tf.transpose(tf.reshape(keys, [blocks, samples, padded]), [0, 2, 1])
    keys = tf.map_fn(_bitonic_sort_columns, keys, parallel_iterations=1)
    return tf.reshape(tf.transpose(keys, [0, 2, 1]), [-1, padded])[:rows, :n]


@tf.function(jit_compile=True, autograph=False)
def _sort_values(x: tf.Tensor) -> tf.Tensor:
    """Values only (no permutation): int32 keys, half the memory traffic.

    Integer keys rather than floats: XLA's float min/max flush subnormals to 0,
    integer ones keep every bit.
    """
    keys = _order_preserving_int(tf.bitcast(x, tf.int32))
    keys = _sort_rows_of_keys(keys, _INT32_MAX)
    return tf.bitcast(_order_preserving_int(keys), tf.float32)


@tf.function(jit_compile=True, autograph=False)
def _sort_with_permutation(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    n = x.shape[-1]
    keys = _order_preserving_int(tf.bitcast(x, tf.int32))
    packed = tf.bitwise.left_shift(tf.cast(keys, tf.int64), 32) + tf.range(
        n, dtype=tf.int64
    )
    packed = _sort_rows_of_keys(packed, _INT64_MAX)
    keys = tf.cast(tf.bitwise.right_shift(packed, 32), tf.int32)
    values = tf.bitcast(_order_preserving_int(keys), tf.float32)
    columns = tf.cast(tf.bitwise.bitwise_and(packed, _LOW32), tf.int32)
    return values, columns


@tf.function(jit_compile=True, autograph=False)
def _permutation_transpose(upstream: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
    """``dL/dx[r, columns[r, j]] = dL/dy[r, j]`` (the sort's gradient).

    Under XLA: 0.29 vs 0.76 ms for 256 x 512 with TensorFlow's kernel (one run,
    idle machine; ``tf.scatter_nd`` 3.4 ms, XLA's 0.32 ms).
    """
    rows, n = tf.shape(upstream)[0], tf.shape(upstream)[1]
    targets = columns + n * tf.range(rows)[:, None]
    summed = tf.math.unsorted_segment_sum(
        tf.reshape(upstream, [-1]), tf.reshape(targets, [-1]), rows * n
    )
    return tf.reshape(summed, tf.shape(upstream))


@tf.custom_gradient
def _sort_rows_float32(x: tf.Tensor) -> tf.Tensor:
    values, columns = _sort_with_permutation(x)

    def grad(upstream: tf.Tensor) -> tf.Tensor:
        return _permutation_transpose(upstream, columns)

    return values, grad


@tf.custom_gradient
def _sort_rows_values_first(x: tf.Tensor) -> tf.Tensor:
    """Values-only forward; a gradient, if asked, recomputes the permutation."""

    def grad(upstream: tf.Tensor) -> tf.Tensor:
        return _permutation_transpose(upstream, _sort_with_permutation(x)[1])

    return _sort_values(x), grad


@tf.autograph.experimental.do_not_convert
def sort_rows(x: tf.Tensor) -> tf.Tensor:
    """Sort each row of a 2-D tensor in ascending order (= ``tf.sort(x, -1)``).

    Differentiable (the gradient is the permutation's transpose); float32 via
    the packed bitonic network, other dtypes fall back to ``tf.sort``. When no
    gradient tape is recording (inference, e.g. the grid of a surface
    extraction) the network sorts the float values alone, without the column
    indices.

    Args:
        x: ``(m, n)``, ``n`` known statically.

    Returns:
        The sorted rows, same shape and dtype.
    """
    x = tf.convert_to_tensor(x)
    if x.dtype != tf.float32 or x.shape.rank != 2 or x.shape[-1] is None:
        return tf.sort(x, axis=-1)
    if x.shape[-1] == 1:
        return x
    if not record.could_possibly_record():  # inference: no tape is recording
        return _sort_rows_values_first(x)
    return _sort_rows_float32(x)


@tf.autograph.experimental.do_not_convert
def _sort_groups(layer: DeelGroupSort, x: tf.Tensor) -> tf.Tensor:
    """Sort ``x`` (channels last) in groups of ``layer.n``, as deel-lip does."""
    rows = tf.reshape(x, [-1, layer.n])
    return tf.reshape(sort_rows(rows), tf.shape(x)) * layer._get_coef()


def _swap_pairs(x: tf.Tensor) -> tf.Tensor:
    """``x`` with the entries of each pair of channels ``(2i, 2i + 1)`` swapped."""
    pairs = tf.reshape(x, [-1, x.shape[-1] // 2, 2])
    return tf.reshape(tf.reverse(pairs, [-1]), tf.shape(x))


def _partners(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``swap(x)``, the odd channels, and the mask ``m`` of pairs to swap.

    ``m`` is true on both entries of a pair whose first entry is the larger:
    ``x > swap(x)`` on even channels, ``swap(x) > x`` on odd ones.
    """
    partner = _swap_pairs(x)
    odd = tf.cast(tf.range(x.shape[-1]) % 2, tf.bool)
    return partner, odd, tf.where(odd, partner > x, x > partner)


@tf.function(jit_compile=True, autograph=False)
def _sorted_pairs_values(x: tf.Tensor) -> tf.Tensor:
    """``where(m, swap(x), x)``: one fused XLA loop over ``x``."""
    partner, _, swap = _partners(x)
    return tf.where(swap, partner, x)


@tf.function(jit_compile=True, autograph=False)
def _sorted_pairs_gradient(x: tf.Tensor, upstream: tf.Tensor) -> tf.Tensor:
    """The transpose of ``x``'s pair permutation applied to ``upstream``.

    ``where(m, swap(g), g)``, except at a tie inside a pair: deel-lip's ``min``
    and ``max`` both pass their gradient to the pair's first entry, none to
    the second, and so does this. The mask is recomputed from ``x`` in the
    same fused loop, so the forward pass keeps no mask for the backward.
    """
    partner, odd, swap = _partners(x)
    partner_upstream = _swap_pairs(upstream)
    moved = tf.where(swap, partner_upstream, upstream)
    tied = tf.where(odd, tf.zeros_like(upstream), upstream + partner_upstream)
    return tf.where(tf.equal(x, partner), tied, moved)


@tf.autograph.experimental.do_not_convert
def sort_pairs(x: tf.Tensor) -> tf.Tensor:
    """Sort the pairs of channels ``(2i, 2i + 1)`` of ``x`` (channels last).

    ``y_{2i} = min(x_{2i}, x_{2i+1})``, ``y_{2i+1} = max(x_{2i}, x_{2i+1})``:
    deel-lip's ``GroupSort2`` (Anil et al., 2019, MaxMin up to the order of
    the pair). Computed as ``where(m, swap(x), x)`` with ``m`` true on both
    entries of a pair whose first entry is the larger, and the gradient as the
    transpose of that permutation (module docstring); each is one XLA-compiled
    loop (compiled once per input shape and dtype).

    Args:
        x: float tensor, last axis of even, static size.

    Returns:
        The pair-sorted tensor, same shape and dtype.
    """
    channels = x.shape[-1]
    if channels is None or channels % 2:
        raise ValueError(
            f"sort_pairs needs an even, static number of channels, got {channels}"
        )

    @tf.custom_gradient
    def sorted_pairs(x: tf.Tensor) -> tf.Tensor:
        def grad(upstream: tf.Tensor) -> tf.Tensor:
            return _sorted_pairs_gradient(x, upstream)

        return _sorted_pairs_values(x), grad

    return sorted_pairs(x)


@tf.keras.utils.register_keras_serializable("kocc")
class GroupSort(DeelGroupSort):
    """deel-lip's ``GroupSort`` (sort channels in groups of ``n``), fast sort.

    Same arguments and outputs as :class:`deel.lip.activations.GroupSort`;
    groups of 2 use :func:`sort_pairs`, larger groups :func:`sort_rows`.
    """

    def call(self, x: tf.Tensor) -> tf.Tensor:
        if self.data_format != "channels_last":
            return super().call(x)
        if self.n == 2:
            return sort_pairs(x) * self._get_coef()
        return _sort_groups(self, x)


@tf.keras.utils.register_keras_serializable("kocc")
class GroupSort2(GroupSort, DeelGroupSort2):
    """deel-lip's ``GroupSort2`` (sort pairs of channels), by :func:`sort_pairs`.

    Same arguments and outputs as :class:`deel.lip.activations.GroupSort2`
    (``n = 2`` from its ``__init__``; ``call`` is :class:`GroupSort`'s).
    """


@tf.keras.utils.register_keras_serializable("kocc")
class FullSort(DeelFullSort):
    """deel-lip's ``FullSort`` (sort all channels), with the fast sort.

    Same arguments and outputs as :class:`deel.lip.activations.FullSort`.
    """

    def call(self, x: tf.Tensor) -> tf.Tensor:
        if self.data_format != "channels_last":
            return super().call(x)
        return _sort_groups(self, x)
