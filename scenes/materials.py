"""Procedural materials of the built-in street world, and the twin's shading model.

Conventions:
- A `Material` is data (a kind + JSON-friendly params); `material.albedo(p_local, n_local)` evaluates
  a vectorized numpy texture: points ``p_local [N, 3]`` and unit normals ``n_local [N, 3]`` in the
  mesh's OWN frame (world for background parts, the actor box frame for actor parts, so textures
  move with actors) -> albedo ``[N, 3]`` in [0, 1].
- World / actor frames: z up, metres; actor frames x forward, y left (ISO 8855).
- Textures vary at >= ~5-10 cm scale (tiles, bricks, windows, smooth sinusoids); no per-pixel noise,
  so a NeRF can learn them. Per-cell variation uses a deterministic integer hash of the cell index.
- Shading (`shade`) is view-independent Lambert: ``albedo * (ambient + diffuse * max(0, n . sun))``,
  clipped to [0, 1]. The sky (`sky_color`) is a smooth function of the ray direction only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Material:
    """A procedural texture: ``kind`` names a function in `KINDS`, ``params`` its keyword arguments."""

    kind: str
    """One of `KINDS` (``asphalt``, ``facade``, ``car_paint``...)."""
    params: dict = field(default_factory=dict)
    """Keyword arguments of the texture function (colours as 3-tuples in [0, 1])."""

    def albedo(self, p_local: np.ndarray, n_local: np.ndarray) -> np.ndarray:
        """Albedo ``[N, 3]`` in [0, 1] at points/normals given in the mesh's own frame."""
        p = np.asarray(p_local, dtype=np.float64).reshape(-1, 3)
        n = np.asarray(n_local, dtype=np.float64).reshape(-1, 3)
        rgb = KINDS[self.kind](p, n, **self.params)
        return np.clip(np.broadcast_to(rgb, p.shape), 0.0, 1.0)


# ----------------------------------------------------------------------------------------- helpers
def _c(rgb) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float64).reshape(1, 3)


def _hash01(*ints: np.ndarray, seed: int = 0) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer cell index (no per-pixel noise)."""
    h = np.full(np.shape(ints[0]), (seed * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF, dtype=np.uint64)
    for i, k in enumerate(ints):
        h ^= (np.asarray(k).astype(np.int64).astype(np.uint64) * np.uint64(0x85EBCA6B + 2 * i)) & np.uint64(0xFFFFFFFF)
        h = (h * np.uint64(0xC2B2AE35)) & np.uint64(0xFFFFFFFF)
        h ^= h >> np.uint64(13)
    return (h % np.uint64(1024)).astype(np.float64) / 1024.0


def _smooth(p: np.ndarray, wavelengths, seed: int) -> np.ndarray:
    """Low-frequency variation in [-1, 1]: a sum of a few oriented sinusoids (deterministic)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(p))
    for lam in wavelengths:
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        out += np.sin(2 * np.pi * (p @ d) / lam + rng.uniform(0, 2 * np.pi))
    return out / max(1, len(wavelengths))


# ---------------------------------------------------------------------------------------- textures
def plain(p, n, color=(0.5, 0.5, 0.5), vary=0.0, seed=0):
    """A flat colour with optional gentle low-frequency brightness variation."""
    rgb = np.repeat(_c(color), len(p), axis=0)
    if vary:
        rgb *= (1 + vary * _smooth(p, (0.7, 1.9), seed))[:, None]
    return rgb


def asphalt(p, n, color=(0.30, 0.30, 0.32), lane_width=3.5, seed=0):
    """Dark grey road with smooth metre-scale patches (wavelengths 2-9 m) and darker tyre tracks
    (smooth 20 cm bands 0.8 m either side of each lane centre, lanes centred at y = +-lane_width/2)."""
    v = 1 + 0.10 * _smooth(p, (2.3, 4.1, 8.7), seed)
    d = np.abs(np.abs(p[:, 1]) - lane_width / 2)
    v -= 0.12 * np.exp(-(((d - 0.8) / 0.2) ** 2))
    return _c(color) * v[:, None]


def lane_paint(p, n, color=(0.92, 0.92, 0.88)):
    """Road paint: near white, slightly worn along the line (wavelength ~1.5 m)."""
    return _c(color) * (0.95 + 0.05 * np.sin(p[:, 0] * 4.2))[:, None]


