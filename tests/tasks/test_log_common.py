"""What every drive importer shares (`tasks.logs.common`): the scene box of a recorded drive."""

import numpy as np

from scenes.transforms import make_pose
from tasks.logs.common import SceneExtent


def _scan(points: np.ndarray) -> np.ndarray:
    """Capture-log LiDAR rows (unit direction + range) of points in the LiDAR frame."""
    r = np.linalg.norm(points, axis=1)
    return np.concatenate([points / r[:, None], r[:, None]], 1)


def test_the_box_holds_the_returns_and_reaches_above_what_the_lidar_sees():
    rng = np.random.default_rng(0)
    # a street seen by a roof LiDAR 1.9 m up: ground and two facades up to 8 m (its upper beams' reach)
    ground = np.stack([rng.uniform(-40, 40, 3000), rng.uniform(-6, 6, 3000), np.zeros(3000)], 1)
    facades = np.stack([rng.uniform(-40, 40, 2000), rng.choice([-9.0, 9.0], 2000), rng.uniform(0, 8, 2000)], 1)
    far = np.array([[0.0, 0.0, 55.0]] * 5)  # a few stray returns (a bird, a crane): trimmed as outliers
    pts = np.concatenate([ground, facades, far])
    extent, lidar_only = SceneExtent(headroom=20.0, margin=2.0), SceneExtent(headroom=0.0, margin=2.0)
    for x in (0.0, 10.0, 20.0):
        T_world_lidar = make_pose(np.eye(3), [x, 0.0, 1.9])
        for e in (extent, lidar_only):
            e.add(T_world_lidar, np.array([x, 0.0, 0.0]), _scan(pts - [0.0, 0.0, 1.9]))
    lo, hi = extent.aabb()
    assert lo[0] <= -40 + 2 and hi[0] >= 20 + 40 - 2  # the returns along the street (1st-99th percentile)
    assert -11.5 < lo[1] <= -9.0 and 9.0 <= hi[1] < 11.5  # the facades, with the margin
    assert hi[2] == np.float64(20.0)  # the headroom above the ego (the margin included), not the LiDAR's 8 m
    assert lo[2] == np.float64(-2.0)
    assert 9.0 < lidar_only.aabb()[1][2] < 10.0  # without headroom: the facades' top returns + the margin


def test_sky_misses_rebuild_the_upward_beams_empty_rays():
    """A full scan pattern (48 beams, -25..+30 deg, 512 steps) whose upward rays return only where a
    building stands, 5% of all returns dropped: from the returns and their ring alone, every empty
    upward ray with empty neighbours comes back, in its own direction, and nothing else."""
    from sensors.lidar import LidarConfig
    from tasks.logs.common import sky_misses

    cfg = LidarConfig()
    dirs = cfg.directions()
    beam = np.arange(len(dirs)) // cfg.n_azimuth
    az = np.arctan2(dirs[:, 1], dirs[:, 0])
    up = dirs[:, 2] > np.sin(np.radians(2.0))
    building = (az > 0.3) & (az < 1.2)  # a facade to the front-left: upward rays hit it
    rng = np.random.default_rng(0)
    dropped = rng.uniform(size=len(dirs)) < 0.05  # returns lost anywhere (dark paint, glass)
    returned = (~up | building) & ~dropped
    misses = sky_misses(dirs[returned], beam[returned])
    grid = returned.reshape(cfg.n_beams, cfg.n_azimuth)  # beam-major: a row per beam
    alone = ~grid & ~np.roll(grid, 1, axis=1) & ~np.roll(grid, -1, axis=1)  # empty, and so are both azimuth neighbours
    expected = up & alone.reshape(-1)
    assert expected.sum() > 0.5 * (up & ~returned).sum()  # most of the sky: the dropouts and the facade's edges are not
    assert len(misses) == expected.sum() and np.all(np.isinf(misses[:, 3]))
    # each rebuilt miss is one of the pattern's empty upward rays (to the float32 precision of a direction)
    nearest = np.abs(misses[:, :3] @ dirs[expected].T).argmax(1)
    assert np.allclose(misses[:, :3], dirs[expected][nearest], atol=1e-5) and len(np.unique(nearest)) == len(misses)
    assert len(sky_misses(dirs[returned], np.zeros(returned.sum()))) == 0  # no ring information: no misses
