"""What ``mmre predict`` and ``mmre serve`` return for one (head, tail) pair of one query, and its
JSON form (the ``--json`` lines and the API's objects)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Prediction:
    """The relation predicted for one (head, tail) pair of one query."""

    head: str
    tail: str
    relation: str
    probability: float
    top3: list[tuple[str, float]]
    text: str
    image: str | None
    caption: str | None = None
    pairs_from: str = "given"  # "given" (--head/--tail) or "ner"
    where: str = ""
    cmg: object | None = field(default=None, repr=False)  # the unedited CMG (keep_graphs=True)
    refined: object | None = field(default=None, repr=False)  # after edits + diffusion

    def to_json(self) -> dict:
        out = {
            "head": self.head,
            "tail": self.tail,
            "relation": self.relation,
            "probability": round(float(self.probability), 6),
            "top3": [[lab, round(float(p), 6)] for lab, p in self.top3],
            "text": self.text,
            "image": self.image,
        }
        if self.caption is not None:
            out["caption"] = self.caption
        out["pairs_from"] = self.pairs_from
        if self.where:
            out["source"] = self.where
        return out