def sidewalk(p, n, color=(0.62, 0.60, 0.56), tile=0.6, seed=0):
    """Square concrete tiles (``tile`` m) with per-tile shade and darker grout; plain curb faces."""
    ix, iy = np.floor(p[:, 0] / tile), np.floor(p[:, 1] / tile)
    shade = 0.92 + 0.12 * _hash01(ix, iy, seed=seed)
    fx, fy = p[:, 0] / tile - ix, p[:, 1] / tile - iy
    grout = (np.minimum(fx, 1 - fx) < 0.04) | (np.minimum(fy, 1 - fy) < 0.04)
    rgb = _c(color) * np.where(grout, 0.75, shade)[:, None]
    side = np.abs(n[:, 2]) < 0.5
    rgb[side] = _c(color) * 0.85
    return rgb


def _window_mask(u, z, x0, x1, z0, height, floor_h, win_w, win_h, spacing):
    """(glass, frame) masks of a regular window grid on upper floors of a facade."""
    width = x1 - x0
    n_cols = max(1, int(width // spacing))
    off = x0 + (width - n_cols * spacing) / 2
    cu = np.mod(u - off, spacing) - spacing / 2
    zr = z - z0
    floor = np.floor(zr / floor_h)
    zf = zr - floor * floor_h - 0.9
    in_cols = (u > off) & (u < off + n_cols * spacing)
    ok_floor = (floor >= 1) & ((floor + 1) * floor_h <= height - z0 + 0.3)
    fw = 0.09
    outer = in_cols & ok_floor & (np.abs(cu) < win_w / 2 + fw) & (zf > -fw) & (zf < win_h + fw)
    glass = outer & (np.abs(cu) < win_w / 2) & (zf > 0) & (zf < win_h)
    return glass, outer & ~glass


def facade(p, n, wall=(0.7, 0.5, 0.4), trim=(0.9, 0.88, 0.82), glass=(0.18, 0.22, 0.28), door=(0.3, 0.2, 0.12),
           roof=(0.25, 0.25, 0.27), style="plaster", x0=0.0, x1=10.0, z0=0.15, height=10.0, floor_h=3.0,
           win_w=1.2, win_h=1.5, spacing=2.5, door_u=5.0, door_w=1.2, door_h=2.3, seed=0):
    """Building: wall (``brick`` courses or smooth ``plaster`` with floor cornices), a window grid with
    light frames on the street facade (faces whose normal is along y), a door, a dark flat roof."""
    u, z = p[:, 0], p[:, 2]
    if style == "brick":
        row = np.floor(z / 0.2)
        col = np.floor((u + 0.2 * np.mod(row, 2)) / 0.4)
        fz, fu = z / 0.2 - row, (u + 0.2 * np.mod(row, 2)) / 0.4 - col
        mortar = (np.minimum(fz, 1 - fz) < 0.1) | (np.minimum(fu, 1 - fu) < 0.05)
        k = np.where(mortar, 1.25, 0.9 + 0.14 * _hash01(row, col, seed=seed))
    else:
        k = 1 + 0.05 * _smooth(p, (1.7, 3.9), seed)
        k = np.where(np.mod(z - z0, floor_h) < 0.15, 1.2, k)  # cornice band each floor
    rgb = _c(wall) * k[:, None]
    front = np.abs(n[:, 1]) > 0.5
    g, f = _window_mask(u, z, x0, x1, z0, height, floor_h, win_w, win_h, spacing)
    zg = np.clip((z - z0) / max(height, 1.0), 0, 1)  # sky reflection: glass lighter higher up
    rgb[front & f] = _c(trim)
    rgb[front & g] = _c(glass) * (0.85 + 0.5 * zg[front & g])[:, None]
    d = front & (np.abs(u - door_u) < door_w / 2) & (z > z0) & (z < z0 + door_h)
    dframe = front & ~d & (np.abs(u - door_u) < door_w / 2 + 0.1) & (z > z0) & (z < z0 + door_h + 0.1)
    rgb[dframe] = _c(trim)
    rgb[d] = _c(door)
    rgb[n[:, 2] > 0.5] = _c(roof)
    return rgb


def car_paint(p, n, color=(0.6, 0.1, 0.1), half_w=0.9, z_lo=-0.4, z_hi=0.1, seed=0):
    """Car body: paint, a dark lower trim, headlights + dark grille at the front (+x), red tail lights at the rear."""
    rgb = np.repeat(_c(color), len(p), axis=0)
    zr = (p[:, 2] - z_lo) / max(z_hi - z_lo, 1e-6)
    rgb *= (0.9 + 0.15 * zr)[:, None]
    rgb[zr < 0.15] = 0.12
    ay = np.abs(p[:, 1])
    lamp = (ay > half_w - 0.45) & (ay < half_w - 0.08) & (zr > 0.55) & (zr < 0.85)
    front, back = n[:, 0] > 0.7, n[:, 0] < -0.7
    rgb[front & (ay < half_w - 0.55) & (zr > 0.3) & (zr < 0.75)] = 0.1
    rgb[front & lamp] = (0.95, 0.93, 0.8)
    rgb[back & lamp] = (0.75, 0.05, 0.05)
    return rgb


def car_cabin(p, n, color=(0.6, 0.1, 0.1), glass=(0.08, 0.1, 0.13), x_lo=-1.0, x_hi=1.0, z_lo=0.1,
              z_hi=0.6, half_w=0.8, pillar=0.1):
    """Car cabin: painted roof and pillars, dark windows inset by ``pillar`` metres on every side face."""
    rgb = np.repeat(_c(color), len(p), axis=0)
    zin = (p[:, 2] > z_lo + 0.05) & (p[:, 2] < z_hi - pillar)
    side = (np.abs(n[:, 1]) > 0.7) & (p[:, 0] > x_lo + pillar) & (p[:, 0] < x_hi - pillar)
    side &= np.abs(np.mod(p[:, 0] - x_lo, (x_hi - x_lo) / 2) - (x_hi - x_lo) / 4) < (x_hi - x_lo) / 4 - pillar / 2
    ends = (np.abs(n[:, 0]) > 0.7) & (np.abs(p[:, 1]) < half_w - pillar)
    rgb[zin & (side | ends)] = _c(glass)
    return rgb


def tire(p, n, cx=0.0, cz=0.33, r=0.33):
    """Wheel: near-black rubber with a grey hub on the flat side faces (axis along y)."""
    rgb = np.full((len(p), 3), 0.07)
    d = np.hypot(p[:, 0] - cx, p[:, 2] - cz)
    hub = (np.abs(n[:, 1]) > 0.7) & (d < 0.55 * r)
    rgb[hub] = 0.55
    return rgb


def foliage(p, n, color=(0.2, 0.42, 0.15), seed=0):
    """Tree crown: green with clumpy variation at ~0.5-1 m wavelength."""
    v = 1 + 0.25 * _smooth(p, (0.6, 1.1), seed)
    return _c(color) * v[:, None]


KINDS = {
    "plain": plain,
    "asphalt": asphalt,
    "lane_paint": lane_paint,
    "sidewalk": sidewalk,
    "facade": facade,
    "car_paint": car_paint,
    "car_cabin": car_cabin,
    "tire": tire,
    "foliage": foliage,
}


# ----------------------------------------------------------------------------------- sky + shading
SKY_HORIZON = np.array([0.80, 0.86, 0.92])
SKY_ZENITH = np.array([0.32, 0.50, 0.82])


def sky_color(dirs: np.ndarray) -> np.ndarray:
    """Sky radiance ``[N, 3]`` for unit world directions ``[N, 3]``: horizon -> zenith blend by elevation."""
    d = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    e = np.sqrt(np.clip(d[:, 2], 0.0, 1.0))[:, None]
    return SKY_HORIZON * (1 - e) + SKY_ZENITH * e


def shade(albedo: np.ndarray, normals_world: np.ndarray, sun_dir, ambient: float = 0.45, diffuse: float = 0.6) -> np.ndarray:
    """View-independent Lambert shading, clipped to [0, 1]."""
    s = np.asarray(sun_dir, dtype=np.float64)
    s = s / np.linalg.norm(s)
    lam = np.clip(np.asarray(normals_world, dtype=np.float64) @ s, 0.0, None)
    return np.clip(albedo * (ambient + diffuse * lam)[:, None], 0.0, 1.0)
