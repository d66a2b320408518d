"""Scenario files: corner cases for a street, written in YAML or built in Python.
Over 500 lines because the file format is one schema: its dataclasses, their validation and the
distributions any number may be are read and checked together (traffic and variants live apart).

A scenario names a trained scene, scripts an ego and its rig, keeps / removes / re-skins the scene's
own actors, inserts new ones from its actor library, and gives every actor behaviours with triggers.
Any number in the file may be a distribution; one file with a seed expands into N variants.

Example (``tasks/scenarios/cut_in.yaml`` holds the full template)::

    name: cut_in
    duration: 6.0                 # seconds
    rate_hz: 10                   # frames per second
    seed: 0
    ego:
      lane: right                 # a lane of `scenes.roadmap` (or ``route: [[x, y], ...]``)
      x: 0.0                      # start along the street, metres
      speed: 5.0                  # m/s (or ``speed_profile: [[t, v], ...]``)
      rig: {cameras: [front], width: 640, height: 360}
    actors:
      existing: static            # keep | static (parked ones only) | none
      remove: [car_002]
      replace: {car_003: car_001} # same track, another asset's appearance
      insert:
        - id: cutter
          class: car              # or ``asset: car_004`` (an asset id of the library)
          lane: left
          gap: -8.0               # start 8 m behind the ego (or ``x: 12.0``)
          speed: {uniform: [7.0, 9.0]}
          behaviours:
            - cut_in: {duration: {uniform: [1.0, 2.0]}, lateral_offset: 0.0}
              trigger: {ahead_of_ego: 6.0}

Positions (``x``, ``route``) and lanes are road coordinates (`scenes.roadmap`): on the built-in
street the world's; on a recorded drive's street ``x`` is metres along the drive from where its ego
started and ``y`` metres left of the centre line (the ego drove the ``right`` lane).

Distributions: ``{uniform: [lo, hi]}``, ``{normal: [mean, std]}`` (optionally with
``clip: [lo, hi]`` beside it), ``{choice: [a, b, ...]}``. Variant ``i`` of seed ``s`` draws them
depth-first in file order from ``numpy.random.default_rng([s, i, a])`` (``a`` = 0, or the redraw
number when the generator rejects a draw that fails the sanity checks): same seed and index, same
scenario, on any machine.

Behaviours (each a one-key mapping, optionally with ``trigger``; untriggered ones start at t = 0;
the registry `tasks.scenarios.behaviours.BEHAVIOURS` defines them):
``keep_lane {speed}``, ``follow {target: ego|<id>, time_gap, min_gap, speed, decel}``,
``lane_change {to, duration}``, ``cut_in {duration, lateral_offset}`` (into the ego's lane),
``hard_brake {decel}``, ``stop {decel}``, ``stalled {}`` (never moves), ``wrong_way {}`` (drives
against its lane), ``cross {speed}`` (a pedestrian crosses to the far sidewalk),
``emerge {occluder, speed}`` (a pedestrian starts hidden behind the far end of ``occluder`` and
crosses). Triggers (one key): ``time: t`` (at t or later), ``distance_to_ego: d`` (centres within
d metres), ``ttc_to_ego: s`` (time to collision along the ego's path below s),
``ahead_of_ego: g`` (at least g metres ahead of the ego's front bumper along its heading).

Errors name the file, the line and the field (``cut_in.yaml:14: field 'actors.insert[0].lane'``).
The keys a file may use are those of the dataclasses below (`file_keys`).

Length: over 500 lines on purpose: the format's reference (this docstring), its dataclasses, the
YAML reader that keeps line numbers and the validator that checks each key belong together, so that
a key's type, its check and its error message are read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from scenes.errors import InputError
from scenes.roadmap import LANES
from tasks.scenarios.behaviours import BEHAVIOURS, EGO_BEHAVIOURS

TEMPLATES_DIR = Path(__file__).parent
"""The corner-case library: the ``*.yaml`` templates beside this module."""
TRIGGERS = ("time", "distance_to_ego", "ttc_to_ego", "ahead_of_ego")
EXISTING = ("keep", "static", "none")
DISTRIBUTIONS = ("uniform", "normal", "choice")


# ------------------------------------------------------------------------------------- objects
@dataclass(frozen=True)
class Trigger:
    """When a behaviour starts (see the module docstring for the kinds)."""

    kind: str
    value: float


@dataclass(frozen=True)
class Behaviour:
    kind: str
    params: dict = field(default_factory=dict)
    trigger: Trigger | None = None


@dataclass(frozen=True)
class RigSpec:
    """Which of the scene's capture-rig cameras render, and at which resolution."""

    cameras: tuple[str, ...] = ()
    """Camera names of the scene's rig; empty = all of them."""
    width: int = 640
    height: int = 360


