"""Per-image appearance codes: photos of one scene at different exposures are explained by their
codes, not by the field, and a code fitted on a held-out photo recovers its exposure."""

import numpy as np
import pytest
import torch

from scenes.camera import Camera, Intrinsics
from scenes.graph import SceneGraph
from sim.compose import NeuralScene, SceneModelConfig
from sim.data import RayBank
from sim.encoding import HashGridConfig
from sim.field import FieldConfig
from sim.render import fit_image_code
from sim.rays import camera_rays
from sim.train import TrainConfig, train

BASE = np.array([0.5, 0.4, 0.3], np.float32)
EXPOSURES = [0.6, 1.0, 1.4]


def _camera(x: float) -> Camera:
    T = np.eye(4)
    T[:3, 3] = [x, 0.0, -2.0]  # looking along +z at the box
    return Camera(Intrinsics(12, 12, 10.0, 10.0, 6.0, 6.0), T, 0.0, f"cam{x}")


@pytest.mark.slow
def test_codes_explain_exposure_and_a_fitted_code_recovers_it(tmp_path):
    cams = [_camera(x) for x in (-0.2, 0.2) for _ in EXPOSURES]
    images = [np.clip(np.tile(BASE * e, (12, 12, 1)), 0, 1) for _ in (0, 1) for e in EXPOSURES]
    field = FieldConfig(grid=HashGridConfig(n_levels=4, log2_table_size=10, base_resolution=4, max_resolution=32),
                        hidden_dim=16, color_hidden_dim=16, sh_degree=1, image_code_dim=4)
    cfg = SceneModelConfig(background=field, far_field="black", unbounded=True, image_codes=len(cams),
                           occupancy_cell=0.25, step_min=0.05, step_max=0.2, step_cone=0.0)
    aabb = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    model = NeuralScene(cfg, aabb, [])
    bank = RayBank(cams, images, SceneGraph(aabb=aabb))
    train(model, bank, SceneGraph(aabb=aabb), TrainConfig(steps=400, rays_per_batch=256, samples_per_batch=0, progress=False,
                                                         coarse_step_fraction=0.0, color_floor=0.0), tmp_path / "scene")
    model.eval()
    o, d, _ = camera_rays(cams[0])
    with torch.no_grad():
        mean_rgb = [model.render_rays(o, d, image_codes=model.image_codes.weight[i])["rgb"].mean(0).numpy() for i in range(3)]
    for rgb, e in zip(mean_rgb, EXPOSURES):  # each training photo's code renders its exposure
        assert np.allclose(rgb, BASE * e, atol=0.03), (rgb, BASE * e)
    # A held-out photo at exposure 0.8: the mean code renders something else; the code fitted on
    # its left half renders its right half.
    target = torch.as_tensor(BASE * 0.8).expand(len(o), 3)
    left = torch.arange(len(o)) % 12 < 6
    code = fit_image_code(model, o[left], d[left], target[left], steps=150)
    with torch.no_grad():
        fitted = model.render_rays(o[~left], d[~left], image_codes=code)["rgb"].mean(0).numpy()
        default = model.render_rays(o[~left], d[~left])["rgb"].mean(0).numpy()
    assert np.allclose(fitted, BASE * 0.8, atol=0.03)
    assert np.abs(fitted - BASE * 0.8).max() < np.abs(default - BASE * 0.8).max()
    assert all(p.requires_grad for p in model.parameters())  # fitting froze the field only while it ran


@pytest.mark.slow
def test_image_gains_recover_known_exposures(tmp_path):
    """Per-image colour gains multiply the whole picture (here a far field as well as the box): the
    learned gains are the photos' exposures up to one common factor, and the default render (gain 1)
    is the photos' average exposure."""
    cams = [_camera(x) for x in (-0.2, 0.2) for _ in EXPOSURES]
    images = [np.clip(np.tile(BASE * e, (12, 12, 1)), 0, 1) for _ in (0, 1) for e in EXPOSURES]
    field = FieldConfig(grid=HashGridConfig(n_levels=4, log2_table_size=10, base_resolution=4, max_resolution=32),
                        hidden_dim=16, color_hidden_dim=16, sh_degree=1)
    cfg = SceneModelConfig(background=field, far_field="black", image_gains=len(cams),
                           occupancy_cell=0.25, step_min=0.05, step_max=0.2, step_cone=0.0)
    aabb = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    model = NeuralScene(cfg, aabb, [])
    train(model, RayBank(cams, images, SceneGraph(aabb=aabb)), SceneGraph(aabb=aabb),
          TrainConfig(steps=400, rays_per_batch=256, samples_per_batch=0, progress=False, color_floor=0.0), tmp_path / "scene")
    with torch.no_grad():
        gains = model.image_gains(torch.arange(len(cams))).numpy()
        rgb = model.render_rays(*camera_rays(cams[0])[:2])["rgb"].mean(0).numpy()
    truth = np.array(EXPOSURES * 2)
    ratio = gains / truth[:, None]
    assert np.allclose(ratio, ratio.mean(), rtol=0.04), gains  # the exposures, up to one factor
    assert np.allclose(rgb, BASE * np.exp(np.log(truth).mean()), atol=0.03), rgb
