"""Baselines that OCSDF is compared against."""

from kocc.baselines.deep_svdd import DeepSVDD

__all__ = ["DeepSVDD"]
