"""The RL editor at inference: its config from params, loading it, and refining graphs with it
(greedy edits, then diffusion with pruning) — the diffuse stage, train-agent's rounds and predict."""

from __future__ import annotations

from pathlib import Path

from mmre_cli.errors import MmreError
from mmre_cli.graphs.graph import Graph

#: the params the editor reads when it runs (:func:`load_editor`, :func:`agent_config`): every stage
#: that runs it declares them (diffuse; train-agent, whose rounds refine graphs with it)
EDITOR_PARAMS = (
    "train_agent.enabled",
    "train_agent.max_steps",
    "train_agent.lam",
    "train_agent.mu",
    "train_agent.gamma",
    "train_agent.lr",
    "train_agent.entropy",
    "train_agent.add_k",
    "train_agent.add_threshold",
    "train_agent.reward_mode",
    "train_agent.evidence_penalty",
    "train_agent.none_weight",
    "train_agent.complexity",
)


def agent_config(cfg: dict, none_id: int, policy: str = "two_level"):
    """The :class:`~mmre_cli.learn.policy.AgentConfig` of a ``train_agent`` params section (keys a
    section written by an older mmre lacks take their defaults; ``policy`` comes from the saved
    editor: ``"flat"`` for one trained before the two-level policy)."""
    from mmre_cli.learn.policy import AgentConfig

    return AgentConfig(
        max_steps=cfg["max_steps"],
        lam=cfg["lam"],
        mu=cfg["mu"],
        gamma=cfg["gamma"],
        lr=cfg["lr"],
        entropy=cfg["entropy"],
        add_k=cfg["add_k"],
        add_threshold=cfg["add_threshold"],
        reward_mode=cfg["reward_mode"],
        none_id=none_id,
        evidence_penalty=float(cfg.get("evidence_penalty", 0.0)),
        none_weight=float(cfg.get("none_weight", 1.0)),
        complexity=str(cfg.get("complexity", "size")),
        policy=policy,
    )


def load_editor(agent_dir: Path, params: dict):
    """``(agent, AgentConfig)`` when the editor is enabled, else ``(None, None)``."""
    from mmre_cli.learn.checkpoint import load_checkpoint

    if not params["train_agent"]["enabled"]:
        return None, None
    if not (Path(agent_dir) / "agent.safetensors").exists():
        raise MmreError(
            f"{agent_dir}: no trained agent (agent.safetensors); run `mmre train-agent` or set "
            f"train_agent.enabled=false"
        )
    agent, meta = load_checkpoint(agent_dir, "agent")
    # an editor saved before the two-level policy records no "policy": it was trained flat
    return agent, agent_config(params["train_agent"], int(meta.get("none_id", 0)), str(meta.get("policy", "flat")))


def refine(graphs: list[Graph], agent, agent_cfg, dcfg: dict) -> list[Graph]:
    """Edit (if ``agent``) and diffuse (if ``dcfg['enabled']``) a list of graphs."""
    import torch
    from torch_geometric.data import Batch

    from mmre_cli.graphs.pyg import graph_to_data
    from mmre_cli.graphs.refine import apply_diffusion, apply_edit_record
    from mmre_cli.learn.diffusion import diffuse, endpoint_edge_mask, node_relevance

    if agent is not None and graphs:
        from mmre_cli.learn.agent import edit_graphs

        with torch.no_grad():
            _, records = edit_graphs(
                agent, Batch.from_data_list([graph_to_data(g) for g in graphs]), agent_cfg, greedy=True
            )
        graphs = [apply_edit_record(g, r) for g, r in zip(graphs, records)]
    if not dcfg["enabled"]:
        return graphs
    datas = [graph_to_data(g) for g in graphs]
    learned = None
    if dcfg["relevance"] == "editor" and graphs:
        from mmre_cli.learn.agent import editor_relevance

        if agent is None:
            raise MmreError("diffuse.relevance=editor needs the RL editor (train_agent.enabled: true)")
        batch = Batch.from_data_list(datas)
        learned = editor_relevance(agent, batch, agent_cfg).split(torch.bincount(batch.batch).tolist())
    out = []
    for k, (g, data) in enumerate(zip(graphs, datas)):
        v0 = (
            learned[k]
            if learned is not None
            else node_relevance(data.x, data.head_index, data.tail_index, mode=dcfg["relevance"])
        )
        protect = endpoint_edge_mask(data.edge_index, torch.cat([data.head_index, data.tail_index]))
        v, w, keep = diffuse(
            data.edge_index,
            g.num_nodes,
            v0,
            alpha=dcfg["alpha"],
            max_iter=dcfg["max_iter"],
            tau=dcfg["tau"],
            keep_mask=protect,
            prune=dcfg["prune"],
        )
        out.append(apply_diffusion(g, v.numpy(), w.numpy(), keep.numpy()))
    return out


def edit_only(graphs: list, agent, acfg, chunk: int = 256) -> list:
    """``graphs`` as the editor leaves them (greedy edits, no diffusion), in chunks."""
    out = []
    for k in range(0, len(graphs), chunk):
        out.extend(refine(graphs[k : k + chunk], agent, acfg, {"enabled": False}))
    return out
