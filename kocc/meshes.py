"""Mesh and point-cloud I/O: loading, checking, sampling points, writing, rendering.

The implicit-surface pipeline (:mod:`kocc.surfaces`) starts from a point cloud:
either read from a file (``.ply``, ``.xyz``, ``.npy``) or sampled on a mesh
(``.off``, ``.stl``, ``.obj``, ``.ply``). Sampling follows the authors' code
(2,048 points drawn uniformly on the surface with trimesh; uniformly inside the
volume as an option for watertight meshes). All sampling is seeded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from kocc.extras import require

trimesh = require("trimesh")

#: File extensions read as meshes (faces required), lower case.
MESH_EXTENSIONS = (".off", ".stl", ".obj", ".ply")
#: File extensions read as point clouds, lower case.
POINT_CLOUD_EXTENSIONS = (".ply", ".xyz", ".npy")
#: The fewest points a surface can be fitted to (a tetrahedron's vertices).
MIN_POINTS = 4


def check_points(points: Any, name: str = "points") -> np.ndarray:
    """Validate a 3-D point cloud and return it as a float32 ``(n, 3)`` array.

    Args:
        points: array-like of shape ``(n, 3)``.
        name: the argument's name, used in error messages.

    Returns:
        The points as a C-contiguous float32 array.

    Raises:
        ValueError: if the array is not numeric, not of shape ``(n, 3)`` (e.g.
            2-D points), holds fewer than :data:`MIN_POINTS` points, contains NaN
            or inf, or all its points coincide.
    """
    try:
        array = np.asarray(points, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} must be a numeric array of shape (n, 3): {err}"
        ) from err
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(
            f"{name} must be 3-D points of shape (n, 3), got shape {array.shape}"
        )
    if array.shape[0] < MIN_POINTS:
        raise ValueError(
            f"{name} must hold at least {MIN_POINTS} points to define a surface, "
            f"got {array.shape[0]}"
        )
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        kind = "NaN" if np.isnan(array).any() else "inf"
        raise ValueError(
            f"{name} contains {kind} in {bad.size} point(s), first at row {bad[0]}"
        )
    if np.ptp(array, axis=0).max() == 0.0:
        raise ValueError(f"all {array.shape[0]} {name} coincide: no surface to fit")
    return np.ascontiguousarray(array)


def _existing_file(path: str | os.PathLike, allowed: tuple[str, ...]) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    if path.suffix.lower() not in allowed:
        raise ValueError(
            f"unsupported file type {path.suffix!r} for {str(path)!r}: expected one "
            f"of {', '.join(allowed)}"
        )
    if path.stat().st_size == 0:
        raise ValueError(f"{str(path)!r} is empty (0 bytes)")
    return path


#: What parsers raise on a malformed file; replaced by a ValueError naming it.
_PARSE_ERRORS = (ValueError, IndexError, KeyError, TypeError, EOFError, OSError)


def load_mesh(path: str | os.PathLike) -> trimesh.Trimesh:
    """Read a triangle mesh (``.off``, ``.stl``, ``.obj``, ``.ply``).

    Multi-part files (scenes) are concatenated into one mesh.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: for another extension, or a file without faces.
    """
    path = _existing_file(path, MESH_EXTENSIONS)
    try:
        mesh = trimesh.load(str(path), force="mesh", process=True)
    except _PARSE_ERRORS as err:
        raise ValueError(f"{str(path)!r} is not a readable mesh: {err}") from err
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"{str(path)!r} holds no triangle faces: not a mesh")
    return mesh


def load_point_cloud(path: str | os.PathLike) -> np.ndarray:
    """Read a point cloud: ``.npy`` array, ``.xyz`` text or ``.ply`` vertices.

    ``.xyz`` files are whitespace- (or comma-) separated text with x, y, z in the
    first three columns (further columns, e.g. normals, are ignored).

    Returns:
        The validated points, float32 ``(n, 3)`` (see :func:`check_points`).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: for another extension, or content that is not a valid cloud.
    """
    path = _existing_file(path, POINT_CLOUD_EXTENSIONS)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            points = np.load(path, allow_pickle=False)
        except _PARSE_ERRORS as err:
            raise ValueError(
                f"{str(path)!r} is not a numeric .npy array: {err}"
            ) from err
    elif suffix == ".xyz":
        text = path.read_text().replace(",", " ")
        rows = [line.split() for line in text.splitlines() if line.strip()]
        rows = [row for row in rows if not row[0].startswith("#")]
        if any(len(row) < 3 for row in rows):
            raise ValueError(f"{str(path)!r}: every line needs x y z columns")
        points = np.array([row[:3] for row in rows], dtype=np.float64)
    else:
        try:
            geometry = trimesh.load(str(path), process=False)
        except _PARSE_ERRORS as err:
            raise ValueError(
                f"{str(path)!r} is not a readable .ply file: {err}"
            ) from err
        if not hasattr(geometry, "vertices"):
            raise ValueError(f"{str(path)!r} holds no vertices")
        points = np.asarray(geometry.vertices)
    return check_points(points, name=f"points in {path.name}")


def is_mesh_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a mesh (faces) rather than a bare point cloud."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".off", ".stl", ".obj"):
        return True
    if suffix != ".ply":
        return False
    geometry = trimesh.load(str(_existing_file(path, MESH_EXTENSIONS)), process=False)
    return isinstance(geometry, trimesh.Trimesh) and len(geometry.faces) > 0


def sample_surface(mesh: trimesh.Trimesh, n: int, seed: int = 0) -> np.ndarray:
    """Draw ``n`` points uniformly (area-weighted) on the mesh surface."""
    if int(n) < MIN_POINTS:
        raise ValueError(f"n must be >= {MIN_POINTS}, got {n!r}")
    points, _ = trimesh.sample.sample_surface(mesh, int(n), seed=int(seed))
    return points.astype(np.float32)


def sample_volume(mesh: trimesh.Trimesh, n: int, seed: int = 0) -> np.ndarray:
    """Draw ``n`` points uniformly inside a watertight mesh (rejection sampling).

    Candidates are drawn in the bounding box by rounds until ``n`` fall inside.

    Raises:
        ValueError: if the mesh is not watertight (its inside is undefined) or
            has no volume.
    """
    if int(n) < MIN_POINTS:
        raise ValueError(f"n must be >= {MIN_POINTS}, got {n!r}")
    if not mesh.is_watertight:
        raise ValueError(
            "volume sampling needs a watertight mesh; this one has holes: use "
            "surface sampling instead"
        )
    box_volume = float(np.prod(mesh.extents))
    fraction = abs(float(mesh.volume)) / box_volume if box_volume > 0 else 0.0
    if fraction <= 0:
        raise ValueError("the mesh encloses no volume")
    rng = np.random.default_rng(int(seed))
    low, high = mesh.bounds
    kept: list[np.ndarray] = []
    count = 0
    while count < n:
        batch = int(1.2 * (n - count) / fraction) + 16
        candidates = rng.uniform(low, high, size=(batch, 3))
        inside = candidates[mesh.contains(candidates)]
        kept.append(inside)
        count += len(inside)
    return np.concatenate(kept)[: int(n)].astype(np.float32)


def write_mesh(mesh: trimesh.Trimesh, path: str | os.PathLike) -> Path:
    """Write a mesh; the format follows the extension (``.ply`` recommended)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(str(path))
    return path


