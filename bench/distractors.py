# Over 500 lines on purpose: one self-contained benchmark whose settings and figures read in one file.
"""Distractor benchmark: does the RL editor remove nodes that are known to be noise?

MNRE-2's merged CMGs (frozen MiniLM features, ``merge-cmg``'s output) get ``k`` distractor nodes
per graph: caption-phrase nodes taken from *another* instance's CMG of the same split (its ``x``,
text and lemma), linked to the host the way ``merge-cmg`` links caption phrases
(:mod:`mmre_cli.graphs.cmg`):

* ``similar`` (both directions, weight = cosine column = cosine): from each host text entity /
  noun-phrase node ``l`` to the distractor when the cosine reaches ``merge_cmg.threshold`` and the
  distractor would enter ``l``'s ``top_k`` caption matches (its cosine beats the ``top_k``-th best
  of ``l``'s own caption phrases); the host's existing edges are left as they are;
* ``cooccur`` (both directions, weight 1): from each host text node sharing the distractor's lemma
  (:func:`mmre_cli.graphs.cmg._match_keys`);

and only through nodes within one hop of the head or tail, so that the distractor lies inside the
2-hop context ``merge-cmg`` keeps (one that would fall outside it is never injected). Per host,
``--sample`` random phrases of the split's pool plus every phrase sharing a co-occurrence key with
the host are tried, and ``k`` of those that link are drawn at random (fewer when fewer link; the
log gives the mean injected). Since a phrase must beat the host's own ``top_k``-th caption match
to link, the distractors are phrases that look relevant to the sentence. Distractors carry only
these cross-modal edges (a caption phrase of the host's own caption usually has caption ``dep``
edges too): a structural cue the editor can see and the plain rule does not use.

Then, per seed, the frozen-feature GNN classifier (``RelationGNN``, the plain GATv2 + cross
entropy that ``train-agent`` fits as its reward model; ``train_gnn``'s hidden/layers/heads/
dropout/lr/weight decay, ``class_weights: none`` as ``configs/mnre_cpu.yaml``) is trained and scored
on val (peer micro-F1 without ``None``, :mod:`mmre_cli.learn.metrics`; the best epoch on val, as
``train-gnn`` keeps it; every condition of a seed starts from the same initial weights and
batch order, so the conditions are paired) four ways:

1. **clean**: the CMGs as built;
2. **noisy**: with the distractors, no editor;
3. **noisy + editor**: the distractor graphs (train and val) edited by the RL editor
   (:mod:`mmre_cli.learn.agent`, this repository's default reward: ``complexity: edits``), which is
   trained on the noisy train graphs against the *noisy* classifier of 2 (the reward model
   ``train-agent`` would have: fitted on the unedited, here noisy, graphs); the classifier is then
   trained on the edited train graphs and scored on the edited val graphs. ``--reward clean``
   rewards it with the classifier of 1 instead, which has never seen a distractor: a privileged
   reward model (it needs graphs known to be clean), between the real reward and the oracle;
4. **noisy + rule**: instead of the editor, delete the ``k`` unprotected nodes least similar
   (cosine) to the sentence, the mean ``x`` of the graph's text token nodes;
5. (``--oracle``) **noisy + oracle-reward editor**: the same editor trained against
   :class:`OracleClassifier`, a reward model that knows which nodes are distractors; it separates
   "can the editor learn these edits" from "does the classifier's likelihood reward them".

The editor's node deletions on val are scored against the injected nodes: precision = deleted
distractors / deleted nodes, recall = deleted distractors / injected distractors. The log also
gives the signal the editor's reward carries (``reward_signal``): the mean change of the reward
classifier's gold likelihood when one distractor, or one other unprotected node, is deleted, and
how often it exceeds an edit's cost ``μ/(λN)``.

Targets (issue 26): precision >= 0.8, recall >= 0.6, the editor recovers at least half the F1 the
distractors cost (``(F1_editor - F1_noisy) / (F1_clean - F1_noisy) >= 0.5``) and is at least as good
as the rule. One command (single thread; a train subset and few epochs keep it to ~1 h on a
shared 2-core CPU, printed with the results):

    MMRE_TORCH_THREADS=1 OMP_NUM_THREADS=1 python bench/distractors.py --cmg /work/runs/cpu/cmg \\
        --k 3 --seeds 13 14 15 --train-subset 4000 --epochs 8

writes a dated JSON log (``bench/results/distractors_<date>.json``) with every figure, the command
and the settings.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmre_cli.graphs.graph import EDGE_ATTR_COLUMNS, EDGE_ATTR_DIM, EDGE_TYPES, MODALITIES, NODE_KINDS, Graph  # noqa: E402

_K = {k: i for i, k in enumerate(NODE_KINDS)}
_M = {m: i for i, m in enumerate(MODALITIES)}
_E = {e: i for i, e in enumerate(EDGE_TYPES)}
_W, _COS = EDGE_ATTR_COLUMNS.index("weight"), EDGE_ATTR_COLUMNS.index("cosine")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def _hops_from_entities(g: Graph) -> np.ndarray:
    """Undirected hop distance of every node from the head/tail nodes (large when unreachable)."""
    from mmre_cli.graphs.graph import ROLE_OTHER

    dist = np.full(g.num_nodes, 10**6, np.int64)
    frontier = np.flatnonzero(g.node_role != ROLE_OTHER)
    dist[frontier] = 0
    src, dst = g.edge_index
    d = 0
    while frontier.size:
        d += 1
        mask = np.zeros(g.num_nodes, bool)
        mask[frontier] = True
        nxt = np.unique(np.concatenate([dst[mask[src]], src[mask[dst]]]))
        nxt = nxt[dist[nxt] > d]
        dist[nxt] = d
        frontier = nxt
    return dist


class PhrasePool:
    """Every donor phrase node of a split: unit ``x``, text, lemma, graph position and label; and an
    index from each co-occurrence key (:func:`mmre_cli.graphs.cmg._match_keys`) to the phrases with it.

    ``source``: ``caption`` takes the caption-phrase nodes; ``text`` takes the sentence's entity and
    noun-phrase nodes (the head and tail included), i.e. what a caption of *another tweet's* image
    that names that tweet's people, places and things would add."""

    def __init__(self, graphs: list[Graph], source: str = "caption"):
        from mmre_cli.graphs.cmg import _match_keys

        xs, self.graph, self.text, self.lemma, self.keys = [], [], [], [], {}
        for gi, g in enumerate(graphs):
            lemmas = g.meta.get("lemmas") or [""] * g.num_nodes
            if source == "caption":
                picked = g.node_kind == _K["caption_phrase"]
            else:
                picked = (g.node_modality == _M["text"]) & np.isin(g.node_kind, [_K["entity"], _K["noun_phrase"]])
            for n in np.flatnonzero(picked):
                for key in _match_keys(str(lemmas[n]), False):
                    self.keys.setdefault(key, []).append(len(xs))
                xs.append(g.x[n])
                self.graph.append(gi)
                self.text.append(g.node_text[n])
                self.lemma.append(str(lemmas[n]))
        self.raw = np.stack(xs).astype(np.float32)
        self.x = _unit(self.raw)
        self.graph = np.asarray(self.graph, np.int64)
        self.label = np.asarray([graphs[i].label for i in self.graph], np.int64)


