r"""Relations as text: score an entity pair against encoded relation descriptions (issue 25).

ROC (2025) reports the best MNRE and MORE scores by matching an entity pair with *descriptions*
of the relations instead of a linear classifier. Each label :math:`c` is written as a short
sentence :math:`d_c` (:func:`describe`: MNRE-2's 23 labels by hand, any other label from its
name, ``/per/loc/place_of_residence`` → "person location place of residence"), encoded by the
same (fine-tuned) text encoder as the sentence and mean-pooled over its word pieces,
:math:`\mathbf{e}_c \in \mathbb{R}^D`. With :math:`\mathbf{u} \in \mathbb{R}^H` the pair's
hidden vector (the classifier MLP's penultimate layer),

.. math::
    \mathrm{logit}_c = s \cdot \cos(W\mathbf{u},\ \mathbf{e}_c) + b_c,\qquad s = e^{\sigma}

with :math:`W \in \mathbb{R}^{D\times H}`, a learned log-scale :math:`\sigma` (initialised to
:math:`\ln 10`) and a per-label bias :math:`b_c` (zero at the start). Cross-entropy over these
logits is the InfoNCE loss of the pair against all relation descriptions; the gradient reaches
the encoder through the description vectors too, so the encoder learns to place a pair near
the description of its relation.

Shapes:
    :class:`RelationTextHead`: ``u [B, H]``, descriptions ``[C, D]`` -> logits ``[B, C]``
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["MNRE_DESCRIPTIONS", "describe", "RelationTextHead"]

#: MNRE-2's labels written as one short sentence each ("head" and "tail" are the two entities)
MNRE_DESCRIPTIONS: dict[str, str] = {
    "None": "no relation between the head and the tail",
    "/per/per/parent": "the head person is a parent of the tail person",
    "/per/per/siblings": "the head person and the tail person are siblings",
    "/per/per/couple": "the head person and the tail person are a couple, married or dating",
    "/per/per/neighbor": "the head person is a neighbor of the tail person",
    "/per/per/peer": "the head person and the tail person are peers, colleagues, teammates or friends",
    "/per/per/charges": "the head person charges, sues or accuses the tail person",
    "/per/per/alumi": "the head person and the tail person went to the same school",
    "/per/per/alternate_names": "the head person is another name of the tail person",
    "/per/org/member_of": "the head person is a member of, plays for or works for the tail organization",
    "/per/loc/place_of_residence": "the head person lives in or is from the tail location",
    "/per/loc/place_of_birth": "the head person was born in the tail location",
    "/org/org/alternate_names": "the head organization is another name of the tail organization",
    "/org/org/subsidiary": "the head organization is a subsidiary or part of the tail organization",
    "/org/loc/locate_at": "the head organization is located at the tail location",
    "/loc/loc/contain": "the head location contains the tail location",
    "/per/misc/present_in": "the head person is present in or appears at the tail event or work",
    "/per/misc/awarded": "the head person was awarded the tail prize",
    "/per/misc/race": "the head person is of the tail race or ethnicity",
    "/per/misc/religion": "the head person follows the tail religion",
    "/per/misc/nationality": "the head person has the tail nationality",
    "/misc/misc/part_of": "the head thing is part of the tail thing",
    "/misc/loc/held_on": "the head event is held in the tail location",
}

_TYPE_WORDS = {"per": "person", "org": "organization", "loc": "location", "misc": "thing"}


def describe(label: str) -> str:
    """A short description of ``label``: :data:`MNRE_DESCRIPTIONS`, else words made from its name
    (path parts, ``_`` as spaces, type abbreviations spelled out)."""
    if label in MNRE_DESCRIPTIONS:
        return MNRE_DESCRIPTIONS[label]
    parts = [p for p in str(label).replace("-", "_").split("/") if p] or [str(label)]
    words = [_TYPE_WORDS.get(p.lower(), p.replace("_", " ")) for p in parts]
    return " ".join(words).strip() or str(label)


class RelationTextHead(nn.Module):
    r"""Scaled cosine between a projected pair vector and relation description vectors (module docstring).

    Args:
        in_dim (int): H, the pair vector's width.
        text_dim (int): D, the description vectors' width.
        num_classes (int): C.

    Shapes:
        - **input:** ``u [B, H]``, ``descriptions [C, D]``
        - **output:** logits ``[B, C]``
    """

    def __init__(self, in_dim: int, text_dim: int, num_classes: int):
        super().__init__()
        self.project = nn.Linear(in_dim, text_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, u: Tensor, descriptions: Tensor) -> Tensor:
        q = F.normalize(self.project(u), dim=-1)
        k = F.normalize(descriptions.to(q.dtype), dim=-1)
        return self.log_scale.exp() * q @ k.t() + self.bias


def check_descriptions(descriptions: Sequence[str], num_classes: int) -> list[str]:
    """``descriptions`` as a list of ``num_classes`` non-empty strings.

    Raises:
        ValueError: wrong count or an empty description.
    """
    out = [str(d).strip() for d in descriptions]
    if len(out) != num_classes or not all(out):
        raise ValueError(f"need {num_classes} non-empty relation descriptions, got {len(out)}")
    return out
