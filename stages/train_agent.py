"""DVC stage ``train_agent``: the reward classifier, then the RL graph editor (paper Alg. 2).

``train_agent`` runs before ``train_gnn``, so it owns the classifier its reward needs:

1. a :class:`~mmre_cli.learn.gnn.RelationGNN` is fitted on the *unedited* training CMGs for
   ``warmup_epochs`` epochs (checkpoint chosen on val micro-F1);
2. with that classifier frozen (eval mode, a deterministic reward), the
   :class:`~mmre_cli.learn.policy.GraphEditAgent` is trained for ``episodes`` passes over the
   training graphs, one batched episode per batch: reward
   ``R = λ·Acc(G') − μ·Complexity(G')`` with Acc the classifier's likelihood of the gold label
   (``reward_mode``; gold-``None`` graphs scaled by ``none_weight``) and, by default
   (``complexity: edits``), ``Complexity = edits / nodes``: each edit costs ``μ/N`` and must buy
   more gold likelihood than that, ``stop`` costs nothing; a TD(0) critic and a two-level
   policy-gradient actor (stop or edit, then which edit).

With ``reward_model`` set to a trained ``train-gnn`` model folder (one model, e.g. the fine-tuned
classifier of a first run), that model is the reward classifier instead and step 1 is skipped:
Alg. 1's next round with the classifier that is used. A model that re-encodes the sentence gets
batches with the words, and a deleted token's words are masked out of its encoder's attention
(:func:`mmre_cli.learn.editing.masked_words`), as they will be for the final classifier.

Freezing the classifier while the agent learns is a simplification of the paper's Algorithm 1
loop (which alternates the two); train-gnn then fits the final classifier on the edited and
diffused graphs. Per step the node-filter ratio, edge-adjust ratio, reward and F1 are logged to
``steps.csv``, and ``agent_steps.csv`` + ``agent_steps.png`` (into ``--out`` and ``--plots``: DVC plots,
the paper's Figs. 3–4).
With ``enabled: false`` (the "w/o RL" ablation) only the classifier is fitted.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch

from mmre_cli.errors import MmreError
from mmre_cli.graphs.graph import NODE_KINDS
from mmre_cli.hashing import sha256_file
from mmre_cli.learn.agent import agent_step
from mmre_cli.learn.checkpoint import save_checkpoint
from mmre_cli.learn.policy import GraphEditAgent
from mmre_cli.learn.resume import STATE_DIR, load_state, save_state
from mmre_cli.learn.trainer import evaluate, fit_classifier
from mmre_cli.params import declared, params_hash, stage_view
from mmre_cli.pipeline.classifiers import SWITCH_KEYS, build_classifier
from mmre_cli.pipeline.editor import EDITOR_PARAMS, agent_config, edit_only
from mmre_cli.pipeline.learning import TrainingSetup, loader, needs_words
from mmre_cli.pipeline.records import finish, write_csv, write_plots
from mmre_cli.plots import curves_png
from mmre_cli.reporting import Reporter, reporter_or_null

#: the params this stage reads (dvc.yaml lists the same; tests/test_params_declared.py);
#: the reward classifier is built and trained with train_gnn's size, lr, weight decay and class weights
PARAMS = declared(
    *EDITOR_PARAMS,
    "train_agent.episodes",
    "train_agent.warmup_epochs",
    "train_agent.batch_size",
    "train_agent.seed",
    "train_agent.rounds",
    "train_agent.round_epochs",
    "train_agent.reward_model",
    "train_gnn.hidden",
    "train_gnn.layers",
    "train_gnn.heads",
    "train_gnn.dropout",
    "train_gnn.lr",
    "train_gnn.weight_decay",
    "train_gnn.class_weights",
)


#: the per-step columns plotted (``agent_steps.csv`` / ``.png``)
AGENT_CURVE = ("step", "node_filter_ratio", "edge_adjust_ratio", "reward", "acc", "complexity")


def _draw_agent_curve(rows: list[dict], path: Path) -> Path:
    return curves_png(
        rows,
        "step",
        [["node_filter_ratio", "edge_adjust_ratio"], ["reward", "acc", "complexity"]],
        path,
        "train-agent: what the editor does per step (the paper's Figs. 3-4)",
        ["share of the graph", "reward terms"],
        smooth=max(1, len(rows) // 50),
    )


def _draw_rounds(rows: list[dict], path: Path) -> Path:
    return curves_png(
        rows,
        "round",
        [["node_filter_ratio", "edge_adjust_ratio", "add_rate"], ["val_f1_edited", "val_f1_unedited"]],
        path,
        "train-agent rounds (Alg. 1): edits on val, and the classifier on edited vs unedited val",
        ["share (val)", "val micro-F1"],
    )


def edit_diagnostics(before: list, after: list) -> dict:
    """What the editor did to a list of graphs: node-filter ratio (deleted nodes / nodes),
    edge-adjust ratio ((deleted + added directed edges) / edges), add rate (graphs with an added
    edge / graphs), added edges per graph, and the deleted nodes by kind."""
    nodes = sum(g.num_nodes for g in before)
    edges = sum(g.num_edges for g in before)
    deleted, added, with_add, gone_edges = 0, 0, 0, 0
    kinds = {k: 0 for k in NODE_KINDS}
    for g0, g1 in zip(before, after):
        edits = g1.meta.get("edits", {}) or {}
        dead = edits.get("deleted_nodes", [])
        deleted += len(dead)
        for i in dead:
            kinds[NODE_KINDS[int(g0.node_kind[int(i)])]] += 1
        add = 2 * len(edits.get("added_edges", []))
        added += add
        with_add += add > 0
        gone_edges += g0.num_edges - (g1.num_edges - add)
    return {
        "node_filter_ratio": deleted / max(1, nodes),
        "edge_adjust_ratio": (gone_edges + added) / max(1, edges),
        "add_rate": with_add / max(1, len(before)),
        "added_edges_per_graph": added / max(1, len(before)),
        "deleted_kinds": kinds,
    }


def _classifier_round(clf, agent, acfg, train, val, cfg, gcfg, none_id, num_classes, fabric, reporter, rnd):
    """One classifier half-round of Alg. 1: the editor edits the train and val graphs, the
    reward classifier trains ``round_epochs`` more epochs on the edited train graphs (its state
    carried over), and the round's diagnostics are measured on val."""
    device = fabric.device
    agent.cpu()
    edited_train, edited_val = edit_only(train, agent, acfg), edit_only(val, agent, acfg)
    agent.to(device)
    fit_classifier(
        clf,
        loader(edited_train, cfg["batch_size"], True, seed=cfg["seed"] + 100 + rnd),
        loader(edited_val, cfg["batch_size"], False),
        epochs=max(1, int(cfg["round_epochs"])),
        lr=gcfg["lr"],
        weight_decay=gcfg["weight_decay"],
        class_weights=gcfg["class_weights"],
        none_id=none_id,
        seed=cfg["seed"] + 100 + rnd,
        fabric=fabric,
        num_classes=num_classes,
    )
    clf = getattr(clf, "module", clf)
    clf.eval()
    clf.to(device)
    f1_edited = evaluate(clf, loader(edited_val, cfg["batch_size"], False), none_id)["micro_f1"]
    f1_plain = evaluate(clf, loader(val, cfg["batch_size"], False), none_id)["micro_f1"]
    digest = hashlib.sha256(b"".join(v.detach().cpu().numpy().tobytes() for v in clf.state_dict().values()))
    edits = edit_diagnostics(val, edited_val)
    row = {
        "round": rnd + 1,
        **{k: v for k, v in edits.items() if k != "deleted_kinds"},
        "val_f1_edited": f1_edited,
        "val_f1_unedited": f1_plain,
        "classifier_sha256": digest.hexdigest()[:16],
    }
    row.update({f"deleted_{k}": v for k, v in edits["deleted_kinds"].items()})
    return clf, row


