"""A small synthetic dataset in MNRE layout, so the pipeline runs offline with no licensed data.

``make_sample(out_dir)`` writes ``ours_{train,val}.txt`` (Python-literal lines, as MNRE ships),
``ours_rel2id.json`` (MNRE's 23 relation names), ``captions_{split}.txt`` and small PNG images
under ``img_org/{split}/``. Sentences are made up from templates with invented names; each
relation has its own wording and picture, so a model can learn something from either view.
Deterministic for a given seed: the repository's ``data/sample/`` is its output.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

MNRE_RELATIONS = (
    "None",
    "/per/per/parent",
    "/per/per/siblings",
    "/per/per/couple",
    "/per/per/neighbor",
    "/per/per/peer",
    "/per/per/charges",
    "/per/per/alumi",
    "/per/per/alternate_names",
    "/per/org/member_of",
    "/per/loc/place_of_residence",
    "/per/loc/place_of_birth",
    "/org/org/alternate_names",
    "/org/org/subsidiary",
    "/org/loc/locate_at",
    "/loc/loc/contain",
    "/per/misc/present_in",
    "/per/misc/awarded",
    "/per/misc/race",
    "/per/misc/religion",
    "/per/misc/nationality",
    "/misc/misc/part_of",
    "/misc/loc/held_on",
)

PEOPLE = [
    "Mara Quell",
    "Tobin Vale",
    "Ilse Brandt",
    "Oren Pike",
    "Lena Sorrow",
    "Caspar Finch",
    "Nadia Holt",
    "Rufus Crane",
]
ORGS = ["Northwind FC", "Bluefield Labs", "Orchard Records", "Kestrel Motors", "Harbor Bank", "Silverline News"]
PLACES = ["Port Alder", "Greymoor", "Lake Sable", "Westhaven", "Brightwater", "Old Quarry"]
EVENTS = ["Summer Lights Festival", "Harbor Marathon", "Golden Reel Awards", "Tech Harbor Expo"]

# relation -> (sentence template, head slot, tail slot, caption, picture kind)
TEMPLATES = {
    "/per/org/member_of": (
        "RT @fans : {P} scores again for {O} tonight !",
        "P",
        "O",
        "A football player in a striped jersey celebrates on a green pitch.",
        "pitch",
    ),
    "/per/loc/place_of_residence": (
        "{P} enjoying a quiet evening at home in {L} .",
        "P",
        "L",
        "A woman sits on a porch of a small house at sunset.",
        "house",
    ),
    "/org/loc/locate_at": (
        "{O} opens its new headquarters in {L} today",
        "O",
        "L",
        "A tall glass office building stands under a blue sky.",
        "building",
    ),
    "/per/per/couple": (
        "{P} and his wife {P2} arrive at the gala",
        "P",
        "P2",
        "A man in a suit and a woman in a red dress pose together on a carpet.",
        "couple",
    ),
    "/per/misc/awarded": (
        "Congratulations to {P} on winning the {E} !",
        "P",
        "E",
        "A smiling person holds a golden trophy on a stage.",
        "trophy",
    ),
    "/misc/loc/held_on": (
        "The {E} returns to {L} this weekend",
        "E",
        "L",
        "A crowd gathers in front of a stage with bright lights.",
        "stage",
    ),
    "/per/per/peer": (
        "{P} and {P2} train together before the final",
        "P",
        "P2",
        "Two athletes run side by side on a track.",
        "track",
    ),
    "None": (
        "{P} shared a photo while thinking about {O}",
        "P",
        "O",
        "A blurry photo of a street with cars.",
        "street",
    ),
}

_COLORS = {
    "pitch": (40, 140, 60),
    "house": (200, 120, 60),
    "building": (90, 140, 220),
    "couple": (180, 30, 50),
    "trophy": (230, 190, 40),
    "stage": (120, 40, 160),
    "track": (210, 80, 40),
    "street": (110, 110, 110),
}


def _draw(kind: str, rng: random.Random, path: Path) -> None:
    from PIL import Image, ImageDraw

    bg = tuple(min(255, c + rng.randint(0, 25)) for c in _COLORS[kind])
    img = Image.new("RGB", (96, 72), bg)
    draw = ImageDraw.Draw(img)
    for _ in range(2):  # "objects": a figure and a thing
        x, y = rng.randint(5, 55), rng.randint(5, 35)
        draw.rectangle([x, y, x + rng.randint(12, 30), y + rng.randint(12, 30)], fill=(rng.randint(0, 255), 20, 20))
    img.save(path, format="PNG", optimize=True)


def _instance(relation: str, rng: random.Random, img_id: str) -> dict:
    template, hs, ts, _, _ = TEMPLATES[relation]
    fill = {"P": rng.choice(PEOPLE), "O": rng.choice(ORGS), "L": rng.choice(PLACES), "E": rng.choice(EVENTS)}
    fill["P2"] = rng.choice([p for p in PEOPLE if p != fill["P"]])
    tokens: list[str] = []
    spans: dict[str, list[int]] = {}
    for word in template.split():
        slot = word.strip("{}") if word.startswith("{") else None
        if slot:
            start = len(tokens)
            tokens.extend(fill[slot].split())
            spans[slot] = [start, len(tokens)]
        else:
            tokens.append(word)
    return {
        "token": tokens,
        "h": {"name": fill[hs], "pos": spans[hs]},
        "t": {"name": fill[ts], "pos": spans[ts]},
        "img_id": img_id,
        "relation": relation,
    }


def make_sample(out_dir: str | Path, n_train: int = 64, n_val: int = 24, seed: int = 7) -> Path:
    """Write the synthetic dataset to ``out_dir`` and return it."""
    out = Path(out_dir)
    rng = random.Random(seed)
    relations = list(TEMPLATES)
    (out / "ours_rel2id.json").parent.mkdir(parents=True, exist_ok=True)
    (out / "ours_rel2id.json").write_text(json.dumps({r: i for i, r in enumerate(MNRE_RELATIONS)}) + "\n")
    for split, n in (("train", n_train), ("val", n_val)):
        img_dir = out / "img_org" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lines, captions = [], []
        for i in range(n):
            # about 40 % None, as in MNRE (62 %) but with enough positives to learn from
            relation = "None" if rng.random() < 0.4 else rng.choice(relations[:-1])
            img_id = f"sample_{split}_{i:03d}.png"
            lines.append(repr(_instance(relation, rng, img_id)))
            captions.append(repr({"img_id": img_id, "text": TEMPLATES[relation][3]}))
            _draw(TEMPLATES[relation][4], rng, img_dir / img_id)
        (out / f"ours_{split}.txt").write_text("\n".join(lines) + "\n")
        (out / f"captions_{split}.txt").write_text("\n".join(captions) + "\n")
    return out


if __name__ == "__main__":  # python -m mmre_cli.data.sample data/sample
    import sys

    print(make_sample(sys.argv[1] if len(sys.argv) > 1 else "data/sample"))
