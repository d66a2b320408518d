"""The command line's settings: every field of every config is a flag listed in ``--help``, a config
file gives defaults that flags override, and numbers out of their range stop with a clean error
naming the flag before anything runs."""

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenes.errors import InputError
from scenes.settings import Range
from sim.compose import SceneModelConfig
from sim.train import TrainConfig
from tasks.cli import main, parse
from tasks.cli.commands import COMMANDS, Generate, NavEval, Train, changed_settings
from tasks.cli.settings import numeric_settings, setting_flags

# The smallest command line of each command (required arguments only); parse() loads nothing.
MINIMAL = {"world": [], "train": ["data"], "render": ["scene", "--cameras", "cameras.json"], "eval": ["scene"],
           "export-mesh": ["scene"], "demo": [], "generate": ["cut_in"], "scenarios": [],
           "localize": ["scene", "--image", "photo.png", "--init", "guess.json"], "pose-data": ["scene", "--actor", "car_000"],
           "nav-eval": ["scene"], "import": ["kitti-mot", "kitti"], "export-log": ["log"], "serve": ["scene"],
           "view": ["scene"], "ego-mask": ["log"]}


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path, monkeypatch):
    """Default output folders (scene/, render/...) are checked for existing files: run in an empty folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")  # help text on one line per flag


def test_every_command_has_a_minimal_command_line_that_parses():
    assert set(MINIMAL) == set(COMMANDS)
    for name, argv in MINIMAL.items():
        assert type(parse([name, *argv])) is COMMANDS[name]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_lists_every_setting_of_the_command(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse([name, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    flags = setting_flags(COMMANDS[name])
    assert flags
    for flag, positional in flags:
        if not positional:
            assert flag in text, f"{name}: {flag} missing from --help"
    assert "--config FILE" in text


def test_train_exposes_every_field_of_train_config_and_the_scene_model():
    """Picked up from the dataclasses: a field added to TrainConfig or SceneModelConfig is a flag."""
    import dataclasses

    flags = {f for f, _ in setting_flags(Train)}
    assert {f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(TrainConfig)} <= flags
    model = {f.name for f in dataclasses.fields(SceneModelConfig)}
    assert {f.split(".")[1].replace("-", "_") for f in flags if f.startswith("--model.")} == model


def test_flags_reach_the_configs():
    cmd = parse(["train", "log", "--steps", "7", "--max-seconds", "30", "--model.min-alpha", "0.0001", "--device", "cpu"])
    assert (cmd.train.steps, cmd.train.max_seconds, cmd.train.device, str(cmd.data)) == (7, 30.0, "cpu", "log")
    assert changed_settings(cmd.model, SceneModelConfig()) == {"min_alpha": 0.0001}
    gen = parse(["generate", "cut_in", "--variants", "8", "--workers", "0", "--out", "data"])
    assert (gen.settings.scenario, gen.settings.variants, gen.settings.workers, str(gen.settings.out)) == ("cut_in", 8, 0, "data")
    nav = parse(["nav-eval", "scene", "--controller", "reactive", "--env.dynamics", "bicycle", "--env.observations", "rgb", "lidar"])
    assert (nav.settings.controller, nav.settings.env.dynamics, nav.settings.env.observations) == ("reactive", "bicycle", ("rgb", "lidar"))
    assert parse(["eval", "scene", "--json"]).json is True


def test_choices_are_enforced_by_the_parser():
    with pytest.raises(SystemExit) as exit_:
        parse(["nav-eval", "scene", "--controller", "teleport"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit):
        parse(["localize", "scene", "--image", "a.png", "--init", "b.json", "--sampling", "everywhere"])


def test_config_file_gives_defaults_and_flags_override_it(tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"data": "log", "out": "mine", "steps": 123, "max-seconds": 45.0,
                                   "model": {"min_alpha": 0.0005, "background": {"grid": {"n_levels": 8}}}}))
    cmd = parse(["train", "--config", str(cfg), "--steps", "9"])
    assert (str(cmd.data), str(cmd.out), cmd.train.steps, cmd.train.max_seconds) == ("log", "mine", 9, 45.0)
    assert changed_settings(cmd.model, SceneModelConfig()) == {"min_alpha": 0.0005, "background": {"grid": {"n_levels": 8}}}
    # JSON, dotted names, a nested config shown without prefix (generate's settings)
    js = tmp_path / "gen.json"
    js.write_text(json.dumps({"scenario": "jaywalker", "variants": 4, "max_frames": 2}))
    gen = parse(["generate", f"--config={js}"])
    assert (gen.settings.scenario, gen.settings.variants, gen.settings.max_frames) == ("jaywalker", 4, 2)
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("mesh.level: 2.5\nfmt: glb\n")
    em = parse(["export-mesh", "scene", "--config", str(mesh)])
    assert (em.mesh.level, em.fmt) == (2.5, "glb")


@pytest.mark.parametrize("content, field", [
    ({"stepz": 3}, "stepz"),                      # unknown setting
    ({"steps": "many"}, "train.steps"),           # wrong type
    ({"model": {"far_field": 3}}, "model.far_field"),
    ({"model": 5}, "model"),
])
def test_bad_config_files_name_the_file_and_the_setting(tmp_path, content, field):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(content))
    with pytest.raises(InputError) as err:
        parse(["train", "log", "--config", str(cfg)])
    assert err.value.source == str(cfg) and err.value.field == field
    cfg.write_text("steps: [1, 2\n")
    with pytest.raises(InputError, match="not valid YAML"):
        parse(["train", "log", "--config", str(cfg)])
    assert main(["train", "log", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_the_documented_bad_numbers_stop_before_anything_is_written(tmp_path, capsys):
    assert main(["generate", "cut_in", "--variants", "-1", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "--variants" in err and ">= 1" in err and "Traceback" not in err
    assert main(["nav-eval", str(tmp_path / "scene"), "--pairs", "-2", "--out", str(tmp_path / "n")]) == 2
    assert "--pairs" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() and not (tmp_path / "n").exists()


def test_out_naming_an_existing_file_is_refused(tmp_path, capsys):
    existing = tmp_path / "render.png"
    existing.write_bytes(b"keep me")
    assert main(["render", "scene", "--cameras", "cameras.json", "--out", str(existing)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and str(existing) in err and "Traceback" not in err
    assert existing.read_bytes() == b"keep me"


def _outside(setting) -> st.SearchStrategy:
    """Values outside a setting's range (its own default excluded: always accepted)."""
    r: Range = setting.range
    options = []
    if setting.kind is float:
        options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    if r.lo is not None:
        below = st.integers(1, 10**6).map(lambda d: r.lo - d) if setting.kind is int else \
            st.floats(1e-3, 1e6).map(lambda d: r.lo - d)
        options.append(below)
        if r.strict_lo:
            options.append(st.just(int(r.lo) if setting.kind is int else float(r.lo)))
    if r.hi is not None:
        options.append(st.integers(1, 10**6).map(lambda d: r.hi + d) if setting.kind is int else st.floats(1e-3, 1e6).map(lambda d: r.hi + d))
    return st.one_of(options).filter(lambda v: v != setting.default) if options else st.nothing()


