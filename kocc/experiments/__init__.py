"""The paper experiments: what a recipe runs (the ``[experiments]`` extra).

This layer sits on top of the library (:mod:`kocc`) and nothing in the library
imports it. It holds the recipe schema (:mod:`kocc.experiments.recipes`), the
drivers of the paper's experiments (toys, tabular, images, surfaces), reporting
(tables, the paper's reference figures), plotting and the ``kocc`` command line
(:mod:`kocc.experiments.cli`). See ``docs/architecture.md``.
"""