def _check_reward_model(folder: Path, cfg: dict) -> None:
    """Refuse a ``reward_model`` that cannot serve, before any graph is read."""
    if int(cfg["rounds"]) > 1:
        raise MmreError(
            "train_agent.reward_model with rounds > 1: a round retrains the fitted GATv2, not a trained "
            "model; set rounds: 1, or leave reward_model empty"
        )
    if not (folder / "model.json").is_file():
        members = sorted(p.parent.name for p in folder.glob("members/*/model.json"))
        hint = f" (an ensemble: name one member, e.g. {folder / 'members' / members[0]})" if members else ""
        raise MmreError(f"train_agent.reward_model: {folder} holds no train-gnn model{hint}")


def _trained_reward_model(folder: Path, labels: list[str], val: list, cfg: dict, none_id: int, reporter):
    """``(model, history, words)``: a trained train-gnn model as the reward classifier (eval mode),
    its val micro-F1 measured here on the unedited graphs as the one history row, and whether it
    re-encodes the sentence (its batches need the words)."""
    from mmre_cli.learn.checkpoint import load_checkpoint

    clf, meta = load_checkpoint(folder, "model")
    if list(meta.get("labels", [])) != list(labels):
        raise MmreError(f"train_agent.reward_model: {folder} was trained on other labels than these graphs")
    clf.eval()
    words = needs_words(clf)
    f1 = evaluate(clf, loader(val, cfg["batch_size"], False, words=words), none_id)["micro_f1"]
    reporter.info(f"reward classifier: {folder} (val micro-F1 {f1:.4f} on the unedited graphs)")
    return clf, [{"epoch": 0, "val_micro_f1": f1}], words


