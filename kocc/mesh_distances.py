r"""Distances between surfaces: Chamfer, Hausdorff and normal consistency.

Both surfaces are represented by ``n`` points drawn uniformly on them (a mesh is
sampled with trimesh; a point array is used as given, or subsampled to ``n``).
With :math:`A, B` the two samples and :math:`d(a, B) = \min_{b\in B}\|a-b\|_2`
(nearest neighbour, scipy ``cKDTree``):

- Chamfer distance, DeepSDF's convention (Park et al., 2019, sec. 6; the metric
  of the OCSDF paper's Table 4): the mean *squared* distance each way, summed,

  .. math:: \mathrm{CD}(A, B) = \frac{1}{|A|}\sum_{a\in A} d(a, B)^2
            + \frac{1}{|B|}\sum_{b\in B} d(b, A)^2 ;

- Hausdorff distance: :math:`\max(\max_{a} d(a, B), \max_{b} d(b, A))`;
- normal consistency (meshes only): the mean over both directions of
  :math:`|n_a \cdot n_{b^*}|`, with :math:`b^*` the nearest neighbour of ``a`` and
  ``n`` the unit normal of the face a sample was drawn from (1 = aligned;
  the absolute value ignores orientation).

:func:`compare_surfaces` reports all three at once, optionally in units of the
reference's bounding-box diagonal :math:`D` (Chamfer divided by :math:`D^2`, as
it is a squared length; Hausdorff by :math:`D`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from kocc.extras import require

trimesh = require("trimesh")

#: Default number of surface samples, DeepSDF's choice.
DEFAULT_SAMPLES = 30000


@dataclass(frozen=True)
class SurfaceSample:
    """Points drawn on a surface, with the unit normals of their faces if known."""

    points: np.ndarray
    normals: np.ndarray | None


def sample_for_distance(geometry: Any, n: int, seed: int = 0) -> SurfaceSample:
    """``n`` points on a mesh (area-uniform, seeded), or ``n`` of a point array.

    Args:
        geometry: a :class:`trimesh.Trimesh` or an ``(m, 3)`` array.
        n: number of samples (a point array with ``m <= n`` is used whole).
        seed: seed of the draw.

    Raises:
        ValueError: for a mesh without faces, an empty or non-3-D array, or
            ``n < 1``.
    """
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    if isinstance(geometry, trimesh.Trimesh):
        if len(geometry.faces) == 0:
            raise ValueError("cannot sample a mesh without faces")
        points, face_index = trimesh.sample.sample_surface(
            geometry, int(n), seed=int(seed)
        )
        return SurfaceSample(points, geometry.face_normals[face_index])
    points = np.asarray(geometry, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"expected a mesh or (m, 3) points, got shape {points.shape}")
    if len(points) > n:
        rng = np.random.default_rng(int(seed))
        points = points[rng.choice(len(points), int(n), replace=False)]
    return SurfaceSample(points, None)


def _nearest(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distance, index = cKDTree(b).query(a, k=1)
    return distance, index


def chamfer_distance(a: Any, b: Any, n: int = DEFAULT_SAMPLES, seed: int = 0) -> float:
    """Chamfer distance (DeepSDF convention, squared, summed both ways).

    Args:
        a, b: meshes or ``(m, 3)`` point arrays.
        n: surface samples per side.
        seed: seed of the sampling (``a`` uses ``seed``, ``b`` ``seed + 1``).
    """
    pa = sample_for_distance(a, n, seed).points
    pb = sample_for_distance(b, n, seed + 1).points
    d_ab, _ = _nearest(pa, pb)
    d_ba, _ = _nearest(pb, pa)
    return float(np.mean(d_ab**2) + np.mean(d_ba**2))


def hausdorff_distance(
    a: Any, b: Any, n: int = DEFAULT_SAMPLES, seed: int = 0
) -> float:
    """Symmetric Hausdorff distance between the two samples."""
    pa = sample_for_distance(a, n, seed).points
    pb = sample_for_distance(b, n, seed + 1).points
    d_ab, _ = _nearest(pa, pb)
    d_ba, _ = _nearest(pb, pa)
    return float(max(d_ab.max(), d_ba.max()))


def bounding_box_diagonal(geometry: Any) -> float:
    """Length of the diagonal of the axis-aligned bounding box of a mesh or points."""
    if isinstance(geometry, trimesh.Trimesh):
        return float(np.linalg.norm(geometry.extents))
    return float(np.linalg.norm(np.ptp(np.asarray(geometry, np.float64), axis=0)))


@dataclass(frozen=True)
class SurfaceComparison:
    """Distances from a reconstruction to a reference surface.

    Attributes:
        chamfer: Chamfer distance (squared lengths; divided by ``diagonal**2``
            when normalized).
        hausdorff: Hausdorff distance (divided by ``diagonal`` when normalized).
        normal_consistency: in [0, 1], ``None`` unless both are meshes.
        diagonal: the reference's bounding-box diagonal (original units).
        normalized: whether the distances are in units of ``diagonal``.
    """

    chamfer: float
    hausdorff: float
    normal_consistency: float | None
    diagonal: float
    normalized: bool

    def as_dict(self) -> dict:
        return asdict(self)


def compare_surfaces(
    reconstruction: Any,
    reference: Any,
    n: int = DEFAULT_SAMPLES,
    seed: int = 0,
    normalize: bool = True,
) -> SurfaceComparison:
    """Chamfer, Hausdorff and normal consistency from one sampling of each side.

    Args:
        reconstruction: the extracted mesh (or points).
        reference: the true surface: a mesh, or the input points when no mesh
            is known.
        n: surface samples per side.
        seed: sampling seed.
        normalize: report the distances in units of the reference's bounding-box
            diagonal (Chamfer / D², Hausdorff / D).
    """
    sa = sample_for_distance(reconstruction, n, seed)
    sb = sample_for_distance(reference, n, seed + 1)
    d_ab, i_ab = _nearest(sa.points, sb.points)
    d_ba, i_ba = _nearest(sb.points, sa.points)
    chamfer = float(np.mean(d_ab**2) + np.mean(d_ba**2))
    hausdorff = float(max(d_ab.max(), d_ba.max()))
    consistency = None
    if sa.normals is not None and sb.normals is not None:
        cos_ab = np.abs(np.sum(sa.normals * sb.normals[i_ab], axis=1))
        cos_ba = np.abs(np.sum(sb.normals * sa.normals[i_ba], axis=1))
        consistency = float((cos_ab.mean() + cos_ba.mean()) / 2)
    diagonal = bounding_box_diagonal(reference)
    if normalize:
        if diagonal <= 0:
            raise ValueError("the reference has a zero bounding-box diagonal")
        chamfer /= diagonal**2
        hausdorff /= diagonal
    return SurfaceComparison(chamfer, hausdorff, consistency, diagonal, normalize)