CASES = [(name, s) for name, cls in COMMANDS.items() for s in numeric_settings(cls)
         if s.kind is float or s.range.lo is not None or s.range.hi is not None]


def test_every_numeric_setting_has_a_bound_to_test():
    assert {name for name, _ in CASES} == {name for name, cls in COMMANDS.items() if numeric_settings(cls)}
    flags = {(name, s.flag) for name, s in CASES}
    assert {("generate", "--variants"), ("nav-eval", "--pairs"), ("train", "--steps"), ("train", "--lr"),
            ("localize", "--rays"), ("pose-data", "--distance"), ("nav-eval", "--env.hfov-deg")} <= flags


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_out_of_range_numbers_give_a_clean_error_naming_the_flag(data):
    name, setting = data.draw(st.sampled_from(CASES), label="setting")
    value = data.draw(_outside(setting), label="value")
    # A tuple setting (e.g. --distance LO HI) takes one value per element (a variable-length one whose
    # default is empty, e.g. --distortion, one value).
    n = len(setting.default) if isinstance(setting.default, tuple) and setting.default else 1
    argv = [name, *MINIMAL[name], setting.flag, *[str(value)] * n]
    try:
        parse(argv)
    except InputError as e:
        assert str(e).startswith(setting.flag), str(e)
    except SystemExit as e:  # the parser refused the text itself (e.g. nan for an integer)
        assert e.code == 2
    else:
        pytest.fail(f"{argv} was accepted")


def test_in_range_numbers_are_accepted():
    cmd = parse(["pose-data", "scene", "--actor", "a", "--views", "1", "--distance", "0.5", "3", "--elevation-deg", "-10", "80"])
    assert cmd.viewpoints.views == 1 and cmd.viewpoints.distance == (0.5, 3.0)
    assert parse(["nav-eval", "scene", "--env.collision-reward", "-50", "--pairs", "1"]).settings.env.collision_reward == -50
    assert isinstance(parse(["generate", "cut_in", "--variants", "1"]), Generate)
    assert isinstance(parse(["nav-eval", "scene"]), NavEval)


def test_model_settings_given_replace_only_those_scaled_to_the_data():
    """train: --model.* settings differ from SceneModelConfig's defaults; they replace those in the
    config scaled to the data and leave the rest (here a street: min_alpha 1e-4, semantic head)."""
    from tasks.pipeline import model_config_for, with_overrides

    street = model_config_for(((-50, -20, -1), (50, 20, 10)), "sky", ("road", "building"))
    cmd = parse(["train", "log", "--model.background.grid.n-levels", "8", "--model.step-max", "2.0"])
    cfg = with_overrides(street, changed_settings(cmd.model, SceneModelConfig()))
    assert cfg.background.grid.n_levels == 8 and cfg.step_max == 2.0
    assert cfg.min_alpha == street.min_alpha == 1e-4 and cfg.background.semantic_classes == ("road", "building")
    assert cfg.background.grid.log2_table_size == street.background.grid.log2_table_size
    assert with_overrides(street, changed_settings(parse(["train", "log"]).model, SceneModelConfig())) == street