def run(
    *,
    cmg: Path,
    out: Path,
    params: dict,
    gpus: int = 0,
    stats: Path | None = None,
    reporter: Reporter | None = None,
    plots: Path | None = None,
    nodes: int = 1,
    resume: bool = False,
) -> dict:
    """Run the stage; returns (and writes) its statistics.

    The training state is saved under ``out/checkpoint`` after every warm-up epoch
    (``warmup/``), every episode and every round's classifier (``agent/``: the editor, the reward
    classifier, Adam, the random states, the step and round logs); ``resume=True`` continues from
    it (refused if written with other params or another CMG). Removed once the outputs are written.
    """
    cmg, out = Path(cmg), Path(out)
    params = stage_view(params, PARAMS)
    cfg, gcfg = params["train_agent"], params["train_gnn"]
    if cfg["reward_model"]:
        _check_reward_model(Path(cfg["reward_model"]), cfg)
    setup = TrainingSetup(cmg, "merge-cmg", gpus, cfg["seed"], reporter_or_null(reporter), nodes=nodes)
    fabric, reporter, labels, none_id = setup.fabric, setup.reporter, setup.labels, setup.none_id
    train, val, in_dim = setup.train, setup.val, setup.in_dim
    state_dir = out / STATE_DIR
    fingerprint = f"{params_hash(params, PARAMS)}:{sha256_file(cmg / 'manifest.json')[:16]}"
    words = False
    if cfg["reward_model"]:
        # a reward model retrained in the same folder must not continue a half-trained editor
        fingerprint += f":{sha256_file(Path(cfg['reward_model']) / 'model.json')[:16]}"
        clf, history, words = _trained_reward_model(Path(cfg["reward_model"]), labels, val, cfg, none_id, reporter)
        train_loader = setup.train_loader(cfg["batch_size"], cfg["seed"], words)
    else:
        # the reward classifier is the plain GATv2 + cross-entropy whatever train_gnn's switches say
        # (graph_encoder / fusion / loss shape the final classifier only)
        clf = build_classifier("gnn", in_dim, len(labels), {k: v for k, v in gcfg.items() if k not in SWITCH_KEYS})
        train_loader = setup.train_loader(cfg["batch_size"], cfg["seed"])
        reporter.info(f"reward classifier: {cfg['warmup_epochs']} epoch(s) on {len(train)} unedited train graphs")
        _, history = fit_classifier(
            clf,
            train_loader,
            loader(val, cfg["batch_size"], False),
            epochs=max(1, cfg["warmup_epochs"]),
            lr=gcfg["lr"],
            weight_decay=gcfg["weight_decay"],
            class_weights=gcfg["class_weights"],
            none_id=none_id,
            seed=cfg["seed"],
            reporter=reporter,
            fabric=fabric,
            num_classes=len(labels),
            state_dir=state_dir / "warmup",
            resume=resume,
            fingerprint=fingerprint,
        )
    clf = getattr(clf, "module", clf)
    clf.eval()
    meta = {"labels": labels, "none_id": none_id, "history": history}
    steps_log: list[dict] = []
    rounds_log: list[dict] = []
    if cfg["enabled"]:
        acfg = agent_config(cfg, none_id)
        agent = GraphEditAgent(in_dim, max_pool=True).to(fabric.device)
        clf.to(fabric.device)
        optimizer = torch.optim.Adam(agent.parameters(), lr=cfg["lr"])

        def average_gradients(module) -> None:
            for p in module.parameters():
                if p.grad is not None:
                    p.grad.copy_(fabric.all_reduce(p.grad, reduce_op="mean"))

        hook = average_gradients if fabric.world_size > 1 else None
        step = 0
        batches = len(train_loader)
        rounds = max(1, int(cfg["rounds"]))
        done = 0  # episodes finished, over all rounds (a round's classifier counts with its last episode)
        restored = (
            load_state(
                state_dir / "agent",
                fingerprint=fingerprint,
                modules={"agent": agent, "clf": clf},
                optimizers={"adam": optimizer},
            )
            if resume
            else None
        )
        if restored is not None:
            saved = restored[0]
            done, step, steps_log, rounds_log = saved["done"], saved["step"], saved["steps_log"], saved["rounds_log"]
            reporter.info(f"resuming after {done} of {rounds * cfg['episodes']} episode(s) (state in {state_dir})")

        def checkpoint() -> None:
            if fabric.is_global_zero:
                save_state(
                    state_dir / "agent",
                    fingerprint=fingerprint,
                    modules={"agent": agent, "clf": clf},
                    optimizers={"adam": optimizer},
                    meta={"done": done, "step": step, "steps_log": steps_log, "rounds_log": rounds_log},
                )

        with reporter.progress("train-agent", total=rounds * cfg["episodes"] * batches) as task:
            task.advance(done * batches)
            for rnd in range(rounds):
                for episode in range(cfg["episodes"]):
                    if rnd * cfg["episodes"] + episode < done:
                        continue
                    seed = cfg["seed"] + 1 + rnd * cfg["episodes"] + episode
                    for batch in setup.train_loader(cfg["batch_size"], seed, words):
                        batch = fabric.to_device(batch)
                        log = agent_step(agent, clf, batch, optimizer, acfg, grad_hook=hook)
                        steps_log.append(
                            {"step": step, "round": rnd, "episode": episode, **{k: float(v) for k, v in log.items()}}
                        )
                        step += 1
                        task.advance(1)
                    last = episode == cfg["episodes"] - 1
                    if last and rounds > 1:
                        # Alg. 1: the classifier learns the edited graphs; the next round's reward is its
                        clf, row = _classifier_round(
                            clf, agent, acfg, train, val, cfg, gcfg, none_id, len(labels), fabric, reporter, rnd
                        )
                        rounds_log.append(row)
                        reporter.info(
                            f"round {rnd + 1}/{rounds}: val F1 {row['val_f1_edited']:.4f} on edited graphs, "
                            f"{row['val_f1_unedited']:.4f} unedited; node filter "
                            f"{row['node_filter_ratio']:.3f}, edge adjust {row['edge_adjust_ratio']:.3f}, "
                            f"add rate {row['add_rate']:.3f}"
                        )
                    done += 1
                    checkpoint()
        agent.cpu()
    result = {
        "classifier_val_f1": max(h["val_micro_f1"] for h in history),
        "agent_enabled": bool(cfg["enabled"]),
        "agent_steps": len(steps_log),
    }
    if steps_log:
        tail = steps_log[-max(1, len(steps_log) // 10) :]
        for key in ("reward", "reward_gain", "node_filter_ratio", "edge_adjust_ratio", "f1"):
            result[f"last10pct_{key}"] = sum(r[key] for r in tail) / len(tail)
        result["first_reward"] = steps_log[0]["reward"]
    if fabric.is_global_zero:
        clf.cpu()
        save_checkpoint(out, "classifier", clf, meta)
        if cfg["enabled"]:
            save_checkpoint(
                out, "agent", agent, {"config": cfg, "none_id": none_id, "in_dim": in_dim, "policy": acfg.policy}
            )
        write_csv(
            out / "steps.csv", steps_log or [{"step": 0, "node_filter_ratio": 0.0, "edge_adjust_ratio": 0.0, "f1": 0.0}]
        )
        curve = [{k: r[k] for k in AGENT_CURVE if k in r} for r in steps_log] or [
            {"step": 0, **{k: 0.0 for k in AGENT_CURVE[1:]}}
        ]
        write_plots([out, plots], "agent_steps", curve, _draw_agent_curve)
        if rounds_log:
            write_plots([out, plots], "agent_rounds", rounds_log, _draw_rounds)
            result["rounds"] = rounds_log

        shutil.rmtree(state_dir, ignore_errors=True)  # the outputs are whole: nothing left to resume
        return finish(out, params, PARAMS, result, stats, upstream=(cmg,))
    return result
