"""The road layout of the built-in street: lanes, drivable and walkable areas, ground height.

Conventions (see `scenes.world`): world z up, metres; the street runs along +x from x = 0 to
``street_length`` (geometry goes 5 m beyond both ends), centred on y = 0. Cross-section from the
centre line outwards on each side: a driving lane, a parking strip, a raised sidewalk, facades.
Traffic keeps right: the right lane (y < 0) drives towards +x, the left lane towards -x.

Lane names: ``right``, ``left`` (driving lanes), ``parking_right``, ``parking_left``,
``sidewalk_right``, ``sidewalk_left``. Each has a centre line ``y`` and a direction of travel
(+1 = towards +x, -1 = towards -x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANES = ("right", "left", "parking_right", "parking_left", "sidewalk_right", "sidewalk_left")

_MARGIN_X = 5.0  # the street's geometry extends this far beyond both ends


@dataclass(frozen=True)
class Lane:
    name: str
    y: float
    """Centre line, world y (metres)."""
    direction: int
    """+1: traffic goes towards +x; -1: towards -x."""
    width: float

    @property
    def yaw(self) -> float:
        """Heading of traffic in this lane, radians about +z."""
        return 0.0 if self.direction > 0 else float(np.pi)


@dataclass(frozen=True)
class RoadMap:
    """The straight two-lane street of `scenes.world.WorldConfig`."""

    street_length: float
    lane_width: float
    parking_width: float
    sidewalk_width: float
    sidewalk_height: float

    @staticmethod
    def from_world_config(cfg) -> "RoadMap":
        return RoadMap(cfg.street_length, cfg.lane_width, cfg.parking_width, cfg.sidewalk_width, cfg.sidewalk_height)

    @property
    def road_half_width(self) -> float:
        """|y| of the curb: lanes and parking strips lie inside."""
        return self.lane_width + self.parking_width

    @property
    def x_range(self) -> tuple[float, float]:
        """Extent of the paved street along x (metres)."""
        return -_MARGIN_X, self.street_length + _MARGIN_X

    def lane(self, name: str) -> Lane:
        lw, pw, sw = self.lane_width, self.parking_width, self.sidewalk_width
        centres = {"right": (-lw / 2, 1, lw), "left": (lw / 2, -1, lw),
                   "parking_right": (-(lw + pw / 2), 1, pw), "parking_left": (lw + pw / 2, -1, pw),
                   "sidewalk_right": (-(self.road_half_width + sw / 2), 1, sw),
                   "sidewalk_left": (self.road_half_width + sw / 2, -1, sw)}
        if name not in centres:
            raise KeyError(name)
        y, direction, width = centres[name]
        return Lane(name, y, direction, width)

    def ground_height(self, xy: np.ndarray) -> np.ndarray:
        """Height of the ground under points ``[..., 2]``: the road (0) or the raised sidewalk."""
        y = np.abs(np.asarray(xy, dtype=np.float64)[..., 1])
        return np.where(y >= self.road_half_width, self.sidewalk_height, 0.0)

    def on_road(self, xy: np.ndarray) -> np.ndarray:
        """Points ``[..., 2]`` on the paved street (lanes or parking strips)."""
        xy = np.asarray(xy, dtype=np.float64)
        x0, x1 = self.x_range
        return (np.abs(xy[..., 1]) <= self.road_half_width + 1e-6) & (xy[..., 0] >= x0) & (xy[..., 0] <= x1)

    def on_sidewalk(self, xy: np.ndarray) -> np.ndarray:
        """Points ``[..., 2]`` on a sidewalk (walkable area)."""
        xy = np.asarray(xy, dtype=np.float64)
        y = np.abs(xy[..., 1])
        x0, x1 = self.x_range
        return ((y >= self.road_half_width - 1e-6) & (y <= self.road_half_width + self.sidewalk_width + 1e-6)
                & (xy[..., 0] >= x0) & (xy[..., 0] <= x1))