def write_point_cloud(points: np.ndarray, path: str | os.PathLike) -> Path:
    """Write points as a ``.ply`` (vertices only) or ``.npy`` file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npy":
        np.save(path, np.asarray(points, dtype=np.float32))
    else:
        trimesh.PointCloud(np.asarray(points)).export(str(path))
    return path


def _view_rotation(elevation: float, azimuth: float) -> np.ndarray:
    """Rows: the camera's right, up and viewing (depth) axes in world coordinates."""
    el, az = np.radians(elevation), np.radians(azimuth)
    toward_camera = np.array(
        [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)]
    )
    right = np.array([-np.sin(az), np.cos(az), 0.0])
    up = np.cross(toward_camera, right)
    return np.stack([right, up, toward_camera])


def splat_image(
    points: np.ndarray,
    shade: np.ndarray,
    rotation: np.ndarray,
    center: np.ndarray,
    half: float,
    pixels: int,
) -> np.ndarray:
    """Z-buffered orthographic image of shaded points (NaN = background).

    Each point lands in one pixel; the point nearest to the camera wins.
    """
    view = (points - center) @ rotation.T
    ij = np.floor((view[:, :2] / half + 1) / 2 * pixels).astype(np.int64)
    keep = np.all((ij >= 0) & (ij < pixels), axis=1)
    ij, depth, shade = ij[keep], view[keep, 2], shade[keep]
    flat = (pixels - 1 - ij[:, 1]) * pixels + ij[:, 0]  # row 0 at the top
    order = np.lexsort((-depth, flat))  # per pixel, nearest to the camera first
    flat, shade = flat[order], shade[order]
    first = np.ones(len(flat), bool)
    first[1:] = flat[1:] != flat[:-1]
    image = np.full(pixels * pixels, np.nan)
    image[flat[first]] = shade[first]
    return image.reshape(pixels, pixels)


