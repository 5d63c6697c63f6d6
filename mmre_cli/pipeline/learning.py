"""What the learning stages start from: graphs by split, the label map, loaders, the second-segment
captions, and :class:`TrainingSetup` (devices, reporter, labels, splits in one object)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from mmre_cli.errors import MmreError
from mmre_cli.graphs.graph import Graph


def graphs_by_split(artifact: Path, splits: Iterable[str] | None = None) -> dict[str, list[Graph]]:
    """All graphs of a CMG/refined artifact grouped by ``meta["split"]`` (stored order kept).

    With ``splits``, only those splits' graphs are kept; every other split seen still gets a key
    (an empty list), so a message can name the splits the artifact has."""
    from mmre_cli.store.readers import iter_graphs

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
    from mmre_cli.store.manifest import read_manifest

    info = read_manifest(artifact).get("info", {})
    labels = info.get("labels")
    if not labels:
        raise MmreError(f"{artifact}: no label map recorded; the dataset needs a rel2id file or a train split")
    return list(labels), labels.index(info.get("none_label", labels[0]))


def loader(
    graphs: list[Graph],
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    words: bool = False,
    bucket: bool | None = None,
    world: int = 1,
    rank: int = 0,
):
    """:func:`mmre_cli.graphs.pyg.graph_loader` over the labelled graphs (unlabelled ones dropped).

    ``words``: batches carry the sentence words, spans and caption (a model whose ``needs_words``
    is true); such a model re-encodes the text, so its batches are also bucketed by length
    (``bucket``, default ``words``). ``world``/``rank``: this process's share under DDP.
    """
    from mmre_cli.graphs.pyg import graph_loader

    return graph_loader(
        [g for g in graphs if g.label >= 0],
        batch_size,
        shuffle=shuffle,
        seed=seed,
        words=words,
        bucket=words if bucket is None else bucket,
        world=world,
        rank=rank,
    )


def load_graph_batches(
    artifact_dir: Path, batch_size: int, *, shuffle: bool = False, seed: int = 0, words: bool = False
) -> Iterator:
    """Read the graphs of an artifact directory and yield PyG batches.

    Args:
        artifact_dir: a graph artifact written by :mod:`mmre_cli.store`.
        batch_size: graphs per batch.
        shuffle: shuffle graph order (reads every graph into memory first; default ``False``
            streams in stored order).
        seed: seed of the shuffle (``numpy.random.default_rng``).
        words: add the sentence words and spans (:func:`mmre_cli.graphs.pyg.graph_to_data`).
    """
    import numpy as np

    from mmre_cli.graphs.pyg import graphs_to_batches
    from mmre_cli.store.readers import iter_graphs

    graphs: Iterable[Graph] = iter_graphs(artifact_dir, batch_graphs=max(batch_size, 256))
    if shuffle:
        graphs = list(graphs)
        order = np.random.default_rng(seed).permutation(len(graphs))
        graphs = [graphs[i] for i in order]
    yield from graphs_to_batches(graphs, batch_size, words=words)


def apply_pair_captions(groups: dict[str, list[Graph]], source: str | list[str] | None, on_error: str = "raise") -> int:
    """Replace each graph's ``meta["caption"]`` by its image's caption from ``source`` (may hold ``{split}``).

    This is ``train_gnn.pair_captions``: which captioner the fine-tuned encoder reads as its second
    segment, independent of the captions the graphs were built from. A list of sources reads
    several captioners at once: an image's captions are joined in the list's order by
    :func:`~mmre_cli.data.captions.join_captions`, one slot per captioner (a caption a captioner lacks
    leaves its slot empty, so every captioner keeps its position; ``caption_tokens`` then cuts the
    joined text; ``caption_parts: separate`` reads each slot in a pass of its own). Returns the
    number of graphs whose image has a caption there (the others get none).
    The editor's caption deletions (``meta["deleted_caption_texts"]``) name phrases of the caption
    the graph was built from, so they are dropped with it: another captioner's text is read whole.
    """
    from mmre_cli.data.captions import caption_path, join_captions, load_captions

    if not source:
        return 0
    sources = [source] if isinstance(source, str) else list(source)
    found = 0
    for split, graphs in groups.items():
        tables = [load_captions(caption_path(src, split), on_error=on_error) for src in sources]
        for g in graphs:
            img = str(g.meta.get("img_id") or "")
            g.meta["caption"] = join_captions([t.get(img) for t in tables])
            g.meta.pop("deleted_caption_texts", None)
            found += g.meta["caption"] is not None
    return found


def apply_teacher(graphs: list[Graph], source: str | Path, labels: list[str]) -> int:
    """Give each labelled graph its teacher's probabilities (``meta["teacher_probs"]``, read from
    ``source``, a ``predictions.jsonl`` of ``mmre evaluate``: :mod:`mmre_cli.store.predictions`),
    matched by sample id. This is ``train_gnn.distill_from``; returns the number of graphs given one.

    Raises:
        MmreError: a labelled graph has none (the file scored another split or another dataset).
    """
    from mmre_cli.store.predictions import read_probabilities

    table = read_probabilities(source, labels)
    labelled = [g for g in graphs if g.label >= 0]
    keys = [str(g.meta.get("sample_id", g.graph_id)) for g in labelled]
    missing = [k for k in keys if k not in table]
    if missing:
        raise MmreError(
            f"{source}: no probabilities for {len(missing)} of {len(labelled)} training graphs (e.g. {missing[0]}); "
            "score the train split with the teachers: mmre evaluate --model TEACHER -S evaluate.split=train"
        )
    for g, key in zip(labelled, keys):
        g.meta["teacher_probs"] = table[key]  # [C] float32
    return len(labelled)


def needs_words(model) -> bool:
    """Whether ``model`` re-encodes the sentence (its batches need ``graph_to_data(..., words=True)``)."""
    return bool(getattr(getattr(model, "module", model), "needs_words", False))


def require_split(groups: dict, split: str, artifact: Path) -> list[Graph]:
    if split not in groups or not groups[split]:
        have = ", ".join(sorted(k for k in groups if k != split)) or "none"
        raise MmreError(f"{artifact}: no graphs of split '{split}' (have: {have}); add it to data.splits and rerun")
    return groups[split]


class TrainingSetup:
    """What both training stages start from: devices, the talking reporter, labels, splits.

    Attributes: ``fabric`` (launched), ``reporter`` (silent on every rank but 0), ``labels``,
    ``none_id``, ``train`` and ``val`` graphs, ``in_dim`` (node feature width).
    """

    def __init__(
        self, artifact: Path, producer: str, gpus: int, seed: int, reporter, threads: int = 1, nodes: int = 1
    ) -> None:
        from mmre_cli.learn.trainer import seed_everything
        from mmre_cli.pipeline.chunks import require_artifact
        from mmre_cli.pipeline.devices import cpu_threads, make_fabric
        from mmre_cli.reporting import NullReporter

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
        dl = loader(
            self.train, max(1, batch_size // world), True, seed, words, world=world, rank=self.fabric.global_rank
        )
        return self.fabric.setup_dataloaders(dl, use_distributed_sampler=False)