def inject(
    g: Graph,
    gi: int,
    pool: PhrasePool,
    k: int,
    rng: np.random.Generator,
    top_k: int,
    threshold: float,
    hops: int,
    sample: int,
    other_relation: bool = False,
    as_text: bool = False,
) -> Graph:
    """``g`` with up to ``k`` distractors linked by merge-cmg's rules (module docstring): ``k`` drawn
    at random among the phrases (of other graphs) that would link, out of ``sample`` random phrases
    of the pool plus those sharing a co-occurrence key with the host; their node ids are listed in
    ``meta["distractors"]``."""
    from mmre_cli.graphs.cmg import _match_keys

    dist = _hops_from_entities(g)
    near = dist <= hops - 1
    text = g.node_modality == _M["text"]
    ents = np.flatnonzero(text & near & np.isin(g.node_kind, [_K["entity"], _K["noun_phrase"]]))
    co_nodes = np.flatnonzero(text & near)
    xn = _unit(g.x)
    caps = np.flatnonzero(g.node_kind == _K["caption_phrase"])
    # the top_k-th best cosine of each linkable entity to the host's own caption phrases
    bar = np.full(len(ents), -np.inf, np.float32)
    if caps.size and ents.size:
        kth = np.sort(xn[ents] @ xn[caps].T, axis=1)[:, ::-1]
        if kth.shape[1] >= top_k:
            bar = kth[:, top_k - 1]
    lemmas = list(g.meta.get("lemmas") or [""] * g.num_nodes)
    host_keys = {n: _match_keys(str(lemmas[n]), False) for n in co_nodes}
    co_pool = sorted({i for ks in host_keys.values() for key in ks for i in pool.keys.get(key, ())})
    cand = np.unique(np.concatenate([rng.integers(0, len(pool.graph), sample), np.asarray(co_pool, np.int64)]))
    cand = cand[pool.graph[cand] != gi]
    if other_relation:  # only donors whose gold relation differs from the host's: misleading phrases
        cand = cand[pool.label[cand] != g.label]
    sim_ok = np.zeros((len(cand), len(ents)), bool)
    cos = np.zeros((len(cand), len(ents)), np.float32)
    if ents.size and cand.size:
        cos = pool.x[cand] @ xn[ents].T
        sim_ok = (cos >= threshold) & (cos > bar[None, :])
    co_set = set(co_pool)
    ok = sim_ok.any(1) | np.isin(cand, list(co_set))
    picks = rng.permutation(np.flatnonzero(ok))[:k]
    chosen = []  # (x, text, lemma, [(node, type, label, cos)])
    for p in picks:
        i = int(cand[p])
        links = [(int(n), "similar", "", float(c)) for n, c, o in zip(ents, cos[p], sim_ok[p]) if o]
        mk = _match_keys(pool.lemma[i], False)
        for n, ks in host_keys.items():
            if mk & ks:
                links.append((int(n), "cooccur", sorted(mk & ks)[0], float(xn[n] @ pool.x[i])))
        chosen.append((pool.raw[i], pool.text[i], pool.lemma[i], links))
    if not chosen:
        out = replace(g, meta=dict(g.meta))
        out.meta["distractors"] = []
        return out
    n0, m = g.num_nodes, len(chosen)
    src, dst, et, el, attr = [], [], [], [], []
    for j, (_, _, _, links) in enumerate(chosen):
        for node, typ, lab, c in links:
            for a, b in ((node, n0 + j), (n0 + j, node)):
                row = np.zeros(EDGE_ATTR_DIM, np.float32)
                row[_COS] = c
                row[_W] = c if typ == "similar" else 1.0
                src.append(a), dst.append(b), et.append(_E[typ]), el.append(lab), attr.append(row)
    meta = dict(g.meta)
    for key, fill in (
        ("spans", [-1, -1]),
        ("lemmas", None),
        ("source_index", -1),
        ("modalities", "text" if as_text else "caption"),
    ):
        val = meta.get(key)
        if isinstance(val, list) and len(val) == n0:
            meta[key] = val + ([c[2] for c in chosen] if key == "lemmas" else [fill] * m)
    meta["distractors"] = list(range(n0, n0 + m))
    meta["distractor_texts"] = [c[1] for c in chosen]
    return Graph(
        graph_id=g.graph_id,
        node_kind=np.concatenate(
            [g.node_kind, np.full(m, _K["noun_phrase" if as_text else "caption_phrase"], np.int8)]
        ),
        node_modality=np.concatenate([g.node_modality, np.full(m, _M["text" if as_text else "caption"], np.int8)]),
        node_role=np.concatenate([g.node_role, np.zeros(m, np.int8)]),
        node_text=list(g.node_text) + [c[1] for c in chosen],
        box=np.concatenate([g.box, np.full((m, 4), np.nan, np.float32)]),
        edge_index=np.concatenate([g.edge_index, np.array([src, dst], np.int64)], 1),
        edge_type=np.concatenate([g.edge_type, np.array(et, np.int8)]),
        edge_label=list(g.edge_label) + el,
        edge_attr=np.concatenate([g.edge_attr, np.stack(attr)]),
        x=np.concatenate([g.x, np.stack([c[0] for c in chosen]).astype(np.float32)]),
        label=g.label,
        meta=meta,
    )


