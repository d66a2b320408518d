"""Fixtures of the task tests."""

import pytest

from scenes.world import WorldConfig, build_world
from sensors.recording import CaptureConfig, generate_capture_log


@pytest.fixture(scope="session")
def native(tmp_path_factory):
    """A capture log of the tiny built-in world (3 cameras, LiDAR, 2 s): what the exporters write
    and the importers must give back (read-only: tests copy it before breaking anything)."""
    return generate_capture_log(build_world(WorldConfig.tiny()), CaptureConfig.tiny(), tmp_path_factory.mktemp("native") / "log",
                                progress=False)
