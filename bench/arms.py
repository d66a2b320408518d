"""Benchmarks with several arms (variants trained and scored alike): each arm's result is kept in
``results.json`` as soon as it is measured, so a killed run keeps what it measured."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable


def run_arms(names, results_path: Path, run_one: Callable[[str], dict]) -> dict:
    """``run_one(name)`` for every arm, its wall time added, printed and saved after each arm."""
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in names:
        t0 = time.perf_counter()
        results[name] = run_one(name)
        results[name]["wall_seconds"] = time.perf_counter() - t0
        print(name, json.dumps(results[name]), flush=True)
        results_path.write_text(json.dumps(results, indent=1))
    return results