def context_only(g: Graph) -> Graph:
    """``g`` with zero features on the head, the tail and their tokens (the protected nodes): a
    classifier trained on such graphs must take its evidence from the other nodes."""
    from mmre_cli.graphs.pyg import protected_span_nodes

    x = np.array(g.x, np.float32, copy=True)
    x[protected_span_nodes(g)] = 0.0
    return replace(g, x=x)


def plain_rule(g: Graph, k: int) -> Graph:
    """Delete the ``k`` unprotected nodes least similar (cosine) to the sentence (mean ``x`` of the
    text token nodes; of all text nodes when there is no token node)."""
    from mmre_cli.graphs.pyg import protected_span_nodes
    from mmre_cli.graphs.refine import apply_edit_record

    text = g.node_modality == _M["text"]
    tok = text & (g.node_kind == _K["token"])
    sel = tok if tok.any() else text
    sent = _unit(g.x[sel].mean(0)[None])[0]
    cos = _unit(g.x) @ sent
    free = np.flatnonzero(~protected_span_nodes(g))
    drop = free[np.argsort(cos[free], kind="stable")[:k]]
    return apply_edit_record(g, {"deleted_nodes": sorted(int(i) for i in drop), "deleted_edges": [], "added_edges": []})


def deletion_scores(noisy: list[Graph], edited: list[Graph]) -> dict:
    """Precision / recall of the node deletions against the injected distractors."""
    hit = deleted = injected = 0
    for g0, g1 in zip(noisy, edited):
        dist = set(g0.meta.get("distractors", []))
        dead = set((g1.meta.get("edits") or {}).get("deleted_nodes", []))
        hit += len(dist & dead)
        deleted += len(dead)
        injected += len(dist)
    return {
        "precision": hit / deleted if deleted else float("nan"),
        "recall": hit / injected if injected else float("nan"),
        "deleted_nodes": deleted,
        "deleted_distractors": hit,
        "injected": injected,
        "deleted_per_graph": deleted / max(1, len(noisy)),
    }


