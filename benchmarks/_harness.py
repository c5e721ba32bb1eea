"""What the benchmark scripts share: a command line of integer options.

A script describes itself in its module docstring (the first line is the
description ``--help`` prints) and takes ``--name N`` options with defaults::

    args = int_options(__doc__, steps=(20, "steps per round"), rounds=5)
"""

from __future__ import annotations

import argparse

#: The options of a benchmark that times OCSDF training in alternating rounds:
#: ``--steps`` fit steps per round, ``--rounds``, ``--nr-steps`` (T).
TRAINING_ROUNDS: dict[str, int | tuple[int, str]] = {
    "steps": (20, "steps per round"),
    "rounds": 5,
    "nr_steps": 4,
}


def int_options(
    doc: str, switches: dict[str, str] | None = None, **options: int | tuple[int, str]
) -> argparse.Namespace:
    """Parses the command line: ``--name N`` for each keyword argument.

    Args:
        doc: the script's module docstring; its first line describes the script.
        switches: on/off options (``--name``, off by default) -> their help text.
        **options: option name (``nr_steps`` is spelled ``--nr-steps``) -> its
            default, or ``(default, help text)``.

    Returns:
        The parsed arguments (``args.nr_steps`` for ``--nr-steps``).
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, value in options.items():
        default, help_text = value if isinstance(value, tuple) else (value, None)
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, default=default, help=help_text)
    for name, help_text in (switches or {}).items():
        parser.add_argument(
            "--" + name.replace("_", "-"), action="store_true", help=help_text
        )
    return parser.parse_args()
