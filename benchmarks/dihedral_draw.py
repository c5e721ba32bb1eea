"""DihedralBox draw time: one symmetry built per draw vs all seven (JSON).

Times ``DihedralBox._sample`` (the sampler's draw, as training calls it under
``tf.function``) against the previous draw, which built the seven symmetries of
every chosen image and kept one (reproduced here from the same random numbers),
and a plain ``Box`` draw of the same size; checks that the two draws are equal
bit for bit. CPU milliseconds per draw (``time.process_time``), alternating
rounds, medians::

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c 1 \\
        python benchmarks/dihedral_draw.py --batch 128 --rounds 5
"""

from __future__ import annotations

import json
import statistics
import time

import kocc  # noqa: F401  isort: skip  (first: selects tf-keras)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _harness import int_options  # noqa: E402

from kocc.image_prior import SYMMETRIES, DihedralBox, _dihedral_variants  # noqa: E402
from kocc.sampling import Box  # noqa: E402


def _all_seven_draw(box: DihedralBox, n: int, seed, shape):
    """The previous draw: the same random numbers, all seven variants built."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    uniform = Box._sample(box, n, seeds[0], shape)
    index = tf.random.stateless_uniform(
        (n,), seed=seeds[1], maxval=tf.shape(box.images)[0], dtype=tf.int32
    )
    which = tf.gather(
        [SYMMETRIES.index(name) for name in box.symmetries],
        tf.random.stateless_uniform(
            (n,), seed=seeds[2], maxval=len(box.symmetries), dtype=tf.int32
        ),
    )
    variants = _dihedral_variants(tf.gather(box.images, index))
    turned = tf.reshape(tf.gather(variants, which, batch_dims=1), (n, *shape))
    in_box = tf.random.stateless_uniform((n,), seed=seeds[3]) < box.box_fraction
    in_box = tf.reshape(in_box, (n,) + (1,) * len(shape))
    return box.project(tf.where(in_box, uniform, turned))


def main() -> None:
    args = int_options(
        __doc__,
        batch=(128, "draws per call"),
        images=(6000, "training images (28 x 28 x 1)"),
        calls=(200, "calls per round"),
        rounds=5,
    )
    shape = (28, 28, 1)
    images = np.random.default_rng(0).uniform(-1, 1, (args.images, *shape))
    box = DihedralBox(images.astype("float32"), shape=shape)
    draws = {
        "one_symmetry": tf.function(lambda s: box._sample(args.batch, s, shape)),
        "all_seven": tf.function(lambda s: _all_seven_draw(box, args.batch, s, shape)),
        "plain_box": tf.function(lambda s: Box._sample(box, args.batch, s, shape)),
    }
    seeds = [tf.constant([i, 1], tf.int64) for i in range(args.calls)]
    equal = all(
        np.array_equal(draws["one_symmetry"](s), draws["all_seven"](s))
        for s in seeds[:20]
    )
    times: dict[str, list[float]] = {name: [] for name in draws}
    for _ in range(args.rounds):
        for name, draw in draws.items():
            start = time.process_time()
            for s in seeds:
                draw(s)
            times[name].append((time.process_time() - start) / len(seeds) * 1e3)
    print(
        json.dumps(
            {
                "batch": args.batch,
                "equal_bit_for_bit": equal,
                "cpu_ms_per_draw": {
                    name: round(statistics.median(t), 3) for name, t in times.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
