"""Scenario -> world: draw one variant of a scenario file and simulate it until it passes the
sanity checks. Used by dataset generation (`tasks.scenarios.dataset`), navigation
(`tasks.nav.scene`) and `nerfsim scenarios --check`, none of which needs the others.
"""

from __future__ import annotations

from scenes.roadmap import RoadMap
from tasks.scenarios.schema import ScenarioText, expand, resolve_seed, scenario_from_tree
from tasks.scenarios.traffic import ScenarioWorld, build_scenario_world, check_scenario_world


def draw_variant(text: ScenarioText, graph, road: RoadMap, variant: int, seed: int | None, max_attempts: int,
                 library: dict | None = None) -> tuple[ScenarioWorld, dict, int, list[dict]]:
    """Draw variant ``variant`` until its world passes the sanity checks: ``(world, drawn values,
    attempt, rejected draws)``. Attempt ``a`` draws from ``default_rng([seed, variant, a])``.
    ``library``: assets to insert from (default: the scene's own)."""
    seed = resolve_seed(text, seed)
    rejected = []
    for attempt in range(max(1, max_attempts)):
        tree, drawn = expand(text, variant, seed, attempt)
        sc = scenario_from_tree(text, tree)
        world = build_scenario_world(sc, graph, road, (seed, variant, attempt), library)
        problems = check_scenario_world(world, road)
        if not problems:
            return world, drawn, attempt, rejected
        rejected.append({"attempt": attempt, "drawn": drawn, "violations": problems})
    return world, drawn, attempt, rejected[:-1]