@dataclass(frozen=True)
class EgoSpec:
    lane: str = "right"
    x: float = 0.0
    speed: float = 5.0
    speed_profile: tuple[tuple[float, float], ...] = ()
    """(time, speed) knots, linear in between; overrides ``speed`` when given."""
    route: tuple[tuple[float, float], ...] = ()
    """Waypoints (x, y) to drive through instead of a lane."""
    size: tuple[float, float, float] = (4.5, 1.9, 1.6)
    rig: RigSpec = field(default_factory=RigSpec)
    behaviours: tuple["Behaviour", ...] = ()
    """Behaviours of the ego itself (follow, hard_brake, stop, lane_change...; triggers: time).
    With none, the ego drives its speed (profile) exactly."""


@dataclass(frozen=True)
class ActorSpec:
    """An inserted actor."""

    id: str
    asset: str | None = None
    """Asset id of the actor library (appearance + box size)."""
    asset_class: str | None = field(default=None, metadata={"key": "class"})
    """Or: any asset of this class, drawn with the variant's seed (key ``class`` in a file)."""
    lane: str = "right"
    x: float | None = None
    """Start along the street (metres); or ``gap``."""
    gap: float | None = None
    """Start this far ahead of the ego's centre along x (negative: behind)."""
    direction: str = "lane"
    """Direction of travel: the lane's (``lane``), or ``+x`` / ``-x`` (e.g. overtaking in the
    oncoming lane)."""
    lateral: float = 0.0
    """Offset from the lane centre, metres, to the left of the direction of travel."""
    speed: float = 0.0
    collide: bool = False
    """The scenario means it to collide: overlaps with it are not violations."""
    behaviours: tuple[Behaviour, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    duration: float = 6.0
    rate_hz: float = 10.0
    seed: int = 0
    scene: str | None = None
    """Trained scene folder (relative paths: to the scenario file); the CLI may override it."""
    library: tuple[str, ...] = ()
    """Other trained scenes whose actors may be inserted, as ``<folder name>/<asset id>`` (or by
    class); relative paths: to the scenario file."""
    description: str = ""
    ego: EgoSpec = field(default_factory=EgoSpec)
    existing: str = field(default="static", metadata={"group": "actors"})
    """The scene's own actors: keep | static (parked ones only) | none (key ``actors.existing``)."""
    remove: tuple[str, ...] = field(default=(), metadata={"group": "actors"})
    """Actor ids of the scene to remove."""
    replace: tuple[tuple[str, str], ...] = field(default=(), metadata={"group": "actors"})
    """(actor id, asset id): the actor keeps its track with another asset's appearance."""
    insert: tuple[ActorSpec, ...] = field(default=(), metadata={"group": "actors"})
    """Actors to insert."""
    source: str = field(default="<scenario>", metadata={"internal": True})
    """Where it came from (file name), for messages."""

    @property
    def frame_times(self) -> np.ndarray:
        return np.arange(int(round(self.duration * self.rate_hz))) / self.rate_hz


# ------------------------------------------------------------------------------- YAML + lines
@dataclass
class ScenarioText:
    """A parsed scenario file before expansion: the tree and the line of every node."""

    tree: Any
    lines: dict
    source: str

    def error(self, path: tuple, problem: str) -> InputError:
        line = self.lines.get(path)
        while line is None and path:
            path = path[:-1]
            line = self.lines.get(path)
        return InputError(f"{self.source}:{line}" if line else self.source, dotted(path) or None, problem)


def dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def parse_scenario_text(text: str, source: str = "<scenario>") -> ScenarioText:
    """YAML -> tree with line numbers; `InputError` naming the line on a syntax error."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark, context = getattr(e, "problem_mark", None), getattr(e, "context_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(e, "problem", None) or str(e)
        if context is not None and getattr(e, "context", None):
            problem += f"; {e.context} at line {context.line + 1}"  # e.g. where an unclosed bracket opened
        raise InputError(where, None, f"not valid YAML ({problem})") from None
    lines: dict = {}
    if node is None:
        raise InputError(source, None, "empty scenario file")
    tree = _construct(node, (), lines, source)
    if not isinstance(tree, dict):
        raise InputError(f"{source}:1", None, "expected a mapping at the top level (name, duration, ego, actors...)")
    return ScenarioText(tree, lines, source)


def _construct(node, path: tuple, lines: dict, source: str):
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for k_node, v_node in node.value:
            if not isinstance(k_node, yaml.ScalarNode):
                raise InputError(f"{source}:{k_node.start_mark.line + 1}", dotted(path) or None, "mapping keys must be plain names")
            key = str(k_node.value)
            if key in out:
                raise InputError(f"{source}:{k_node.start_mark.line + 1}", dotted(path + (key,)), "duplicate key")
            out[key] = _construct(v_node, path + (key,), lines, source)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, path + (i,), lines, source) for i, v in enumerate(node.value)]
    try:
        return yaml.SafeLoader("").construct_object(node)
    except yaml.YAMLError as e:
        raise InputError(f"{source}:{lines[path]}", dotted(path) or None, f"unreadable value ({e})") from None


def load_scenario_text(path_or_name: str | Path) -> ScenarioText:
    """A scenario file, or the name of a template of the corner-case library (`list_templates`)."""
    path = Path(path_or_name)
    if not path.suffix and not path.exists():
        path = TEMPLATES_DIR / f"{path_or_name}.yaml"
    if not path.is_file():
        raise InputError(path_or_name, None, f"no scenario file or template of that name; templates: {', '.join(list_templates())}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, None, f"unreadable ({e})") from None
    return parse_scenario_text(text, str(path))


def list_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.yaml"))


# ------------------------------------------------------------------------------ distributions
def resolve_seed(text: ScenarioText, seed: int | None = None) -> int:
    """``seed``, or the file's ``seed`` (0 without one)."""
    if seed is not None:
        return int(seed)
    s = text.tree.get("seed", 0)
    if isinstance(s, bool) or not isinstance(s, int) or s < 0:
        raise text.error(("seed",), f"expected a non-negative integer, got {s!r}")
    return s


def expand(text: ScenarioText, variant: int, seed: int | None = None, attempt: int = 0) -> tuple[Any, dict]:
    """Draw every distribution of the tree for one variant (and redraw ``attempt``): the concrete
    tree and ``{dotted path: drawn value}``. ``seed`` defaults to the file's (`resolve_seed`)."""
    rng = np.random.default_rng([resolve_seed(text, seed), int(variant), int(attempt)])
    drawn: dict = {}
    return _draw(text, text.tree, (), rng, drawn), drawn


def _draw(text: ScenarioText, value, path: tuple, rng, drawn: dict):
    if isinstance(value, dict):
        kinds = [k for k in DISTRIBUTIONS if k in value]
        if kinds:
            v = _sample(text, value, kinds, path, rng)
            drawn[dotted(path)] = v
            return v
        return {k: _draw(text, v, path + (k,), rng, drawn) for k, v in value.items()}
    if isinstance(value, list):
        return [_draw(text, v, path + (i,), rng, drawn) for i, v in enumerate(value)]
    return value


def _sample(text: ScenarioText, spec: dict, kinds: list, path: tuple, rng):
    extra = set(spec) - set(kinds) - ({"clip"} if kinds == ["normal"] else set())
    if len(kinds) > 1 or extra:
        raise text.error(path, f"a distribution is one of {DISTRIBUTIONS} (normal may add 'clip'); got keys {sorted(spec)}")
    kind = kinds[0]
    args = spec[kind]
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise text.error(path + (kind,), "expected a non-empty list of options")
        return args[int(rng.integers(len(args)))]
    lo, hi = _number_pair(text, args, path + (kind,))
    if kind == "uniform":
        if hi < lo:
            raise text.error(path + (kind,), f"expected [lo, hi] with lo <= hi, got {args}")
        return float(rng.uniform(lo, hi))
    if hi < 0:
        raise text.error(path + (kind,), f"expected [mean, std] with std >= 0, got {args}")
    v = float(rng.normal(lo, hi))
    if "clip" in spec:
        a, b = _number_pair(text, spec["clip"], path + ("clip",))
        v = float(np.clip(v, a, b))
    return v


def _number_pair(text: ScenarioText, args, path: tuple) -> tuple[float, float]:
    if not (isinstance(args, list) and len(args) == 2 and all(_is_number(a) for a in args)):
        raise text.error(path, f"expected two numbers, got {args!r}")
    return float(args[0]), float(args[1])


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


# ------------------------------------------------------------------------------- validation
class _Fields:
    """Typed reads of one mapping of the concrete tree; every error names file, line and field."""

    def __init__(self, text: ScenarioText, tree, path: tuple, known: tuple[str, ...]):
        self.text, self.path = text, path
        if not isinstance(tree, dict):
            raise text.error(path, f"expected a mapping with keys among {', '.join(known)}")
        unknown = sorted(set(tree) - set(known))
        if unknown:
            raise text.error(path + (unknown[0],), f"unknown key; expected one of {', '.join(known)}")
        self.tree = tree

    def has(self, key: str) -> bool:
        return key in self.tree

    def error(self, key: str, problem: str) -> InputError:
        return self.text.error(self.path + (key,), problem)

    def number(self, key: str, default=None, lo: float | None = None, hi: float | None = None, strict_lo: bool = False) -> float:
        v = self.tree.get(key, default)
        if v is None and default is None and key not in self.tree:
            raise self.error(key, "missing (expected a number)")
        if not _is_number(v):
            raise self.error(key, f"expected a finite number, got {v!r}")
        if lo is not None and (v <= lo if strict_lo else v < lo):
            raise self.error(key, f"expected a number {'>' if strict_lo else '>='} {lo}, got {v}")
        if hi is not None and v > hi:
            raise self.error(key, f"expected a number <= {hi}, got {v}")
        return float(v)

    def optional_number(self, key: str, **kw) -> float | None:
        return self.number(key, **kw) if key in self.tree else None

    def integer(self, key: str, default: int, lo: int = 0) -> int:
        v = self.tree.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise self.error(key, f"expected an integer >= {lo}, got {v!r}")
        return int(v)

    def string(self, key: str, default: str | None = None, choices: tuple[str, ...] | None = None) -> str:
        v = self.tree.get(key, default)
        if v is None:
            raise self.error(key, "missing (expected a name)")
        if not isinstance(v, str) or not v:
            raise self.error(key, f"expected a non-empty string, got {v!r}")
        if choices is not None and v not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got '{v}'")
        return v

    def boolean(self, key: str, default: bool = False) -> bool:
        v = self.tree.get(key, default)
        if not isinstance(v, bool):
            raise self.error(key, f"expected true or false, got {v!r}")
        return v

    def sub(self, key: str, known: tuple[str, ...]) -> "_Fields":
        return _Fields(self.text, self.tree.get(key, {}), self.path + (key,), known)

    def items(self, key: str) -> list:
        v = self.tree.get(key, [])
        if not isinstance(v, list):
            raise self.error(key, f"expected a list, got {type(v).__name__}")
        return v

    def points(self, key: str, dims: int, min_len: int = 1) -> tuple[tuple[float, ...], ...]:
        pts = self.items(key)
        ok = len(pts) >= min_len and all(isinstance(p, list) and len(p) == dims and all(_is_number(c) for c in p) for p in pts)
        if not ok:
            raise self.error(key, f"expected a list of at least {min_len} lists of {dims} numbers")
        return tuple(tuple(float(c) for c in p) for p in pts)

    def size(self, key: str, default: tuple[float, float, float]) -> tuple[float, float, float]:
        v = self.tree.get(key, list(default))
        if not (isinstance(v, list) and len(v) == 3 and all(_is_number(c) and c > 0 for c in v)):
            raise self.error(key, "expected [length, width, height] in metres, all positive")
        return tuple(float(c) for c in v)


def file_keys(cls, group: str | None = None) -> tuple[str, ...]:
    """The keys a scenario file uses for the dataclass ``cls``: its fields' names (a field's
    ``key`` metadata renames it); fields of a ``group`` (metadata) stand under that key instead,
    and ``group`` lists them; ``internal`` fields are not in files."""
    keys: list[str] = []
    for f in fields(cls):
        if f.metadata.get("internal"):
            continue
        own_group = f.metadata.get("group")
        if group is not None and own_group != group:
            continue
        key = own_group if group is None and own_group else f.metadata.get("key", f.name)
        if key not in keys:
            keys.append(key)
    return tuple(keys)


_TOP = file_keys(Scenario)
_EGO = file_keys(EgoSpec)
_RIG = file_keys(RigSpec)
_ACTORS = file_keys(Scenario, "actors")
_ACTOR = file_keys(ActorSpec)
DIRECTIONS = ("lane", "+x", "-x")


def scenario_from_tree(text: ScenarioText, tree) -> Scenario:
    """Validate a concrete (expanded) tree into a `Scenario`."""
    top = _Fields(text, tree, (), _TOP)
    name = top.string("name", default=Path(text.source).stem)
    duration = top.number("duration", default=6.0, lo=0.0, hi=600.0, strict_lo=True)
    rate = top.number("rate_hz", default=10.0, lo=0.0, hi=100.0, strict_lo=True)
    actors = top.sub("actors", _ACTORS)
    existing = actors.string("existing", default="static", choices=EXISTING)
    remove = tuple(_name_list(actors, "remove"))
    replace = actors.tree.get("replace", {})
    if not isinstance(replace, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in replace.items()):
        raise actors.error("replace", "expected a mapping actor_id: asset_id")
    inserted = tuple(_actor_spec(text, a, ("actors", "insert", i)) for i, a in enumerate(actors.items("insert")))
    ids = [a.id for a in inserted]
    for i, a in enumerate(ids):
        if a in ids[:i]:
            raise text.error(("actors", "insert", i, "id"), f"duplicate actor id '{a}'")
    scene = top.tree.get("scene")
    if scene is not None and (not isinstance(scene, str) or not scene):
        raise top.error("scene", f"expected a path to a trained scene folder, got {scene!r}")
    description = top.tree.get("description", "")
    if not isinstance(description, str):
        raise top.error("description", "expected text")
    library = tuple(_resolve(text, p) for p in _name_list(top, "library", "a list of trained scene folders"))
    sc = Scenario(name=name, duration=duration, rate_hz=rate, seed=top.integer("seed", 0), scene=scene, library=library,
                  description=description, ego=_ego_spec(text, top.sub("ego", _EGO)), existing=existing, remove=remove,
                  replace=tuple(sorted(replace.items())), insert=inserted, source=text.source)
    if len(sc.frame_times) < 1:
        raise top.error("duration", "shorter than one frame at rate_hz")
    return sc


def _name_list(f: _Fields, key: str, expected: str = "a list of actor ids") -> list[str]:
    v = f.items(key)
    if not all(isinstance(s, str) and s for s in v):
        raise f.error(key, f"expected {expected}")
    return v


def _resolve(text: ScenarioText, path: str) -> str:
    """A path of the file, relative to the file's folder."""
    p = Path(path)
    return str(p if p.is_absolute() or not Path(text.source).exists() else Path(text.source).parent / p)


def _ego_spec(text: ScenarioText, f: _Fields) -> EgoSpec:
    rig = f.sub("rig", _RIG)
    cams = rig.tree.get("cameras", [])
    if cams == "all":
        cams = []
    if not isinstance(cams, list) or not all(isinstance(c, str) for c in cams):
        raise rig.error("cameras", "expected a list of camera names of the scene's rig, or 'all'")
    profile = f.points("speed_profile", 2) if f.has("speed_profile") else ()
    if profile and (np.any(np.diff([t for t, _ in profile]) <= 0) or any(v < 0 for _, v in profile)):
        raise f.error("speed_profile", "expected [[t, v], ...] with increasing times and speeds >= 0")
    return EgoSpec(lane=f.string("lane", default="right", choices=LANES), x=f.number("x", default=0.0),
                   speed=f.number("speed", default=5.0, lo=0.0), speed_profile=profile,
                   route=f.points("route", 2, min_len=2) if f.has("route") else (), size=f.size("size", EgoSpec.size),
                   rig=RigSpec(tuple(cams), rig.integer("width", 640, lo=8), rig.integer("height", 360, lo=8)),
                   behaviours=_ego_behaviours(text, f))


def _ego_behaviours(text: ScenarioText, f: _Fields) -> tuple[Behaviour, ...]:
    out = []
    for i, tree in enumerate(f.items("behaviours")):
        path = f.path + ("behaviours", i)
        b = _behaviour(text, tree, path)
        if b.kind not in EGO_BEHAVIOURS:
            raise text.error(path + (b.kind,), f"the ego's behaviours are {', '.join(EGO_BEHAVIOURS)}")
        if b.trigger is not None and b.trigger.kind != "time":
            raise text.error(path + ("trigger",), "the ego's behaviours trigger on time only")
        out.append(b)
    return tuple(out)


def _actor_spec(text: ScenarioText, tree, path: tuple) -> ActorSpec:
    f = _Fields(text, tree, path, _ACTOR)
    if f.has("asset") == f.has("class"):
        raise text.error(path, "give exactly one of 'asset' (an asset id) or 'class' (car, pedestrian)")
    if f.has("x") and f.has("gap"):
        raise f.error("gap", "give 'x' or 'gap', not both")
    behaviours = tuple(_behaviour(text, b, path + ("behaviours", i)) for i, b in enumerate(f.items("behaviours")))
    return ActorSpec(id=f.string("id"), asset=f.string("asset") if f.has("asset") else None,
                     asset_class=f.string("class") if f.has("class") else None, lane=f.string("lane", default="right", choices=LANES),
                     direction=f.string("direction", default="lane", choices=DIRECTIONS), x=f.optional_number("x"), gap=None if f.has("x") else f.number("gap", default=10.0),
                     lateral=f.number("lateral", default=0.0), speed=f.number("speed", default=0.0, lo=0.0),
                     collide=f.boolean("collide"), behaviours=behaviours)


def _behaviour(text: ScenarioText, tree, path: tuple) -> Behaviour:
    if not isinstance(tree, dict):
        raise text.error(path, f"expected a mapping like {{hard_brake: {{decel: 6}}, trigger: {{time: 2}}}}; kinds: {', '.join(BEHAVIOURS)}")
    kinds = [k for k in tree if k != "trigger"]
    if len(kinds) != 1 or kinds[0] not in BEHAVIOURS:
        raise text.error(path + ((kinds[0],) if kinds else ()), f"expected exactly one behaviour of {', '.join(BEHAVIOURS)}; got {kinds}")
    kind = kinds[0]
    spec = BEHAVIOURS[kind]
    params = tree[kind] if tree[kind] is not None else {}
    p = _Fields(text, params, path + (kind,), tuple(spec.params))
    values: dict = {}
    for key, param in spec.params.items():
        if param.kind == "actor":
            values[key] = p.string(key, default=param.default)
        elif param.kind == "lane":
            values[key] = p.string(key, choices=LANES)
        elif key in p.tree:
            values[key] = p.number(key, lo=param.lo, strict_lo=param.strict)
    trigger = None
    if "trigger" in tree:
        if spec.start is None:
            raise text.error(path + ("trigger",), f"'{kind}' holds from the first frame: it takes no trigger")
        t = _Fields(text, tree["trigger"], path + ("trigger",), TRIGGERS)
        if len(t.tree) != 1:
            raise text.error(path + ("trigger",), f"expected exactly one of {', '.join(TRIGGERS)}")
        (tk,) = t.tree
        trigger = Trigger(tk, t.number(tk, lo=None if tk == "ahead_of_ego" else 0.0))
    return Behaviour(kind, values, trigger)


def load_scenario(path_or_name: str | Path, variant: int = 0, seed: int | None = None) -> tuple[Scenario, dict]:
    """Load, expand (variant ``variant`` of ``seed``) and validate a scenario: ``(scenario, drawn values)``."""
    text = load_scenario_text(path_or_name)
    tree, drawn = expand(text, variant, seed)
    return scenario_from_tree(text, tree), drawn
