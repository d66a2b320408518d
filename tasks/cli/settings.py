"""Settings of a command from a YAML / JSON config file, and the bounds check of every setting.

A command is a dataclass (`tasks.cli.commands`); its fields, and the fields of the config dataclasses
nested in it, are the settings. A config file holds a mapping with the same names as the flags
(``max_seconds`` or ``max-seconds``); a nested config is a mapping under its name
(``mesh: {level: 1.0}``), or dotted (``mesh.level: 1.0``). Settings that ``--help`` lists without a
prefix (e.g. train's optimisation settings) may also be given at the top level. Flags given on the
command line override the file.

Bounds: every numeric setting is checked against the `scenes.settings.Range` of its field (or the
default rule of its type) before a command runs; the error names the flag.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from scenes.errors import InputError
from scenes.settings import Range, default_range


# ---- the shape of a command's dataclass -------------------------------------------------------------
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _strip(hint) -> tuple[Any, tuple]:
    """``(type, metadata)`` of a possibly ``Annotated`` hint."""
    if typing.get_origin(hint) is typing.Annotated:
        args = typing.get_args(hint)
        inner, meta = _strip(args[0])
        return inner, tuple(args[1:]) + meta
    return hint, ()


def _unflagged(meta: tuple) -> bool:
    """A nested config whose settings ``--help`` lists without its name as prefix."""
    return any(getattr(m, "name", None) == "" for m in meta)


def _union_args(kind) -> tuple | None:
    if typing.get_origin(kind) in (Union, types.UnionType):
        return typing.get_args(kind)
    return None


def _nested_dataclass(kind):
    """The dataclass of a field's type (``X`` or ``X | None``), or None."""
    args = _union_args(kind)
    candidates = [a for a in args if a is not type(None)] if args else [kind]
    found = [a for a in candidates if dataclasses.is_dataclass(a)]
    return found[0] if len(found) == 1 and len(candidates) == 1 else None


# ---- reading a config file ---------------------------------------------------------------------------
def read_config_file(path: str | Path) -> dict:
    """The top-level mapping of a YAML or JSON file (JSON is read as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "no such config file (--config expects a YAML or JSON file)")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(path, None, f"not valid YAML / JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputError(path, None, "expected a mapping of settings at the top level")
    return data


def _nest_dotted(data: dict) -> dict:
    """``{"mesh.level": 1}`` -> ``{"mesh": {"level": 1}}``; hyphens in names become underscores."""
    out: dict = {}
    for key, value in data.items():
        parts = str(key).replace("-", "_").split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise InputError(None, str(key), "a setting and a group of the same name")
        if isinstance(value, dict):
            value = _nest_dotted(value)
            if isinstance(node.get(parts[-1]), dict):
                value = {**node[parts[-1]], **value}
        node[parts[-1]] = value
    return out


def command_from_file(cls, data: dict, source: str | Path):
    """An instance of the command dataclass ``cls`` with the settings of ``data`` (a config file's
    mapping); settings it does not give keep their defaults, and required ones it does not give are
    `tyro.MISSING` (the command line must give them)."""
    try:
        tree = _nest_dotted(data)
    except InputError as e:
        raise InputError(source, e.field, e.problem) from None
    return _build(cls, tree, str(source), "")


def _build(cls, tree: dict, source: str, where: str, base=None):
    """``cls`` from a mapping; settings it does not give come from ``base`` (an instance), or the defaults."""
    import tyro

    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    tree = dict(tree)
    # Settings of unprefixed nested configs may stand at the top level.
    for name, f in fields.items():
        kind, meta = _strip(hints[name])
        sub = _nested_dataclass(kind)
        if sub is not None and _unflagged(meta):
            inner = {g.name for g in dataclasses.fields(sub)}
            moved = {k: tree.pop(k) for k in list(tree) if k in inner and k not in fields}
            if moved:
                tree[name] = {**moved, **(tree.get(name) or {})}
    unknown = sorted(set(tree) - set(fields))
    if unknown:
        raise InputError(source, _dotted(where, unknown[0]), f"unknown setting; expected one of {', '.join(sorted(fields))}")
    values = {}
    for name, f in fields.items():
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = getattr(base, name) if base is not None else _default_of(f) if has_default else tyro.MISSING
        values[name] = _convert(hints[name], tree[name], source, _dotted(where, name), default) if name in tree else default
    return cls(**values)


def _default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _dotted(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _convert(hint, value, source: str, where: str, default=None):
    kind, _ = _strip(hint)
    args = _union_args(kind)
    if args:
        if value is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _convert(a, value, source, where, default)
            except InputError as e:
                errors.append(e.problem)
        raise InputError(source, where, " or ".join(errors))
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise InputError(source, where, f"expected a mapping of {kind.__name__} settings, got {value!r}")
        # Settings the file does not give keep the values of the field's default instance.
        return _build(kind, value, source, where, default if dataclasses.is_dataclass(default) else None)
    origin = typing.get_origin(kind)
    if origin is Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise InputError(source, where, f"expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin is tuple:
        inner = typing.get_args(kind)
        if not isinstance(value, (list, tuple)):
            raise InputError(source, where, f"expected a list, got {value!r}")
        if len(inner) == 2 and inner[1] is Ellipsis:
            return tuple(_convert(inner[0], v, source, f"{where}[{i}]") for i, v in enumerate(value))
        if len(inner) != len(value):
            raise InputError(source, where, f"expected a list of {len(inner)} values, got {value!r}")
        return tuple(_convert(t, v, source, f"{where}[{i}]") for i, (t, v) in enumerate(zip(inner, value)))
    if kind is bool:
        if not isinstance(value, bool):
            raise InputError(source, where, f"expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(source, where, f"expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(source, where, f"expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise InputError(source, where, f"expected text, got {value!r}")
        return value
    if kind is Path:
        if not isinstance(value, str):
            raise InputError(source, where, f"expected a path, got {value!r}")
        return Path(value)
    return value


# ---- bounds --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class NumericSetting:
    """A numeric setting of a command, as the bounds check and the tests see it."""

    flag: str
    """The flag as ``--help`` spells it (``--max-seconds``, ``--mesh.level``)."""
    kind: type
    """int or float (of the number, or of each element of a tuple of numbers)."""
    range: Range
    """Its field's `Range`, or the default rule of its type."""
    path: tuple[str, ...]
    """Attribute names from the command to the value."""
    default: Any
    """The field's default in its own dataclass (always accepted)."""