def render_meshes(
    panels: list[tuple[str, Any]],
    path: str | os.PathLike,
    samples: int = 400000,
    pixels: int = 320,
    elevation: float = 20.0,
    azimuth: float = 45.0,
    seed: int = 0,
) -> Path:
    """Render meshes and point clouds side by side to a PNG.

    A mesh is drawn as ``samples`` points drawn on its surface, z-buffered into a
    ``pixels`` x ``pixels`` orthographic image and shaded by
    ``0.25 + 0.75 |n . light|`` with ``n`` the face normal (two-sided); a point
    cloud is drawn as dots (3 x 3 pixels), z-buffered, in one shade. All panels
    share the first panel's view box. Numpy only (no OpenGL needed).

    Args:
        panels: ``(title, geometry)`` pairs, geometry a :class:`trimesh.Trimesh`
            or an ``(n, 3)`` array.
        path: the PNG to write.
        samples: surface points per mesh.
        pixels: image side per panel.
        elevation, azimuth: camera direction, degrees.
        seed: surface sampling seed.

    Returns:
        The written path.
    """
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("render_meshes needs at least one (title, geometry) panel")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rotation = _view_rotation(elevation, azimuth)
    light = rotation.T @ np.array([0.4, 0.6, 0.7])
    light /= np.linalg.norm(light)
    first = panels[0][1]
    ref = np.asarray(first.vertices if hasattr(first, "vertices") else first)
    center = (ref.max(axis=0) + ref.min(axis=0)) / 2
    half = float(np.linalg.norm(np.ptp(ref, axis=0))) / 2 * 1.05
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    axes = np.atleast_1d(axes)
    cmap = plt.get_cmap("Blues").with_extremes(bad="white")
    for ax, (title, geometry) in zip(axes, panels, strict=True):
        if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces):
            pts, faces = trimesh.sample.sample_surface(geometry, samples, seed=seed)
            shade = 0.25 + 0.75 * np.abs(geometry.face_normals[faces] @ light)
        else:
            pts = np.asarray(
                geometry.vertices if hasattr(geometry, "vertices") else geometry
            )
            step = 2 * half / pixels
            offsets = (
                np.stack(
                    np.meshgrid([-step, 0, step], [-step, 0, step], [0.0]), -1
                ).reshape(-1, 3)
                @ rotation
            )
            pts = (pts[:, None, :] + offsets[None]).reshape(-1, 3)
            shade = np.full(len(pts), 0.8)
        image = splat_image(pts, shade, rotation, center, half, pixels)
        ax.imshow(np.ma.masked_invalid(image), cmap=cmap, vmin=0.0, vmax=1.1)
        ax.set_axis_off()
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
