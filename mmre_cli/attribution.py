r"""Why a relation was predicted: Integrated Gradients over the graph (and the sentence's word pieces).

**Graph.** :func:`graph_attribution` runs PyG's :class:`torch_geometric.explain.Explainer` with
``CaptumExplainer("IntegratedGradients")`` on the refined graph, for the predicted class's logit
(``explanation_type="phenomenon"`` with that class as the target, graph-level multiclass, raw logits). Node features
get an
attribution per feature (``node_mask_type="attributes"``) and every edge a scalar mask
(``edge_mask_type="object"``, injected into the GATv2 layers' messages by PyG). With the zero
baseline, IG's completeness axiom makes the attributions add up to the logit's change from the
all-zero input, so a node's importance

.. math::
    a_i = \sum_f \mathrm{IG}_{if}, \qquad
    \mathrm{IG}_{if} = x_{if} \int_0^1 \frac{\partial \ell_{\hat y}(\alpha \mathbf{X}, \alpha \mathbf{m})}
        {\partial x_{if}}\, d\alpha

is signed: positive = evidence *for* the predicted relation, negative = against. Edge
importances are the IG of the edge mask :math:`\mathbf{m}` (all ones = the graph as it is).
Why IG and not GNNExplainer or AttentionExplainer: it is deterministic (the same picture on every
run), needs no per-graph optimisation, and, unlike attention weights, measures the effect on the
output. Hop-diffused attention is not a PyG message-passing layer, so there only nodes get an
attribution.

For a model whose encoder is fine-tuned, the text nodes' features are recomputed from the words;
the graph attribution then runs on those recomputed features (the encoder's output held fixed),
and :func:`piece_attribution` attributes the same logit to the word pieces: IG on the encoder's
input word embeddings (zero baseline, ``steps`` points of the Riemann sum), summed over the
embedding dimension.

Shapes:
    node importance ``[N]``, edge importance ``[E]`` (of the refined graph), pieces: a list of
    ``(piece, importance)`` for the first segment
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Attribution", "attribute", "graph_attribution", "piece_attribution"]


@dataclass
class Attribution:
    """Signed importances for the class ``target`` (module docstring)."""

    target: int
    node: list[float]
    edge: list[float] | None
    pieces: list[tuple[str, float]] | None = None


class _GraphForward(nn.Module):
    """``forward(x, edge_index)`` around a relation classifier, the rest of the batch held fixed."""

    def __init__(self, model: nn.Module, data) -> None:
        super().__init__()
        self.model, self.data = model, data
        self.finetuned = hasattr(model, "encoder") and hasattr(model, "readout_inputs")
        if self.finetuned:
            with torch.no_grad():
                run, markers = model.readout_inputs(data)
                self.x = run.x.float().detach()
                self.markers = markers
        else:
            self.x = data.x.float()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        run = copy.copy(self.data)
        run.x, run.edge_index = x, edge_index
        if not self.finetuned:
            return self.model(run)
        return self.model.classify(run, self.markers)[0]


def _message_passing(model: nn.Module) -> bool:
    from torch_geometric.nn import MessagePassing

    return any(isinstance(m, MessagePassing) for m in model.modules())


def graph_attribution(
    model: nn.Module, data, target: int | None = None, steps: int = 32
) -> tuple[int, Tensor, Tensor | None]:
    """``(target, node [N], edge [E] or None)``: IG of the ``target`` logit (default: the predicted class).

    Shapes:
        ``data``: one ``graph_to_data`` graph -> ``[N]``, ``[E]``
    """
    from torch_geometric.explain import Explainer
    from torch_geometric.explain.algorithm import CaptumExplainer

    was_training = model.training
    model.eval()
    wrapped = _GraphForward(model, data).eval()  # a new Module is in train mode; the Explainer restores it
    x = wrapped.x
    if target is None:
        with torch.no_grad():
            target = int(wrapped(x, data.edge_index).argmax(dim=-1)[0])
    edges = data.edge_index.size(1) > 0 and _message_passing(wrapped)
    explainer = Explainer(
        model=wrapped,
        algorithm=CaptumExplainer("IntegratedGradients", n_steps=steps),
        explanation_type="phenomenon",
        node_mask_type="attributes",
        edge_mask_type="object" if edges else None,
        model_config=dict(mode="multiclass_classification", task_level="graph", return_type="raw"),
    )
    explanation = explainer(x, data.edge_index, target=torch.tensor([target]))
    model.train(was_training)
    node = explanation.node_mask.sum(dim=-1).detach()
    edge = explanation.get("edge_mask")
    return target, node, (edge.detach() if edge is not None else None)


def piece_attribution(model: nn.Module, data, target: int, steps: int = 16) -> list[tuple[str, float]] | None:
    """IG of the ``target`` logit over the first segment's word pieces (``None`` without an encoder)."""
    enc_module = getattr(model, "encoder", None)
    if enc_module is None or not hasattr(enc_module, "tokenizer"):
        return None
    from mmre_cli.learn.finetune import _batch_words

    words, heads, tails, captions = _batch_words(data)
    marked = enc_module.mark(words, heads, tails)[0]  # what the model reads, type words included
    tokenized = enc_module.tokenizer.pairs(marked, captions, enc_module.caption_tokens)
    ids = tokenized.input_ids[0].tolist()
    emb = enc_module.transformer.get_input_embeddings()
    scale = {"alpha": 1.0}
    captured: list[Tensor] = []

    def hook(_module, _inputs, output):
        # a leaf at the scaled embeddings: the gradient we integrate (frozen embeddings included)
        scaled = (output * scale["alpha"]).detach().requires_grad_(True)
        captured.append(scaled)
        return scaled

    handle = emb.register_forward_hook(hook)
    saved = enc_module.frozen_below, enc_module.cache_lower
    enc_module.frozen_below, enc_module.cache_lower = 0, False  # gradients through every layer, no cache
    total = None
    try:
        for k in range(1, steps + 1):
            scale["alpha"] = k / steps
            captured.clear()
            model.zero_grad(set_to_none=True)
            logits = model(data)
            logits[0, target].backward()
            grad = captured[0].grad[0]  # [L, D], of the scaled embedding
            total = grad if total is None else total + grad
        with torch.no_grad():
            full = emb(tokenized.input_ids.to(emb.weight.device))[0]
        ig = (full * total / steps).sum(dim=-1)  # x * mean gradient, summed over D
    finally:
        handle.remove()
        enc_module.frozen_below, enc_module.cache_lower = saved
        model.zero_grad(set_to_none=True)
    tok = enc_module.tokenizer._tok
    types = tokenized.token_type_ids[0].tolist() if tokenized.token_type_ids is not None else [0] * len(ids)
    mask = tokenized.attention_mask[0].tolist()
    return [(tok.id_to_token(i), float(v)) for i, v, t, m in zip(ids, ig.tolist(), types, mask) if m and t == 0]


def attribute(model: nn.Module, graph, target: int | None = None, steps: int = 32) -> Attribution:
    """Node, edge and (with a fine-tuned encoder) word-piece importances of one refined graph."""
    from mmre_cli.graphs.pyg import graph_to_data

    words = bool(getattr(model, "needs_words", False))
    data = graph_to_data(graph, words=words)
    target, node, edge = graph_attribution(model, data, target, steps)
    pieces = piece_attribution(model, data, target, max(4, steps // 2)) if words else None
    return Attribution(target, node.tolist(), None if edge is None else edge.tolist(), pieces)