@dataclasses.dataclass(frozen=True)
class _Leaf:
    """One setting of a command that is not itself a config: its field, type, metadata, flag, the
    attribute path from the command to it, and whether it is a positional argument."""

    field: dataclasses.Field
    kind: Any
    meta: tuple
    flag: str
    path: tuple[str, ...]
    positional: bool


def _leaves(cls, prefix: str = "", path: tuple[str, ...] = (), required_positional: bool = False):
    """Every `_Leaf` of a command dataclass, nested configs walked (the one walk behind
    `numeric_settings` and `setting_flags`, so both spell flags as ``--help`` does)."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind, meta = _strip(hints[f.name])
        sub = _nested_dataclass(kind)
        if sub is not None:
            inner = prefix if _unflagged(meta) else f"{prefix}{f.name.replace('_', '-')}."
            yield from _leaves(sub, inner, path + (f.name,), required_positional or _marker("PositionalRequiredArgs") in meta)
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        positional = _marker("Positional") in meta or (required_positional and required)
        yield _Leaf(f, kind, meta, f"--{prefix}{f.name.replace('_', '-')}", path + (f.name,), positional)


def numeric_settings(cls) -> list[NumericSetting]:
    """Every numeric setting of a command dataclass (optional numbers and tuples of numbers
    included), with the flag ``--help`` shows for it."""
    out = []
    for leaf in _leaves(cls):
        kind = _tuple_element(leaf.kind) if typing.get_origin(leaf.kind) is tuple else leaf.kind  # each element checked
        args = _union_args(kind) or (kind,)
        number = [a for a in args if a in (int, float)]
        if len(number) == 1 and all(a in (int, float, type(None)) for a in args):
            declared = [m for m in leaf.meta if isinstance(m, Range)]
            rng = declared[0] if declared else default_range(number[0])
            out.append(NumericSetting(leaf.flag, number[0], rng, leaf.path, _default_of(leaf.field)))
    return out


def _tuple_element(kind):
    """The element type of ``tuple[X, ...]`` or of a tuple of one repeated type (None otherwise)."""
    inner = [a for a in typing.get_args(kind) if a is not Ellipsis]
    return inner[0] if inner and all(a == inner[0] for a in inner) else None


def check_bounds(command) -> None:
    """`InputError` naming the flag of the first numeric setting of ``command`` out of its range
    (a field's own default is always accepted)."""
    for setting in numeric_settings(type(command)):
        value = command
        for name in setting.path:
            value = getattr(value, name)
        if value is None or value == setting.default:
            continue
        for item in value if isinstance(value, tuple) else (value,):
            if item is None or isinstance(item, bool):
                continue
            problem = setting.range.problem(float(item))
            if problem is not None:
                raise InputError(setting.flag, None, problem)


def _marker(name: str):
    """The object tyro's ``Annotated`` marker ``tyro.conf.<name>`` puts in a hint's metadata."""
    import tyro

    return typing.get_args(getattr(tyro.conf, name)[int])[1]


def setting_flags(cls) -> list[tuple[str, bool]]:
    """``(flag, positional)`` of every setting of a command dataclass: the flag as ``--help``
    spells it, and whether the setting is a positional argument instead (shown by its type)."""
    return [(leaf.flag, leaf.positional) for leaf in _leaves(cls)]