def deletion_signal(clf, graphs: list[Graph], none_id: int, lam: float, mu: float, limit: int = 300) -> dict:
    """What the editor's reward can see: the change of the reward classifier's gold likelihood when
    one node is deleted, for each injected distractor and each other unprotected node of the first
    ``limit`` graphs with distractors; and how often it beats one edit's cost ``mu / (lam N)``."""
    import torch
    from torch_geometric.data import Batch

    from mmre_cli.graphs.pyg import graph_to_data, protected_span_nodes
    from mmre_cli.graphs.refine import apply_edit_record
    from mmre_cli.learn.reward import graph_accuracy

    def lik(gs):
        b = Batch.from_data_list([graph_to_data(g) for g in gs])
        with torch.no_grad():
            return graph_accuracy(clf(b), b.y, none_id).numpy()

    dd, do, pays_d, pays_o = [], [], [], []
    for g in [g for g in graphs if g.meta.get("distractors")][:limit]:
        free = [int(i) for i in np.flatnonzero(~protected_span_nodes(g))]
        delta = lik([apply_edit_record(g, {"deleted_nodes": [i]}) for i in free]) - lik([g])[0]
        cost = mu / (lam * g.num_nodes)
        for i, d in zip(free, delta):
            (dd if i in g.meta["distractors"] else do).append(float(d))
            (pays_d if i in g.meta["distractors"] else pays_o).append(bool(d > cost))
    return {
        "graphs": min(limit, len(graphs)),
        "distractor_mean": float(np.mean(dd)),
        "other_mean": float(np.mean(do)),
        "distractor_pays": float(np.mean(pays_d)),
        "other_pays": float(np.mean(pays_o)),
        "distractors": len(dd),
        "others": len(do),
    }


def train_classifier(train: list[Graph], val: list[Graph], gcfg: dict, labels, none_id: int, seed: int, epochs: int):
    """The plain GATv2 classifier (``train-agent``'s reward model) on ``train``; best val epoch."""
    import torch

    from mmre_cli.learn.trainer import evaluate, fit_classifier
    from mmre_cli.pipeline.classifiers import SWITCH_KEYS, build_classifier
    from mmre_cli.pipeline.learning import loader

    in_dim = int(train[0].x.shape[1])
    torch.manual_seed(seed)  # the initial weights too: every condition of a seed starts from the same ones
    clf = build_classifier("gnn", in_dim, len(labels), {k: v for k, v in gcfg.items() if k not in SWITCH_KEYS})
    fit_classifier(
        clf,
        loader(train, gcfg["batch_size"], True, seed=seed),
        loader(val, gcfg["batch_size"], False),
        epochs=epochs,
        lr=gcfg["lr"],
        weight_decay=gcfg["weight_decay"],
        class_weights="none",
        none_id=none_id,
        seed=seed,
        num_classes=len(labels),
    )
    clf = getattr(clf, "module", clf).eval()
    return clf, evaluate(clf, loader(val, gcfg["batch_size"], False), none_id)


