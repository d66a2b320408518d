"""Road coordinates along a street that may bend, and the map between them and a drive's world.

Road coordinates: ``s`` metres along the street's centre line from where the street starts, ``d``
metres to its left, z up from the ground; a heading in road coordinates is measured from the
direction of the centre line. They are the Frenet frame of the centre line: a straight street's
road frame is a rigid placement (``T_world_road``), a bending one's is not, and distances along
``s`` are true on the centre line only (at offset ``d`` they stretch by ``1 - curvature * d``).

The centre line is a polyline in the world's ground plane with a unit tangent at each vertex.
Between two vertices the line point moves linearly in ``s`` and the tangent is interpolated
linearly (then normalised), so ``(s, d) -> c(s) + d n(s)`` is continuous with a continuous heading,
and its inverse is exact: on each segment, the foot of a point solves a quadratic. A point with
feet on several segments (far on the inside of a bend) takes the nearest. Beyond both ends the line
goes on straight (`EXTENSION` metres), so what stands before the street's start or after its end
still has road coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXTENSION = 1000.0
"""Metres the centre line goes on straight beyond both ends of the street."""
_CHUNK = 1024  # points solved at once by `RoadFrame.to_road` (points x segments arrays)


@dataclass(frozen=True, eq=False)
class RoadFrame:
    """A centre line in a world's ground plane (see the module docstring). Build with `straight` or
    `along`."""

    points: np.ndarray
    """``[K, 2]`` world xy of the vertices, the straight extensions included."""
    s: np.ndarray
    """``[K]`` road s of the vertices (0 where the street starts; cumulative chord length)."""
    tangents: np.ndarray
    """``[K, 2]`` unit tangents at the vertices."""
    ground_z: float
    """World height of the road surface (the road frame is level)."""

    @staticmethod
    def straight(origin_xy, axis_xy, length: float, ground_z: float) -> "RoadFrame":
        """A straight street ``length`` metres long, starting at ``origin_xy`` and running along the
        unit ``axis_xy``."""
        o, a = np.asarray(origin_xy, float), np.asarray(axis_xy, float)
        return RoadFrame.along(np.stack([o, o + max(length, 1e-3) * a]), ground_z)

    @staticmethod
    def along(centre_xy, ground_z: float) -> "RoadFrame":
        """The street whose centre line runs through the points ``[K, 2]`` (K >= 2, in driving
        order, distinct neighbours), starting at the first one."""
        p = np.asarray(centre_xy, dtype=np.float64).reshape(-1, 2)
        seg = np.diff(p, axis=0)
        if len(p) < 2 or (np.linalg.norm(seg, axis=1) <= 1e-9).any():
            raise ValueError("a centre line needs at least two points, each apart from the next")
        t = np.empty_like(p)
        t[0], t[-1] = seg[0], seg[-1]
        t[1:-1] = p[2:] - p[:-2]
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        if len(p) > 2:  # the end tangents mirror their neighbours' about the end chords (exact on an arc)
            for end, nb, chord in ((0, 1, seg[0]), (-1, -2, seg[-1])):
                c = chord / np.linalg.norm(chord)
                t[end] = 2 * (t[nb] @ c) * c - t[nb]
        p = np.concatenate([[p[0] - EXTENSION * t[0]], p, [p[-1] + EXTENSION * t[-1]]])
        t = np.concatenate([[t[0]], t, [t[-1]]])
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))]) - EXTENSION
        for arr in (p, s, t):
            arr.flags.writeable = False
        return RoadFrame(p, s, t, float(ground_z))

    # ---- the line -----------------------------------------------------------------------------
    @property
    def length(self) -> float:
        """Length of the street (the centre line without its extensions), metres."""
        return float(self.s[-2])

    @property
    def is_straight(self) -> bool:
        return bool(np.allclose(self.tangents, self.tangents[0], atol=1e-9))

    def _at(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centre-line points and unit tangents ``[..., 2]`` at road s ``[...]``."""
        s = np.asarray(s, dtype=np.float64)
        i = np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.s) - 2)
        u = ((s - self.s[i]) / (self.s[i + 1] - self.s[i]))[..., None]
        c = self.points[i] + u * (self.points[i + 1] - self.points[i])
        t = (1 - u) * self.tangents[i] + u * self.tangents[i + 1]
        return c, t / np.linalg.norm(t, axis=-1, keepdims=True)

    def heading(self, s) -> np.ndarray:
        """World yaw (radians about +z) of the centre line at road s."""
        t = self._at(s)[1]
        return np.arctan2(t[..., 1], t[..., 0])

    def min_radius(self) -> float:
        """Smallest radius of curvature of the street (inf for a straight one), metres: the heading
        change between neighbouring vertices over the distance between them."""
        h = np.unwrap(np.arctan2(self.tangents[1:-1, 1], self.tangents[1:-1, 0]))
        if len(h) < 2:
            return float("inf")
        turn = np.abs(np.diff(h)) / np.diff(self.s[1:-1])
        return float(1.0 / turn.max()) if turn.max() > 0 else float("inf")

    # ---- points ---------------------------------------------------------------------------------
    def to_world(self, sd) -> np.ndarray:
        """World xy ``[..., 2]`` of road points ``[..., 2]`` (s, d)."""
        sd = np.asarray(sd, dtype=np.float64)
        c, t = self._at(sd[..., 0])
        return c + sd[..., 1:2] * np.stack([-t[..., 1], t[..., 0]], axis=-1)

    def to_road(self, xy) -> np.ndarray:
        """Road (s, d) ``[..., 2]`` of world ground-plane points ``[..., 2]`` (the exact inverse of
        `to_world`; the nearest foot where there are several)."""
        xy = np.asarray(xy, dtype=np.float64)
        flat = xy.reshape(-1, 2)
        out = np.concatenate([self._feet(flat[i:i + _CHUNK]) for i in range(0, len(flat), _CHUNK)]) if len(flat) else flat.copy()
        return out.reshape(xy.shape)

    def _feet(self, q: np.ndarray) -> np.ndarray:
        """(s, d) of points ``[N, 2]``: on every segment, the parameters u in [0, 1] where the point
        minus the line point is normal to the interpolated tangent (a quadratic in u), then the
        nearest. The extensions take any u beyond the street's ends."""
        p0, dp = self.points[:-1], np.diff(self.points, axis=0)  # [K-1, 2]
        t0, dt = self.tangents[:-1], np.diff(self.tangents, axis=0)
        r = q[:, None, :] - p0[None]  # [N, K-1, 2]
        a = -(dp * dt).sum(-1)[None]  # (r - u dp) . (t0 + u dt) = a u^2 + b u + c
        b = (r * dt).sum(-1) - (dp * t0).sum(-1)[None]
        c = (r * t0).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            linear = -c / b
            root = np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))
            real = b * b - 4 * a * c >= 0
            u1, u2 = (-b + root) / (2 * a), (-b - root) / (2 * a)
        flat = np.abs(a) < 1e-12
        cands = np.stack([np.where(flat, linear, np.where(real, u1, np.nan)), np.where(flat, np.nan, np.where(real, u2, np.nan))], -1)
        lo = np.full(len(p0), 0.0)
        hi = np.full(len(p0), 1.0)
        lo[0], hi[-1] = -np.inf, np.inf
        ok = (cands >= lo[None, :, None] - 1e-9) & (cands <= hi[None, :, None] + 1e-9)
        u = np.where(ok, cands, np.nan)  # [N, K-1, 2]
        foot = p0[None, :, None] + u[..., None] * dp[None, :, None]
        tang = t0[None, :, None] + u[..., None] * dt[None, :, None]
        tang = tang / np.linalg.norm(tang, axis=-1, keepdims=True)
        rel = q[:, None, None] - foot
        d = rel[..., 1] * tang[..., 0] - rel[..., 0] * tang[..., 1]
        dist = np.where(np.isfinite(d), np.abs(d), np.inf).reshape(len(q), -1)
        best = np.argmin(dist, axis=1)
        if not np.isfinite(dist[np.arange(len(q)), best]).all():  # cannot happen for a line with extensions
            raise ValueError("a point has no foot on the road's centre line")
        seg, which = np.divmod(best, 2)
        ub = u[np.arange(len(q)), seg, which]
        s = self.s[seg] + ub * (self.s[seg + 1] - self.s[seg])
        return np.stack([s, d.reshape(len(q), -1)[np.arange(len(q)), best]], axis=-1)

    # ---- poses ----------------------------------------------------------------------------------
    def poses_to_world(self, T_road) -> np.ndarray:
        """World poses ``[N, 4, 4]`` of road-frame poses ``[N, 4, 4]`` (x = s, y = d, z above the
        ground, yaw from the centre line's direction)."""
        T = np.array(T_road, dtype=np.float64).reshape(-1, 4, 4)
        out = T.copy()
        out[:, :2, 3] = self.to_world(T[:, :2, 3])
        out[:, 2, 3] = T[:, 2, 3] + self.ground_z
        out[:, :3, :3] = _yaws(self.heading(T[:, 0, 3])) @ T[:, :3, :3]
        return out

    def poses_to_road(self, T_world) -> np.ndarray:
        """Road-frame poses ``[N, 4, 4]`` of world poses ``[N, 4, 4]`` (inverse of `poses_to_world`)."""
        T = np.array(T_world, dtype=np.float64).reshape(-1, 4, 4)
        out = T.copy()
        out[:, :2, 3] = self.to_road(T[:, :2, 3])
        out[:, 2, 3] = T[:, 2, 3] - self.ground_z
        out[:, :3, :3] = _yaws(-self.heading(out[:, 0, 3])) @ T[:, :3, :3]
        return out

    def T_world_road(self, s: float = 0.0) -> np.ndarray:
        """The road frame's pose at road s, on the centre line and the ground (for a straight
        street, the whole map)."""
        T = np.eye(4)
        T[0, 3] = s
        return self.poses_to_world(T)[0]

    def to_dict(self) -> dict:
        """The street's centre line (extensions left out) and ground height, as plain data."""
        return {"centre_line": self.points[1:-1].tolist(), "ground_z": self.ground_z}


def _yaws(yaw: np.ndarray) -> np.ndarray:
    """Rotations ``[N, 3, 3]`` about +z by the angles ``[N]``."""
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.zeros((len(yaw), 3, 3))
    R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = c, -s, s, c, 1.0
    return R
