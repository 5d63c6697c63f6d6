"""Pieces the learning stages share: graphs by split, loaders, label map, devices, CSV logs."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable

from mmre_cli.errors import MmreError
from mmre_cli.graphs.graph import Graph


def graphs_by_split(artifact: Path, splits: Iterable[str] | None = None) -> dict[str, list[Graph]]:
    """All graphs of a CMG/refined artifact grouped by ``meta["split"]`` (stored order kept).

    With ``splits``, only those splits' graphs are kept; every other split seen still gets a key
    (an empty list), so a message can name the splits the artifact has."""
    from mmre_cli.store.shards import iter_graphs

    wanted = None if splits is None else set(splits)
    out: dict[str, list[Graph]] = {}
    for g in iter_graphs(artifact):
        split = g.meta.get("split", "")
        kept = out.setdefault(split, [])
        if wanted is None or split in wanted:
            kept.append(g)
    return out


def label_info(artifact: Path) -> tuple[list[str], int]:
    """``(labels, none_id)`` recorded by extract-features (carried in every manifest's info)."""
    from mmre_cli.store.shards import read_manifest

    info = read_manifest(artifact).get("info", {})
    labels = info.get("labels")
    if not labels:
        raise MmreError(f"{artifact}: no label map recorded; the dataset needs a rel2id file or a train split")
    return list(labels), labels.index(info.get("none_label", labels[0]))


def loader(graphs: list[Graph], batch_size: int, shuffle: bool, seed: int = 0, words: bool = False,
           bucket: bool | None = None, world: int = 1, rank: int = 0):
    """:func:`mmre_cli.graphs.pyg.graph_loader` over the labelled graphs (unlabelled ones dropped).

    ``words``: batches carry the sentence words, spans and caption (a model whose ``needs_words``
    is true); such a model re-encodes the text, so its batches are also bucketed by length
    (``bucket``, default ``words``). ``world``/``rank``: this process's share under DDP.
    """
    from mmre_cli.graphs.pyg import graph_loader

    return graph_loader([g for g in graphs if g.label >= 0], batch_size, shuffle=shuffle, seed=seed, words=words,
                        bucket=words if bucket is None else bucket, world=world, rank=rank)


#: what joins several captioners' captions of one image in the second segment
CAPTION_JOIN = " ; "


def apply_pair_captions(groups: dict[str, list[Graph]], source: str | list[str] | None, on_error: str = "raise") -> int:
    """Replace each graph's ``meta["caption"]`` by its image's caption from ``source`` (may hold ``{split}``).

    This is ``data.pair_captions``: which captioner the fine-tuned encoder reads as its second
    segment, independent of the captions the graphs were built from. A list of sources reads
    several captioners at once: an image's captions are joined in the list's order with
    :data:`CAPTION_JOIN` (those a captioner lacks are left out; ``caption_tokens`` then cuts the
    joined text). Returns the number of graphs whose image has a caption there (the others get none).
    The editor's caption deletions (``meta["deleted_caption_texts"]``) name phrases of the caption
    the graph was built from, so they are dropped with it: another captioner's text is read whole.
    """
    from mmre_cli.data.captions import caption_path, load_captions

    if not source:
        return 0
    sources = [source] if isinstance(source, str) else list(source)
    found = 0
    for split, graphs in groups.items():
        tables = [load_captions(caption_path(src, split), on_error=on_error) for src in sources]
        for g in graphs:
            img = str(g.meta.get("img_id") or "")
            texts = [t[img] for t in tables if t.get(img)]
            g.meta["caption"] = CAPTION_JOIN.join(texts) if texts else None
            g.meta.pop("deleted_caption_texts", None)
            found += bool(texts)
    return found


def needs_words(model) -> bool:
    """Whether ``model`` re-encodes the sentence (its batches need ``graph_to_data(..., words=True)``)."""
    return bool(getattr(getattr(model, "module", model), "needs_words", False))


def require_split(groups: dict, split: str, artifact: Path) -> list[Graph]:
    if split not in groups or not groups[split]:
        have = ", ".join(sorted(k for k in groups if k != split)) or "none"
        raise MmreError(f"{artifact}: no graphs of split '{split}' (have: {have}); add it to data.splits and rerun")
    return groups[split]


def make_fabric(gpus: int, nodes: int = 1):
    """Lightning Fabric for ``--gpus N``: 0 → CPU; 1 → one CUDA device; N > 1 → DDP on N devices.

    ``nodes = M > 1`` (``--nodes M``): DDP over M machines with N devices each (one CPU process
    each with ``--gpus 0``), Fabric's ``num_nodes``. The processes are started by the launcher —
    ``torchrun --nnodes M --nproc-per-node N --node-rank R --master-addr HOST --master-port PORT
    -m mmre_cli train-gnn --nodes M --gpus N ...`` on every machine, or ``srun`` under SLURM —
    and Fabric reads the rank and rendezvous from their environment (gloo on CPU, NCCL on GPUs).

    ``MMRE_CPU_DDP=K`` (K > 1) with ``--gpus 0`` runs K CPU processes with DDP over gloo — the
    way the DDP path is tested on machines without a GPU.
    """
    import torch
    from lightning.fabric import Fabric

    cpu_ddp = int(os.environ.get("MMRE_CPU_DDP", "0") or 0)
    if nodes < 1:
        raise MmreError(f"--nodes must be at least 1, not {nodes}")
    if nodes > 1:
        if gpus and (not torch.cuda.is_available() or torch.cuda.device_count() < gpus):
            raise MmreError(f"--gpus {gpus} asked for on each node, but this machine has "
                            f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} CUDA device(s)")
        return Fabric(accelerator="cuda" if gpus else "cpu", devices=gpus or 1, num_nodes=nodes, strategy="ddp")
    if gpus == 0:
        if cpu_ddp > 1:
            return Fabric(accelerator="cpu", devices=cpu_ddp, strategy="ddp")
        return Fabric(accelerator="cpu", devices=1)
    if not torch.cuda.is_available() or torch.cuda.device_count() < gpus:
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise MmreError(f"--gpus {gpus} asked for, but this machine has {have} CUDA device(s); use --gpus {have}")
    return Fabric(accelerator="cuda", devices=gpus, strategy="ddp" if gpus > 1 else "auto")


def cpu_threads(default: int = 1) -> None:
    """Intra-op threads: ``$MMRE_TORCH_THREADS``, else ``default`` (0 = every core).

    Small graph batches run faster on one thread per process (measured on 2 cores); a
    transformer being fine-tuned wants every core (``default=0``).
    """
    import torch

    n = int(os.environ.get("MMRE_TORCH_THREADS", str(default)) or default)
    torch.set_num_threads(max(1, n if n > 0 else (os.cpu_count() or 1)))


def write_plots(folders: list[Path | None], name: str, rows: list[dict], draw) -> None:
    """``name.csv`` (``rows``) and ``name.png`` (``draw(rows, path)``) into each folder given.

    The PNG is drawn once and copied, so every folder holds the same picture.
    """
    import shutil

    folders = [Path(f) for f in folders if f is not None]
    if not folders:
        return
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(folder / f"{name}.csv", rows)
    first = draw(rows, folders[0] / f"{name}.png")
    for folder in folders[1:]:
        shutil.copyfile(first, folder / f"{name}.png")


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """Write rows (same keys) as CSV atomically; DVC reads it as plots."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    keys = list(rows[0]) if rows else []
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})
    os.replace(tmp, path)


CLASSIFIERS = ("gnn", "pooled", "finetune")


#: ``train_gnn.graph_encoder`` -> :class:`~mmre_cli.learn.gnn.RelationGNN`'s ``conv``
GRAPH_ENCODERS = {"gat": "gatv2", "hop_attention": "hop_attention"}
#: the ``train_gnn`` keys :func:`graph_switches` reads
SWITCH_KEYS = ("graph_encoder", "hop_alpha", "hop_k", "fusion", "queries", "loss", "nl_weight")


def graph_switches(cfg: dict) -> dict:
    """The classifier switches of issue 12 as :class:`~mmre_cli.learn.gnn.RelationGNN` kwargs:
    ``graph_encoder`` (gat | hop_attention, with ``hop_alpha``/``hop_k``), ``fusion``
    (none | mm_qformer, with ``queries``), ``loss`` (ce | ce+negative_learning, with ``nl_weight``).
    Absent keys take the defaults (GATv2, no fusion, cross-entropy).

    Raises:
        MmreError: a value outside its choices.
    """
    from mmre_cli.learn.gnn import FUSIONS
    from mmre_cli.learn.negative import LOSSES

    enc = str(cfg.get("graph_encoder") or "gat")
    fusion = str(cfg.get("fusion") or "none")
    loss = str(cfg.get("loss") or "ce")
    for key, value, choices in (("graph_encoder", enc, tuple(GRAPH_ENCODERS)), ("fusion", fusion, FUSIONS),
                                ("loss", loss, LOSSES)):
        if value not in choices:
            raise MmreError(f"train_gnn.{key} must be one of {' | '.join(choices)}, not {value!r}")
    return dict(conv=GRAPH_ENCODERS[enc], hop_alpha=float(cfg.get("hop_alpha", 0.1)), hop_k=int(cfg.get("hop_k", 4)),
                fusion=fusion, queries=int(cfg.get("queries", 8)), loss=loss,
                nl_weight=float(cfg.get("nl_weight", 0.5)))


def build_classifier(kind: str, in_dim: int, num_classes: int, cfg: dict, encoder_weights: str | None = None,
                     encoder: str = "minilm", labels: list[str] | None = None):
    """``gnn`` → :class:`RelationGNN`; ``pooled`` → :class:`PooledMLP` (the w/o-GNN ablation);
    ``finetune`` → :class:`~mmre_cli.learn.finetune.FinetunedRelationModel` (MiniLM or another
    encoder fine-tuned end to end, entity markers; ``readout``: with the GNN or the markers alone;
    ``encoder`` / ``encoder_weights``: the text encoder fine-tuned; ``caption_tokens`` of the
    caption read as its second segment, ``caption_pass`` in its own pass; ``relation_text``: the
    ``labels``' descriptions as the last layer)."""
    from mmre_cli.learn.gnn import PooledMLP, RelationGNN

    switches = graph_switches(cfg)
    if kind == "gnn":
        return RelationGNN(in_dim, num_classes, hidden=cfg["hidden"], layers=cfg["layers"], heads=cfg["heads"],
                           dropout=cfg["dropout"], **switches)
    if kind == "pooled":
        return PooledMLP(in_dim, num_classes, hidden=cfg["hidden"], dropout=cfg["dropout"])
    if kind == "finetune":
        from mmre_cli.learn.finetune import FinetunedRelationModel
        from mmre_cli.learn.markers import MARKER_STYLES

        from mmre_cli.learn.finetune import READOUTS
        from mmre_cli.learn.relation_text import describe

        if cfg["markers"] not in MARKER_STYLES:
            raise MmreError(f"train_gnn.markers must be one of {', '.join(MARKER_STYLES)}, not {cfg['markers']!r}")
        if cfg["readout"] not in READOUTS[1:]:
            raise MmreError(f"train_gnn.readout must be one of {' | '.join(READOUTS[1:])}, not {cfg['readout']!r}")
        descriptions = None
        if cfg["relation_text"]:
            if labels is None or len(labels) != num_classes:
                raise MmreError("train_gnn.relation_text needs the label names")
            descriptions = [describe(label) for label in labels]
        return FinetunedRelationModel(in_dim, num_classes, markers=cfg["markers"], readout=cfg["readout"],
                                      caption_pass=int(cfg["caption_pass"] or 0), relation_descriptions=descriptions,
                                      encoder_weights=encoder_weights, train_layers=cfg["train_layers"],
                                      encoder=encoder, caption_tokens=cfg.get("caption_tokens", 0),
                                      precision=str(cfg.get("precision", "32")),
                                      hidden=cfg["hidden"], layers=cfg["layers"], heads=cfg["heads"],
                                      dropout=cfg["dropout"], **switches)
    raise MmreError(f"unknown classifier '{kind}' (train_gnn.model: {' | '.join(CLASSIFIERS)})")


class TrainingSetup:
    """What both training stages start from: devices, the talking reporter, labels, splits.

    Attributes: ``fabric`` (launched), ``reporter`` (silent on every rank but 0), ``labels``,
    ``none_id``, ``train`` and ``val`` graphs, ``in_dim`` (node feature width).
    """

    def __init__(self, artifact: Path, producer: str, gpus: int, seed: int, reporter, threads: int = 1,
                 nodes: int = 1) -> None:
        from mmre_cli.learn.trainer import seed_everything
        from mmre_cli.reporting import NullReporter
        from stages._chunks import require_artifact

        require_artifact(artifact, producer)
        cpu_threads(threads)
        self.fabric = make_fabric(gpus, nodes)
        self.fabric.launch()
        self.reporter = reporter if self.fabric.is_global_zero else NullReporter()
        self.labels, self.none_id = label_info(artifact)
        groups = graphs_by_split(artifact, ["train", "val"])
        self.groups = groups
        self.train, self.val = require_split(groups, "train", artifact), require_split(groups, "val", artifact)
        seed_everything(seed)
        self.in_dim = int(self.train[0].x.shape[1])

    def train_loader(self, batch_size: int, seed: int, words: bool = False):
        """Shuffled training batches, seeded by ``seed`` (length buckets for a re-encoding model on
        one process); under DDP each process takes its share of one seeded permutation per epoch
        (:class:`~mmre_cli.graphs.pyg.RankShards`, a plain shuffle).

        ``batch_size`` is the global batch: each of W processes takes ``max(1, batch_size // W)``
        graphs per step, so an optimiser step sees about as many graphs, and an epoch has about as
        many steps, on W processes as on one (the same learning-rate schedule)."""
        world = self.fabric.world_size
        if world == 1:
            return loader(self.train, batch_size, True, seed, words)
        dl = loader(self.train, max(1, batch_size // world), True, seed, words, world=world,
                    rank=self.fabric.global_rank)
        return self.fabric.setup_dataloaders(dl, use_distributed_sampler=False)
