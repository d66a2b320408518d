"""The render server: its renders are `nerfsim render`'s, bit for bit; edits and reset change what
it renders; bad requests get 4xx answers naming the problem and leave it serving; a token guards it."""

import base64
import io
import json

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import random_street_scene

from scenes.capture import read_capture_log

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tasks.server import ServerConfig, create_app  # noqa: E402


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    """A scene of the tiny world with random (dense, coloured) fields: renders are cheap, and any
    difference between two renders of it shows."""
    return random_street_scene(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def client(scene_dir):
    return TestClient(create_app(scene_dir, ServerConfig(max_pixels=10_000)))


def _png(b64: str) -> np.ndarray:
    return iio.imread(io.BytesIO(base64.b64decode(b64)))


def _npy(b64: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(b64)))


def _front_request(log, frame: int = 2, **kw) -> dict:
    f = log.frames[frame]
    return {"camera": "front", "T_world_ego": f.T_world_ego.tolist(), "time": f.time, **kw}


def test_scene_info_and_health(client, scene_dir):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/scene").json()
    assert [c["name"] for c in info["rig"]["cameras"]] == ["front", "front_left", "front_right"]
    assert {a["class"] for a in info["actors"]} <= {"car", "pedestrian"} and info["actors"]
    assert client.get("/openapi.json").json()["info"]["title"] == "nerfsim render server"


def test_renders_equal_the_render_command(client, scene_dir, tmp_path):
    from tasks.cli.camera_files import View
    from tasks.pipeline import render_to_folder

    log = read_capture_log(json.loads((scene_dir / "scene.json").read_text())["extra"]["source"]["path"])
    req = _front_request(log, outputs=["rgb", "depth", "instances"])
    png = client.post("/render", json=req).json()
    raw = client.post("/render", json={**req, "encoding": "npy"}).json()
    f = log.frames[2]
    view = View("front", log.camera(f, "front").model, f.T_world_cams["front"], f.time)
    render_to_folder(scene_dir, [view], tmp_path / "cli", outputs=("rgb", "depth", "instances"), progress=False)
    assert np.array_equal(_png(png["outputs"]["rgb"]), iio.imread(tmp_path / "cli" / "front_rgb.png"))
    assert np.array_equal(_png(png["outputs"]["depth"]), iio.imread(tmp_path / "cli" / "front_depth_mm.png"))
    assert np.array_equal(_npy(raw["outputs"]["depth"]), np.load(tmp_path / "cli" / "front_depth.npy"), equal_nan=True)
    assert np.array_equal(_png(png["outputs"]["instances"]), iio.imread(tmp_path / "cli" / "front_instance.png"))
    # A free camera (lens + pose) at the same place renders the same image.
    free = {"model": view.model.to_dict(), "T_world_cam": view.T_world_cam.tolist(), "time": f.time}
    assert np.array_equal(_png(client.post("/render", json=free).json()["outputs"]["rgb"]), _png(png["outputs"]["rgb"]))


def test_edits_change_the_render_and_reset_restores_it(client, scene_dir):
    log = read_capture_log(json.loads((scene_dir / "scene.json").read_text())["extra"]["source"]["path"])
    req = _front_request(log, outputs=["instances"], encoding="npy")
    before = _npy(client.post("/render", json=req).json()["outputs"]["instances"])
    seen = [i for i in np.unique(before) if i > 0]
    assert seen
    actor = next(a for a in log.scene.actors if a.instance_id == seen[0])
    info = client.post("/edits", json={"edits": [{"remove": actor.actor_id}]}).json()
    assert info["edits"] == 1 and actor.actor_id not in [a["actor_id"] for a in info["actors"]]
    after = _npy(client.post("/render", json=req).json()["outputs"]["instances"])
    assert not (after == actor.instance_id).any()
    client.post("/reset")
    assert np.array_equal(_npy(client.post("/render", json=req).json()["outputs"]["instances"]), before)


def test_lidar_sweep(client, scene_dir):
    log = read_capture_log(json.loads((scene_dir / "scene.json").read_text())["extra"]["source"]["path"])
    f = log.frames[1]
    out = client.post("/lidar", json={"T_world_ego": f.T_world_ego.tolist(), "time": f.time}).json()
    ranges = _npy(out["ranges"])
    assert out["n_beams"] == len(ranges) == 16 * 128 and out["n_returns"] == np.isfinite(ranges).sum() == len(_npy(out["points_lidar"]))


