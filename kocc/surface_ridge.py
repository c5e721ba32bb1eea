r"""The ridge of a fitted score: mesh the surface itself, not its shell's boundary.

OCSDF fitted to points sampled on a surface approximates :math:`f \approx m -
d(x, \Sigma)` near the surface :math:`\Sigma` (paper §6: the signed distance to
the thin support of the points, plus the margin). Its level set
:math:`\{f = \ell\}` (:func:`kocc.surfaces.extract_mesh`, the paper's
extraction) is therefore the boundary of a *shell* of half-thickness
:math:`\delta \approx m - \ell` around :math:`\Sigma`: two sheets, each
:math:`\delta` away from the surface, and rounded edges. The surface itself is
the *ridge* of f, where f stops increasing and starts decreasing along the
normal. Where the shell encloses an interior (a closed surface whose inside is
wider than the shell), that ridge is the zero level of the directional
derivative of f across the shell, which this module meshes by marching cubes:

1. **Regions, from the signs alone.** The shell is :math:`\{f \ge \ell\}`; the
   grid points outside it are split into the *exterior* (connected, by faces,
   to the grid's border, which :func:`kocc.surfaces.mesh_from_volume` pads
   below the level) and the *interior* (every other component: what the shell
   encloses).
2. **Ridge band.** The shell points whose distances to the exterior and to
   the interior add up to at most ``2 * reach`` grid cells (Euclidean
   distance transforms, scipy ``distance_transform_edt``): the points of a
   wall at most about ``2 * reach`` cells thick between the two, all of its
   thickness or none of it. Elsewhere (a thin part whose shell is solid
   through, a shape without an interior) nothing changes: the mesh there is
   the shell's boundary, as in the paper.
3. **Field.** :math:`g = f - \ell` outside the band and in the exterior,
   :math:`g = \ell - f > 0` in the interior (what the shell encloses is now
   inside the solid), and in the band

   .. math:: g = \nabla f \cdot \frac{\nabla \psi}{\|\nabla \psi\|}, \qquad
      \psi = d_{\mathrm{int}} - d_{\mathrm{ext}},

   the derivative of f in the outward direction (:math:`\psi` grows away
   from the interior): negative on the exterior side of the ridge (going
   outward leaves the surface, f decreases), positive on its interior side
   (going outward approaches the surface, f increases), zero on the ridge.
   Both gradients are central differences on the grid. For a distance-like
   kink :math:`f = m - |x - r|` between grid points i and i + 1, the central
   differences are
   :math:`r - i` and :math:`r - i - 1`, whose linear interpolation vanishes
   exactly at r: marching cubes places the ridge to within the fit's accuracy,
   not the grid's.

The result is still a marching-cubes mesh of one scalar field on the grid, so
it is closed (watertight) wherever the shell's mesh is; it has one sheet where
the shell had two. Exact values of f are needed on the band and its
6-neighbours (:func:`ridge_exact_points`); :func:`kocc.surfaces.extract_mesh`
evaluates them after its certified coarse-to-fine pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from kocc.implicit_surface import point_spacing
from kocc.validation import check_non_negative, check_positive

#: Extraction modes of :func:`kocc.surfaces.extract_mesh`: ``"shell"`` meshes
#: the level set (the paper's), ``"ridge"`` the ridge where the shell encloses
#: an interior (this module).
SURFACE_MODES = ("shell", "ridge")

#: Default ``reach`` of the ridge band, in grid cells.
DEFAULT_RIDGE_REACH = 8.0

#: Default offset c of the local level, in median nearest-neighbour spacings
#: of the points (:class:`LocalLevel`).
DEFAULT_LOCAL_OFFSET = 0.25

#: Default offset of the *global* level under the ridge extraction, in median
#: nearest-neighbour spacings of the points
#: (:func:`kocc.implicit_surface.default_level`): twice the shell
#: extraction's 0.25. The ridge needs the shell :math:`\{f \ge \ell\}` to
#: enclose the interior of a closed surface; at 0.25 it leaks through gaps
#: between the points on some fits (the torus at seed 0: no ridge point), the
#: interior joins the exterior, and the mesh falls back to the shell's two
#: offset sheets. The lower level is also the local level's floor, so it thickens
#: nothing where the local level is above it (docs/surfaces.md, "The global
#: level under the ridge extraction").
DEFAULT_RIDGE_LEVEL_OFFSET = 0.5

#: Points averaged by the local level at each grid point.
LOCAL_NEIGHBOURS = 16


def check_surface_mode(surface: str) -> str:
    """``surface`` if it is one of :data:`SURFACE_MODES`, else a ``ValueError``."""
    if surface not in SURFACE_MODES:
        raise ValueError(f"surface must be one of {SURFACE_MODES}, got {surface!r}")
    return surface


@dataclass
class RidgeRegions:
    """Where the ridge is meshed, from the signs of :math:`f - \\ell` on a grid.

    Attributes:
        interior: ``(n, n, n)`` booleans, the grid points below the level that
            the shell encloses (not connected by faces to the grid's border).
        band: ``(n, n, n)`` booleans, the shell points whose distances to
            the exterior and to the interior add up to at most ``2 * reach``
            cells.
        outward: ``(3, n, n, n)`` float32 unit vectors on the band (zero
            elsewhere): the gradient direction of
            :math:`d_{\\mathrm{int}} - d_{\\mathrm{ext}}`, pointing from the
            interior toward the exterior.
    """

    interior: np.ndarray
    band: np.ndarray
    outward: np.ndarray


def ridge_regions(
    shell: np.ndarray, reach: float = DEFAULT_RIDGE_REACH
) -> RidgeRegions:
    """Interior, ridge band and outward direction for a shell on a grid.

    Args:
        shell: ``(n, n, n)`` booleans, the grid points with :math:`f \\ge \\ell`.
        reach: a shell point is in the band when its distances (in grid
            cells) to the exterior and to the interior add up to at most
            ``2 * reach``: a wall up to about ``2 * reach`` cells thick.

    Returns:
        A :class:`RidgeRegions`; its band is empty when the shell encloses
        nothing.

    Raises:
        ValueError: for a non-3-D ``shell`` or a ``reach`` that is not > 0.
    """
    check_positive(reach=reach)
    shell = np.asarray(shell, bool)
    if shell.ndim != 3:
        raise ValueError(f"shell must be a 3-D boolean grid, got shape {shell.shape}")
    # the border is exterior, as mesh_from_volume pads the grid below the level
    outside = np.pad(~shell, 1, constant_values=True)
    labels, _ = ndimage.label(outside)  # face connectivity
    exterior = (labels == labels[0, 0, 0])[1:-1, 1:-1, 1:-1]
    interior = ~shell & ~exterior
    outward = np.zeros((3,) + shell.shape, np.float32)
    if not interior.any():
        return RidgeRegions(interior, np.zeros_like(shell), outward)
    to_exterior = ndimage.distance_transform_edt(~exterior)
    to_interior = ndimage.distance_transform_edt(~interior)
    band = shell & (to_exterior + to_interior <= 2 * reach)
    gradient = np.stack(np.gradient(to_interior - to_exterior))
    norm = np.sqrt(np.sum(gradient**2, axis=0))
    usable = band & (norm > 0)
    outward[:, usable] = gradient[:, usable] / norm[usable]
    return RidgeRegions(interior, usable, outward)


@dataclass(frozen=True)
class LocalLevel:
    r"""A level that follows the score of the nearby training points.

    .. math::
        \lambda(z) = \max\Big(\ell,\;
        \frac{\sum_i w_i(z) f(z_i)}{\sum_i w_i(z)} - c\,h\Big), \qquad
        w_i(z) = \exp\Big(-\frac{\|z - z_i\|^2 - \min_j \|z - z_j\|^2}{2 h^2}\Big),

    over the :data:`LOCAL_NEIGHBOURS` training points :math:`z_i` nearest to z
    (standardized coordinates), h their median nearest-neighbour spacing
    (:func:`kocc.implicit_surface.point_spacing`), c the ``offset`` and
    :math:`\ell` the global level (the floor: the local level never thickens
    the shell). Where the shell is solid through (a thin plate, a filled
    part), the global level (the 1st percentile of f over the points, lowered
    by a quarter spacing) sits below the score of most points, so the level
    set lies outside them by the gap; the local level sits just under the
    score of the points nearby, so the level set passes c h from them.
    Subtracting the smallest squared distance in the weights keeps them from
    underflowing far from the points (the nearest point then weighs 1).

    Attributes:
        points: ``(n, 3)`` training points, standardized.
        scores: ``(n,)`` their scores.
        floor: the global level :math:`\ell`.
        offset: c, in spacings (``>= 0``).
        spacing: h, in standardized units.
    """

    points: np.ndarray
    scores: np.ndarray
    floor: float
    offset: float
    spacing: float

    @classmethod
    def of(cls, points: np.ndarray, scores: np.ndarray, floor: float, offset: float):
        """The local level of standardized ``points`` scored ``scores``."""
        check_non_negative(local_offset=offset)
        points = np.asarray(points, np.float64)
        scores = np.asarray(scores, np.float64).reshape(-1)
        if points.ndim != 2 or points.shape[1] != 3 or len(scores) != len(points):
            raise ValueError(
                f"need (n, 3) points and n scores, got {points.shape} and "
                f"{scores.shape}"
            )
        return cls(points, scores, float(floor), float(offset), point_spacing(points))

    @property
    def high(self) -> float:
        r"""The largest value :math:`\lambda` can take."""
        return max(self.floor, float(self.scores.max()) - self.offset * self.spacing)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        r""":math:`\lambda` at ``(m, 3)`` standardized points, float64 ``(m,)``."""
        k = min(LOCAL_NEIGHBOURS, len(self.points))
        distance, nearest = cKDTree(self.points).query(np.asarray(z, np.float64), k=k)
        distance, nearest = distance.reshape(len(z), k), nearest.reshape(len(z), k)
        squared = distance**2
        weights = np.exp(-(squared - squared[:, :1]) / (2 * self.spacing**2))
        mean = np.sum(weights * self.scores[nearest], axis=1) / weights.sum(axis=1)
        return np.maximum(self.floor, mean - self.offset * self.spacing)


def ridge_exact_points(regions: RidgeRegions) -> np.ndarray:
    """Grid points whose exact score :func:`ridge_field` reads: the band and its
    6-neighbours (central differences). ``(n, n, n)`` booleans."""
    return ndimage.binary_dilation(regions.band)


def ridge_field(volume: np.ndarray, level: float, regions: RidgeRegions) -> np.ndarray:
    """The scalar field whose zero level set is the ridge (see the module docs).

    Args:
        volume: ``(n, n, n)`` scores, exact on :func:`ridge_exact_points` and
            near the level set.
        level: the shell's level :math:`\\ell`.
        regions: :func:`ridge_regions` of ``volume >= level``.

    Returns:
        ``(n, n, n)`` float32: :math:`f - \\ell` on the exterior and outside
        the band, :math:`\\ell - f` in the interior, the outward derivative of
        f on the band (positive inside the ridge). Mesh it at 0.
    """
    volume = np.asarray(volume, np.float32)
    field = volume - np.asarray(level, np.float32)
    field[regions.interior] = -field[regions.interior]
    if regions.band.any():
        derivative = np.zeros(volume.shape, np.float32)
        for axis, partial in enumerate(np.gradient(volume)):
            derivative += partial * regions.outward[axis]
        # f increases outward up to the ridge: inside the solid there
        field[regions.band] = derivative[regions.band]
    return field
