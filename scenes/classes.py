"""Semantic classes of the built-in world and of scenes trained from it.

Ids are stable (they are written into semantic masks and datasets); 0 is the sky, `UNLABELLED`
(255) a pixel without a label (a class the list does not hold, or an image its dataset left
unlabelled): no loss is taken from it.
"""

CLASS_NAMES: tuple[str, ...] = (
    "sky",  # 0
    "road",
    "lane_marking",
    "sidewalk",
    "building",
    "pole",
    "tree",
    "car",
    "pedestrian",
)
CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}
UNLABELLED = 255
ACTOR_CLASSES: tuple[str, ...] = ("car", "pedestrian")
BACKGROUND_CLASSES: tuple[str, ...] = tuple(c for c in CLASS_NAMES if c != "sky" and c not in ACTOR_CLASSES)
"""Classes of the static background (what a background field's semantic head tells apart)."""