class OracleClassifier:
    r"""A stand-in reward model that knows the answer: with ``r`` of the graph's ``r0`` injected
    distractors left, the gold likelihood is :math:`0.9 - 0.6\,r/r_0` (0.9 with none injected),
    so every distractor deleted raises it by :math:`0.6/r_0` (0.2 for ``r0 = 3``, 0.1 for 6), more
    than an edit's cost, and any other edit gains nothing. It tests the editor's machinery (policy,
    edit cost, stop decision) on real graphs apart from whether a classifier's likelihood carries
    the signal; it reads ``is_distractor [N]`` and ``n_injected [B]`` that :func:`distractor_loader`
    adds."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def __call__(self, batch):
        import math

        import torch
        from torch_geometric.utils import scatter

        left = scatter(batch.is_distractor.float(), batch.batch, dim=0, dim_size=batch.num_graphs, reduce="sum")
        p = 0.9 - 0.6 * left / batch.n_injected.float().clamp(min=1)
        logits = torch.zeros(batch.num_graphs, self.num_classes)
        gold = torch.log(p / (1 - p)) + math.log(self.num_classes - 1)  # softmax puts p on the gold class
        logits[torch.arange(batch.num_graphs), batch.y.clamp(min=0)] = gold
        return logits


def distractor_loader(graphs: list[Graph], batch_size: int, seed: int):
    """A shuffled PyG loader whose ``Data`` carry ``is_distractor [N]`` (for :class:`OracleClassifier`)."""
    import torch
    from torch_geometric.loader import DataLoader

    from mmre_cli.graphs.pyg import graph_to_data

    data = []
    for g in graphs:
        if g.label < 0:
            continue
        d = graph_to_data(g)
        flag = torch.zeros(g.num_nodes, dtype=torch.bool)
        flag[list(g.meta.get("distractors", []))] = True
        d.is_distractor = flag
        d.n_injected = torch.tensor([int(flag.sum())])
        data.append(d)
    return DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))


def train_editor(clf, train: list[Graph], acfg, seed: int, episodes: int, batch_size: int, oracle: bool = False):
    import torch

    from mmre_cli.learn.agent import agent_step
    from mmre_cli.learn.policy import GraphEditAgent
    from mmre_cli.pipeline.learning import loader

    torch.manual_seed(seed)
    agent = GraphEditAgent(int(train[0].x.shape[1]), max_pool=True)
    opt = torch.optim.Adam(agent.parameters(), lr=acfg.lr)
    logs = []
    for ep in range(episodes):
        batches = (
            distractor_loader(train, batch_size, seed + 1 + ep)
            if oracle
            else loader(train, batch_size, True, seed=seed + 1 + ep)
        )
        for batch in batches:
            logs.append(agent_step(agent, clf, batch, opt, acfg))
    tail = logs[-max(1, len(logs) // 10) :]
    summary = {
        key: float(np.mean([r[key] for r in tail]))
        for key in ("reward_gain", "steps", "node_filter_ratio", "edge_adjust_ratio", "acc")
    }
    return agent.eval(), summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cmg", type=Path, default=Path("/work/runs/cpu/cmg"), help="merge-cmg output (MNRE-2)")
    ap.add_argument("--k", type=int, default=3, help="distractors per graph")
    ap.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15])
    ap.add_argument("--train-subset", type=int, default=4000, help="train graphs used (0 = all)")
    ap.add_argument("--epochs", type=int, default=8, help="classifier epochs")
    ap.add_argument("--episodes", type=int, default=3, help="editor passes over the train graphs")
    ap.add_argument("--max-steps", type=int, default=0, help="editor actions per graph (0 = k + 1)")
    ap.add_argument("--mu", type=float, default=None, help="editor's mu (default: train_agent.mu)")
    ap.add_argument(
        "--source",
        choices=("caption", "text"),
        default="caption",
        help="donor phrases: other images' caption phrases, or other tweets' entity / noun-phrase nodes",
    )
    ap.add_argument("--other-relation", action="store_true", help="donors only from instances of another relation")
    ap.add_argument("--as-text", action="store_true", help="inject as text noun-phrase nodes, not caption phrases")
    ap.add_argument(
        "--context-only",
        action="store_true",
        help="zero the head, tail and their tokens' features for every classifier (it must read the context)",
    )
    ap.add_argument(
        "--reward",
        choices=("noisy", "clean"),
        default="noisy",
        help="the editor's reward model: the classifier fitted on the noisy train graphs (what train-agent "
        "would have), or the one fitted on the clean graphs (privileged: it has never seen a distractor)",
    )
    ap.add_argument("--skip-editor", action="store_true", help="clean vs noisy only (to choose k and the source)")
    ap.add_argument("--sample", type=int, default=4000, help="random pool phrases tried per graph")
    ap.add_argument(
        "--oracle",
        action="store_true",
        help="also train an editor against OracleClassifier (a reward that knows the distractors)",
    )
    ap.add_argument("--out", type=Path, default=None, help="JSON log (default bench/results/distractors_<date>.json)")
    args = ap.parse_args()

    import torch

    from mmre_cli.learn.trainer import evaluate
    from mmre_cli.params import DEFAULTS
    from mmre_cli.pipeline.devices import cpu_threads
    from mmre_cli.pipeline.editor import agent_config, edit_only
    from mmre_cli.pipeline.learning import graphs_by_split, label_info, loader

    cpu_threads()
    t_all = time.time()
    params = copy.deepcopy(DEFAULTS)
    mcfg = params["merge_cmg"]
    man = json.loads((args.cmg / "params.effective.yaml").with_name("manifest.json").read_text())
    import yaml

    eff = yaml.safe_load((args.cmg / "params.effective.yaml").read_text())
    mcfg.update(eff.get("merge_cmg", {}))
    gcfg = params["train_gnn"]
    labels, none_id = label_info(args.cmg)
    groups = graphs_by_split(args.cmg, ["train", "val"])
    train_all, val = [g for g in groups["train"] if g.label >= 0], [g for g in groups["val"] if g.label >= 0]
    rng0 = np.random.default_rng(0)
    train = (
        train_all
        if not args.train_subset
        else [train_all[i] for i in sorted(rng0.permutation(len(train_all))[: args.train_subset])]
    )
    acfg = agent_config(params["train_agent"], none_id)
    acfg.max_steps = args.max_steps or args.k + 1
    if args.mu is not None:
        acfg.mu = args.mu
    log = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "MMRE_TORCH_THREADS=1 OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "cmg": str(args.cmg),
        "encoder": man.get("encoder"),
        "k": args.k,
        "source": args.source,
        "other_relation": args.other_relation,
        "as_text": args.as_text,
        "context_only": args.context_only,
        "reward": args.reward,
        "train_graphs": len(train),
        "train_graphs_all": len(train_all),
        "val_graphs": len(val),
        "classifier": {
            "model": "RelationGNN (GATv2 + CE, train-agent's reward model)",
            "epochs": args.epochs,
            "class_weights": "none",
            "selection": "best val epoch (as train-gnn)",
            **{k: gcfg[k] for k in ("hidden", "layers", "heads", "dropout", "lr", "weight_decay", "batch_size")},
        },
        "editor": {**acfg.to_dict(), "episodes": args.episodes},
        "merge_cmg": mcfg,
        "seeds": {},
    }
    print(
        f"{len(train)} train graphs (of {len(train_all)}), {len(val)} val; k = {args.k}; "
        f"classifier {args.epochs} epochs; editor {args.episodes} episodes, max_steps {acfg.max_steps}, "
        f"lam {acfg.lam}, mu {acfg.mu}, complexity {acfg.complexity}",
        flush=True,
    )
    out = args.out or Path(__file__).resolve().parent / "results" / f"distractors_{dt.date.today().isoformat()}.json"
    partial = out.with_name(out.stem + ".partial.json")
    rules = (mcfg["top_k"], mcfg["threshold"], mcfg["hops"])
    for seed in args.seeds:
        t0 = time.time()
        rng = np.random.default_rng(seed)
        noisy = {}
        for name, gs in (("train", train), ("val", val)):
            pool = PhrasePool(gs, args.source)
            noisy[name] = [
                inject(g, i, pool, args.k, rng, *rules, args.sample, args.other_relation, args.as_text)
                for i, g in enumerate(gs)
            ]
        clean = {"train": train, "val": val}
        if args.context_only:
            clean = {k: [context_only(g) for g in gs] for k, gs in clean.items()}
            noisy = {k: [context_only(g) for g in gs] for k, gs in noisy.items()}
        injected = float(np.mean([len(g.meta["distractors"]) for g in noisy["val"]]))
        row: dict = {
            "injected_per_val_graph": injected,
            "injected_per_train_graph": float(np.mean([len(g.meta["distractors"]) for g in noisy["train"]])),
        }
        torch.manual_seed(seed)
        clf_clean, s_clean = train_classifier(clean["train"], clean["val"], gcfg, labels, none_id, seed, args.epochs)
        clf_noisy, s_noisy = train_classifier(noisy["train"], noisy["val"], gcfg, labels, none_id, seed, args.epochs)
        reward_clf = clf_clean if args.reward == "clean" else clf_noisy
        if args.reward == "clean":
            row["f1_clean_classifier_on_noisy"] = round(
                float(evaluate(clf_clean, loader(noisy["val"], gcfg["batch_size"], False), none_id)["micro_f1"]), 4
            )
        row["reward_signal"] = deletion_signal(reward_clf, noisy["val"], none_id, acfg.lam, acfg.mu)
        if args.skip_editor:
            row.update(f1_clean=round(float(s_clean["micro_f1"]), 4), f1_noisy=round(float(s_noisy["micro_f1"]), 4))
            row["seconds"] = round(time.time() - t0, 1)
            log["seeds"][str(seed)] = row
            sig = row["reward_signal"]
            on_noisy = row.get("f1_clean_classifier_on_noisy")
            print(
                f"seed {seed}: F1 clean {row['f1_clean']:.4f} noisy {row['f1_noisy']:.4f} ({injected:.2f} injected"
                + (f"; the clean classifier on the noisy val graphs {on_noisy:.4f}" if on_noisy is not None else "")
                + "); "
                f"deleting one distractor {sig['distractor_mean']:+.4f}, another node {sig['other_mean']:+.4f} "
                f"| {row['seconds']:.0f}s",
                flush=True,
            )
            continue
        t_ed = time.time()
        agent, ed_log = train_editor(
            reward_clf, noisy["train"], acfg, seed, args.episodes, params["train_agent"]["batch_size"]
        )
        ed_train, ed_val = edit_only(noisy["train"], agent, acfg), edit_only(noisy["val"], agent, acfg)
        row["editor_train_s"] = round(time.time() - t_ed, 1)
        row["editor_last10pct"] = ed_log
        row["editor_val"] = deletion_scores(noisy["val"], ed_val)
        row["editor_train"] = deletion_scores(noisy["train"], ed_train)
        _, s_edit = train_classifier(ed_train, ed_val, gcfg, labels, none_id, seed, args.epochs)
        if args.oracle:
            t_or = time.time()
            oagent, or_log = train_editor(
                OracleClassifier(len(labels)),
                noisy["train"],
                acfg,
                seed,
                args.episodes,
                params["train_agent"]["batch_size"],
                oracle=True,
            )
            or_train, or_val = edit_only(noisy["train"], oagent, acfg), edit_only(noisy["val"], oagent, acfg)
            row["oracle_editor_train_s"] = round(time.time() - t_or, 1)
            row["oracle_editor_last10pct"] = or_log
            row["oracle_editor_val"] = deletion_scores(noisy["val"], or_val)
            _, s_or = train_classifier(or_train, or_val, gcfg, labels, none_id, seed, args.epochs)
            row["f1_oracle_editor"] = round(float(s_or["micro_f1"]), 4)
        ru_train, ru_val = (
            [plain_rule(g, args.k) for g in noisy["train"]],
            [plain_rule(g, args.k) for g in noisy["val"]],
        )
        row["rule_val"] = deletion_scores(noisy["val"], ru_val)
        _, s_rule = train_classifier(ru_train, ru_val, gcfg, labels, none_id, seed, args.epochs)
        for name, s in (("clean", s_clean), ("noisy", s_noisy), ("editor", s_edit), ("rule", s_rule)):
            row[f"f1_{name}"] = round(float(s["micro_f1"]), 4)
        lost = row["f1_clean"] - row["f1_noisy"]
        row["recovered_editor"] = (row["f1_editor"] - row["f1_noisy"]) / lost if lost > 0 else float("nan")
        row["recovered_rule"] = (row["f1_rule"] - row["f1_noisy"]) / lost if lost > 0 else float("nan")
        row["seconds"] = round(time.time() - t0, 1)
        log["seeds"][str(seed)] = row
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(log, indent=2, default=float) + "\n")  # seeds so far, overwritten at the end
        ev = row["editor_val"]
        print(
            f"seed {seed}: F1 clean {row['f1_clean']:.4f} noisy {row['f1_noisy']:.4f} editor {row['f1_editor']:.4f} "
            f"rule {row['f1_rule']:.4f} | editor on val: P {ev['precision']:.3f} R {ev['recall']:.3f} "
            f"({ev['deleted_per_graph']:.2f} deleted/graph, {injected:.2f} injected) | rule P "
            f"{row['rule_val']['precision']:.3f} R {row['rule_val']['recall']:.3f} | {row['seconds']:.0f}s",
            flush=True,
        )
        if args.oracle:
            ov = row["oracle_editor_val"]
            print(
                f"  editor with the oracle reward: P {ov['precision']:.3f} R {ov['recall']:.3f} "
                f"({ov['deleted_per_graph']:.2f} deleted/graph), F1 {row['f1_oracle_editor']:.4f}",
                flush=True,
            )
        sig = row["reward_signal"]
        print(
            f"  reward signal (noisy classifier, val): deleting one distractor changes the gold likelihood by "
            f"{sig['distractor_mean']:+.4f} on average (pays more than an edit's cost in "
            f"{sig['distractor_pays']:.1%}), "
            f"one other node {sig['other_mean']:+.4f} ({sig['other_pays']:.1%})",
            flush=True,
        )
    rows = list(log["seeds"].values())

    def write_log() -> None:
        log["seconds"] = round(time.time() - t_all, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(log, indent=2, default=float) + "\n")
        partial.unlink(missing_ok=True)
        print(f"log: {out}  ({log['seconds']:.0f} s)")

    if args.skip_editor:
        write_log()
        return

    def ms(key, sub=None):
        vals = np.array([(r[key][sub] if sub else r[key]) for r in rows], float)
        return {"mean": round(float(np.nanmean(vals)), 4), "std": round(float(np.nanstd(vals)), 4)}

    log["summary"] = {
        "f1_clean": ms("f1_clean"),
        "f1_noisy": ms("f1_noisy"),
        "f1_editor": ms("f1_editor"),
        "f1_rule": ms("f1_rule"),
        "editor_precision": ms("editor_val", "precision"),
        "editor_recall": ms("editor_val", "recall"),
        "rule_precision": ms("rule_val", "precision"),
        "rule_recall": ms("rule_val", "recall"),
        "recovered_editor": ms("recovered_editor"),
        "recovered_rule": ms("recovered_rule"),
    }
    if args.oracle:
        log["summary"].update(
            f1_oracle_editor=ms("f1_oracle_editor"),
            oracle_precision=ms("oracle_editor_val", "precision"),
            oracle_recall=ms("oracle_editor_val", "recall"),
        )
    s = log["summary"]
    lost = s["f1_clean"]["mean"] - s["f1_noisy"]["mean"]
    rec = (s["f1_editor"]["mean"] - s["f1_noisy"]["mean"]) / lost if lost > 0 else float("nan")
    log["targets"] = {
        "distractors_cost_2_points": lost >= 0.02,
        "precision_0.8": s["editor_precision"]["mean"] >= 0.8,
        "recall_0.6": s["editor_recall"]["mean"] >= 0.6,
        "recovers_half": rec >= 0.5,
        "editor_at_least_rule": s["f1_editor"]["mean"] >= s["f1_rule"]["mean"],
        "recovered_of_mean_loss": rec,
    }
    print(json.dumps({"summary": s, "targets": log["targets"]}, indent=1))
    write_log()


if __name__ == "__main__":
    main()
