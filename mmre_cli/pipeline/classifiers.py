"""The classifiers ``train_gnn.model`` names, built from a ``train_gnn`` params section."""

from __future__ import annotations

from mmre_cli.errors import MmreError

CLASSIFIERS = ("gnn", "pooled", "finetune")


#: ``train_gnn.graph_encoder``: :class:`~mmre_cli.learn.gnn.RelationGNN`'s ``conv`` by its own name
GRAPH_ENCODERS = ("gatv2", "gat", "hop_attention")
#: the ``train_gnn`` keys :func:`graph_switches` reads
SWITCH_KEYS = ("graph_encoder", "hop_alpha", "hop_k", "fusion", "queries", "loss", "nl_weight")


def graph_switches(cfg: dict) -> dict:
    """The classifier switches of issue 12 as :class:`~mmre_cli.learn.gnn.RelationGNN` kwargs:
    ``graph_encoder`` (gatv2 | gat | hop_attention, with ``hop_alpha``/``hop_k``), ``fusion``
    (none | mm_qformer, with ``queries``), ``loss`` (ce | ce+negative_learning, with ``nl_weight``).
    Absent keys take the defaults (GATv2, no fusion, cross-entropy).

    Raises:
        MmreError: a value outside its choices.
    """
    from mmre_cli.learn.gnn import FUSIONS
    from mmre_cli.learn.negative import LOSSES

    enc = str(cfg.get("graph_encoder") or "gatv2")
    fusion = str(cfg.get("fusion") or "none")
    loss = str(cfg.get("loss") or "ce")
    for key, value, choices in (
        ("graph_encoder", enc, GRAPH_ENCODERS),
        ("fusion", fusion, FUSIONS),
        ("loss", loss, LOSSES),
    ):
        if value not in choices:
            raise MmreError(f"train_gnn.{key} must be one of {' | '.join(choices)}, not {value!r}")
    return dict(
        conv=enc,
        hop_alpha=float(cfg.get("hop_alpha", 0.1)),
        hop_k=int(cfg.get("hop_k", 4)),
        fusion=fusion,
        queries=int(cfg.get("queries", 8)),
        loss=loss,
        nl_weight=float(cfg.get("nl_weight", 0.5)),
    )


def caption_pool_parts(cfg: dict) -> int:
    """``train_gnn.caption_pool`` as the number of caption parts pooled: 0 when off, 1 when the
    captions are read ``joined`` (one text), else the number of captioners in ``pair_captions``."""
    if not cfg.get("caption_pool"):
        return 0
    files = cfg.get("pair_captions")
    if cfg.get("caption_parts", "joined") == "joined" or not isinstance(files, (list, tuple)):
        return 1
    return len(files)


def build_classifier(
    kind: str,
    in_dim: int,
    num_classes: int,
    cfg: dict,
    encoder_weights: str | None = None,
    encoder: str = "minilm",
    labels: list[str] | None = None,
):
    """``gnn`` → :class:`RelationGNN`; ``pooled`` → :class:`PooledMLP` (the w/o-GNN ablation);
    ``finetune`` → :class:`~mmre_cli.learn.finetune.FinetunedRelationModel` (MiniLM or another
    encoder fine-tuned end to end, entity markers; ``readout``: with the GNN or the markers alone;
    ``encoder`` / ``encoder_weights``: the text encoder fine-tuned; ``caption_tokens`` of the
    caption read as its second segment, ``caption_pass`` in its own pass; ``relation_text``: the
    ``labels``' descriptions as the last layer)."""
    from mmre_cli.learn.gnn import PooledMLP, RelationGNN

    switches = graph_switches(cfg)
    if kind == "gnn":
        return RelationGNN(
            in_dim,
            num_classes,
            hidden=cfg["hidden"],
            layers=cfg["layers"],
            heads=cfg["heads"],
            dropout=cfg["dropout"],
            **switches,
        )
    if kind == "pooled":
        return PooledMLP(in_dim, num_classes, hidden=cfg["hidden"], dropout=cfg["dropout"])
    if kind == "finetune":
        from mmre_cli.learn.finetune import READOUTS, FinetunedRelationModel
        from mmre_cli.learn.markers import MARKER_STYLES
        from mmre_cli.learn.relation_text import describe

        if cfg["markers"] not in MARKER_STYLES:
            raise MmreError(f"train_gnn.markers must be one of {', '.join(MARKER_STYLES)}, not {cfg['markers']!r}")
        if cfg["readout"] not in READOUTS[1:]:
            raise MmreError(f"train_gnn.readout must be one of {' | '.join(READOUTS[1:])}, not {cfg['readout']!r}")
        if cfg.get("caption_pool") and not int(cfg["caption_pass"] or 0):
            raise MmreError("train_gnn.caption_pool reads the caption's own pass: set train_gnn.caption_pass too")
        descriptions = None
        if cfg["relation_text"]:
            if labels is None or len(labels) != num_classes:
                raise MmreError("train_gnn.relation_text needs the label names")
            descriptions = [describe(label) for label in labels]
        return FinetunedRelationModel(
            in_dim,
            num_classes,
            markers=cfg["markers"],
            readout=cfg["readout"],
            caption_pass=int(cfg["caption_pass"] or 0),
            caption_parts=cfg.get("caption_parts", "joined"),
            caption_pool=caption_pool_parts(cfg),
            caption_dropout=float(cfg.get("caption_dropout") or 0.0),
            relation_descriptions=descriptions,
            encoder_weights=encoder_weights,
            train_layers=cfg["train_layers"],
            encoder=encoder,
            caption_tokens=cfg.get("caption_tokens", 0),
            precision=str(cfg.get("precision", "32")),
            hidden=cfg["hidden"],
            layers=cfg["layers"],
            heads=cfg["heads"],
            dropout=cfg["dropout"],
            **switches,
        )
    raise MmreError(f"unknown classifier '{kind}' (train_gnn.model: {' | '.join(CLASSIFIERS)})")
