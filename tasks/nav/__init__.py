"""Closed-loop navigation inside a neural scene: a gymnasium environment (`tasks.nav.env.NavEnv`),
agent dynamics, collision checks against actor boxes and background density, episode metrics and
recordings, and baseline controllers (a NeRF-Nav-style planner and a reactive depth controller).

Importing this package registers the environment with gymnasium::

    import gymnasium, tasks.nav
    env = gymnasium.make("nerfsim/Nav-v0", scene="demo_out/scene", dynamics="unicycle")

(or, without the import: ``gymnasium.make("tasks.nav:nerfsim/Nav-v0", ...)``).
"""

import gymnasium

ENV_ID = "nerfsim/Nav-v0"


def register() -> None:
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(ENV_ID, entry_point="tasks.nav.env:NavEnv")


register()