BAD = [
    ({"camera": "rear", "T_world_ego": np.eye(4).tolist()}, 400, "no camera 'rear'"),
    ({"camera": "front"}, 400, "T_world_ego"),
    ({"camera": "front", "T_world_ego": (2 * np.eye(4)).tolist()}, 400, "T_world_ego"),
    ({"model": {"kind": "pinhole", "width": 200, "height": 100, "fx": 50, "fy": 50, "cx": 100, "cy": 50},
      "T_world_cam": np.eye(4).tolist()}, 400, "over the server's limit"),
    ({"camera": "front", "T_world_ego": np.eye(4).tolist(), "time": 1e6}, 400, "time range"),
    ({"camera": "front", "T_world_ego": np.eye(4).tolist(), "outputs": ["radar"]}, 422, "outputs"),
    ({"camera": "front", "T_world_ego": "eye"}, 422, "T_world_ego"),
]


@pytest.mark.parametrize("body, status, words", BAD)
def test_bad_requests_get_4xx_naming_the_problem(client, body, status, words):
    r = client.post("/render", json=body)
    assert r.status_code == status and words in json.dumps(r.json()), r.text
    assert client.get("/health").status_code == 200


def test_fuzzed_json_is_answered_4xx_and_the_server_stays_up(client):
    rng = np.random.default_rng(0)
    atoms = [None, True, -1, 0, 1.5, 1e308, "x", "front", [], {}, [[1, 0], [0]], np.eye(4).tolist()]
    keys = ["camera", "T_world_ego", "model", "T_world_cam", "time", "outputs", "encoding", "edits", "remove"]
    for _ in range(200):
        body = {k: atoms[rng.integers(len(atoms))] for k in rng.choice(keys, rng.integers(0, 5), replace=False)}
        path = ["/render", "/lidar", "/edits"][rng.integers(3)]
        r = client.post(path, content=json.dumps(body) if rng.random() < 0.9 else "{not json")
        assert r.status_code in (200, 400, 422), (path, body, r.status_code, r.text)
        assert r.status_code == 200 or "detail" in r.json()
    client.post("/reset")
    assert client.get("/health").json() == {"status": "ok"}


def test_a_token_guards_every_endpoint(scene_dir):
    guarded = TestClient(create_app(scene_dir, ServerConfig(token="s3cret")))
    assert guarded.get("/health").status_code == 401
    assert guarded.get("/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_closed_loop_over_http_moves_the_ego_and_sees_the_street_move(client):
    from tasks.server_client import RenderClient, closed_loop, keep_heading

    rc = RenderClient(http=client)
    scene = rc.scene()
    start = np.array(scene["start_T_world_ego"])
    frames, poses = closed_loop(rc, start, scene["start_time"], 3, 0.1, keep_heading(10.0))
    assert len(frames) == 3 and frames[0].shape == (54, 96, 3) and frames[0].dtype == np.float32
    assert np.allclose(poses[2][:3, 3] - poses[0][:3, 3], 2.0 * start[:3, 0])  # 2 steps of 1 m along the heading
    assert np.abs(frames[2] - frames[0]).mean() > 1e-3
    with pytest.raises(Exception, match="no camera 'nope'"):
        rc.render("nope", start, 0.0)


@pytest.mark.slow
def test_the_gymnasium_environment_drives_over_http_and_stops_at_an_actor_the_server_inserted(client):
    from tasks.nav.remote import RemoteDriveEnv
    from tasks.server_client import RenderClient

    rc = RenderClient(http=client)
    client.post("/reset")
    env = RemoteDriveEnv(rc, max_steps=12)
    obs, _ = env.reset()
    assert env.observation_space.contains(obs)
    start = env.state.position.copy()

    def drive() -> tuple[list, str | None]:
        env.reset()
        rewards, hit = [], None
        for _ in range(12):
            obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0], np.float32))  # full throttle, straight
            assert env.observation_space.contains(obs)
            rewards.append(reward)
            if terminated or truncated:
                hit = info["collision"]
                break
        return rewards, hit

    rewards, hit = drive()
    assert hit is None and sum(rewards) > 2.0  # the empty road ahead: metres gained, no collision
    source = rc.scene()["actors"][0]
    ahead = start + env.heading * 7.0 + [0.0, 0.0, source["size"][2] / 2]
    rc.edits([{"insert": source["actor_id"], "new_id": "blocker", "track": {"times": [0.0, 5.0], "positions": [ahead.tolist()] * 2,
                                                                            "yaw_deg": [0.0, 0.0]}}])
    rewards, hit = drive()
    assert hit == "actor:blocker" and rewards[-1] < 0  # stopped by the server-side edit, penalised
    client.post("/reset")
