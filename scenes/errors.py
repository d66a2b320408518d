"""One error type for bad input, so every layer reports it the same way.

A user who hands nerfsim a broken file should read *which file*, *which field* and *what was
expected*, never a bare traceback. Command-line entry points catch `InputError` and print it.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path


class InputError(ValueError):
    """Bad input: names the file (or object), the field inside it and what was expected."""

    def __init__(self, source: str | Path | None, field: str | None, problem: str):
        self.source = str(source) if source is not None else None
        self.field = field
        self.problem = problem
        where = self.source or "<input>"
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {problem}")


def require(cond: bool, source: str | Path | None, field: str | None, problem: str) -> None:
    """Raise `InputError` unless ``cond`` holds."""
    if not cond:
        raise InputError(source, field, problem)


def read_json_object(path: str | Path, missing: str, expected: str = "a JSON object") -> dict:
    """Parse a JSON file whose top level must be an object; `InputError` naming the file otherwise.

    ``missing`` is the message for a file that does not exist (say what kind of file was expected).
    """
    import json

    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, missing)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, None, f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputError(path, None, f"expected {expected} at the top level")
    return data


@contextmanager
def fields_of(source: str | Path, expected: str):
    """Turn what goes wrong while reading fields of ``source`` (missing key, unconvertible value, an
    `InputError` of a nested object) into one `InputError` that names ``source`` and the field."""
    try:
        yield
    except KeyError as e:
        raise InputError(source, str(e.args[0]), "missing") from None
    except InputError as e:
        raise InputError(source, e.field, e.problem) from None
    except (TypeError, ValueError) as e:
        raise InputError(source, None, f"expected {expected} ({e})") from None
