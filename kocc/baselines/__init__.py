"""Baselines that OCSDF is compared against."""

from kocc.baselines.distance_regression import fit_distance_regression

__all__ = ["fit_distance_regression"]
