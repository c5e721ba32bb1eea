"""Data sets: synthetic toys, ODDS/ADBench tabular files, images.

Real data are read from a directory given by the caller or by the environment
variable ``KOCC_DATA_DIR`` (see :func:`kocc.datasets.paths.data_dir`); nothing is
downloaded at run time.
"""

from kocc.datasets.tabular import available_tabular, load_tabular

__all__ = ["available_tabular", "load_tabular"]
