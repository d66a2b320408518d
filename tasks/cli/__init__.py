"""The ``nerfsim`` command line (tyro). Run ``nerfsim --help`` or ``nerfsim COMMAND --help``.

Every setting of a command is a field of its dataclass (`tasks.cli.commands`) or of a config
dataclass nested in it; each can be given as a flag or in a YAML / JSON file (``--config FILE``;
flags override the file; format in `tasks.cli.settings`). Bad input is reported as one line naming
the file or flag, the field and what was expected (exit code 2), before anything is written.

The file formats the command line reads and writes: `tasks.cli.camera_files` (cameras.json,
nerfstudio camera_path.json), `tasks.cli.outputs` (the render output folder).
"""

from __future__ import annotations

import sys

CONFIG_HELP = "Settings may also come from a YAML / JSON file: --config FILE (flags override it)."


def _take_config(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` without ``--config FILE`` (or ``--config=FILE``), and FILE."""
    from scenes.errors import InputError

    rest, path = [], None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--config":
            if i + 1 >= len(argv):
                raise InputError("--config", None, "expected a YAML or JSON file after --config")
            path, i = argv[i + 1], i + 2
            continue
        if a.startswith("--config="):
            path = a.split("=", 1)[1]
        else:
            rest.append(a)
        i += 1
    return rest, path


def _command_types(defaults: dict):
    """The union of the commands tyro chooses from, each with its description (and its defaults
    from a config file, for the command that has one)."""
    import inspect
    from typing import Annotated, Union

    import tyro

    from tasks.cli.commands import COMMANDS

    options = []
    for name, cls in COMMANDS.items():
        description = f"{inspect.getdoc(cls)}\n\n{CONFIG_HELP}"
        if name in defaults:
            marker = tyro.conf.subcommand(name, default=defaults[name], description=description)
        else:
            marker = tyro.conf.subcommand(name, description=description)
        options.append(Annotated[cls, marker])
    return Union[tuple(options)]


def parse(argv: list[str]):
    """The command (a `tasks.cli.commands` dataclass) that ``argv`` asks for, its settings checked;
    `InputError` for bad settings, `SystemExit` (tyro's message, exit code 2) for unknown flags."""
    import tyro

    from scenes.errors import InputError
    from tasks.cli.commands import COMMANDS, check_output_folders
    from tasks.cli.settings import check_bounds, command_from_file, read_config_file

    argv, config = _take_config(argv)
    defaults = {}
    if config is not None:
        name = next((a for a in argv if not a.startswith("-")), None)
        if name not in COMMANDS:
            raise InputError("--config", None, f"name the command first (nerfsim COMMAND --config FILE); commands: {', '.join(COMMANDS)}")
        defaults[name] = command_from_file(COMMANDS[name], read_config_file(config), config)
    command = tyro.cli(_command_types(defaults), args=argv, prog="nerfsim", description=__doc__.split("\n\n")[0])
    check_bounds(command)
    check_output_folders(command)
    return command


def main(argv: list[str] | None = None) -> int:
    from scenes.errors import InputError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parse(argv).run()
    except InputError as e:
        print(f"nerfsim: error: {e}", file=sys.stderr)
        return 2
    return 0
