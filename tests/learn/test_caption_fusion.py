"""The caption pass (mmre_cli.learn.caption_fusion): the caption read apart and cached, head/tail match
flags, a checkpoint round trip; on a tiny random BERT/MPNet."""

import torch
from torch_geometric.loader import DataLoader

from mmre_cli.learn.checkpoint import load_checkpoint, save_checkpoint
from tests.learn.test_finetune import D, _hf_model, captioned, needs_minilm, threads  # noqa: F401 (threads: the fixture)


def test_caption_pass_reads_the_caption_apart_and_caches_it(tiny_hf):
    model = _hf_model(tiny_hf, caption_tokens=0, caption_pass=16).eval()
    data = captioned(1, seed=2, dim=32)[0]
    other = data.clone()
    data.caption, other.caption = "a man holds a trophy on a stage", "a crowd in a stadium"
    with torch.no_grad():
        a, b = model(data), model(other)
        assert not torch.allclose(a, b)
        assert set(model.caption_reader._cache) == {data.caption, other.caption}
        # the sentence encoding does not see the caption: the marker states are the same
        run_a, m_a = model.readout_inputs(data)
        run_b, m_b = model.readout_inputs(other)
        d = 2 * model.encoder.dim
        assert torch.allclose(m_a[:, :d], m_b[:, :d]) and not torch.allclose(m_a[:, d:], m_b[:, d:])
    # no state of the frozen copy enters the checkpoint, and training does not move it
    assert not any("caption_reader" in k for k in model.state_dict())
    before = [p.clone() for p in model.caption_reader.network.parameters()]
    model.train()
    model(DataLoader(captioned(4, seed=3, dim=32), batch_size=4).__iter__().__next__()).sum().backward()
    assert all(p.grad is None for p in model.caption_reader.network.parameters())
    assert all(torch.equal(p, q) for p, q in zip(before, model.caption_reader.network.parameters()))
    assert model.caption_fusion.gate.weight.grad is not None


def test_caption_match_flags_mark_head_and_tail_words(tiny_hf):
    from mmre_cli.learn.caption_fusion import entity_words

    model = _hf_model(tiny_hf, caption_tokens=0, caption_pass=32).eval()
    reader = model.caption_reader
    words = ["Alice", "met", "Bob", "in", "Paris", "."]
    heads, tails = [entity_words(words, (0, 1))], [entity_words(words, (2, 3))]
    states, mask, match = reader.read(["alice holds a trophy with bob"], heads, tails)
    pieces = [w for w, m in zip(reader.tokenizer.texts(["alice holds a trophy with bob"], 32)[1][0], mask[0]) if m]
    got = {
        w: int(m)
        for w, m, k in zip(
            reader.tokenizer.texts(["alice holds a trophy with bob"], 32)[1][0], match[0].tolist(), mask[0].tolist()
        )
        if k
    }
    assert got["alice"] == 1 and got["bob"] == 2 and got["holds"] == 0 and pieces
    _, mask, match = reader.read([None], heads, tails)
    assert not mask.any() and not match.any()
    assert entity_words(["@The", "#Beatles", "a"], (0, 3)) == {"beatles"}


def test_caption_pass_round_trips_through_a_checkpoint(tiny_hf, tmp_path):
    model = _hf_model(tiny_hf, caption_tokens=0, caption_pass=16, relation_descriptions=["none", "a b", "c d"]).eval()
    save_checkpoint(tmp_path, "model", model, {"labels": ["None", "x", "y"]})
    loaded, meta = load_checkpoint(tmp_path, "model")
    loaded.eval()
    batch = next(iter(DataLoader(captioned(4, seed=4, dim=32), batch_size=4)))
    with torch.no_grad():
        assert torch.allclose(model(batch), loaded(batch), atol=1e-5)
    assert meta["model_kwargs"]["caption_pass"] == 16


def test_separate_parts_read_each_captioner_in_its_own_pass(tiny_hf):
    """caption_parts="separate": each " ; "-joined part is cached and cut on its own, and the read
    states are the parts' passes concatenated; "joined" reads the whole text as one pass."""
    from mmre_cli.data.captions import CAPTION_JOIN
    from mmre_cli.learn.caption_fusion import CaptionReader

    first, second = "alice holds a trophy on a big stage tonight", "bob in a crowd"
    text = CAPTION_JOIN.join([first, second])
    model = _hf_model(tiny_hf, caption_tokens=0, caption_pass=6, caption_parts="separate").eval()
    reader = model.caption_reader
    heads, tails = [{"alice"}], [{"bob"}]
    states, mask, match = reader.read([text], heads, tails)
    assert set(reader._cache) == {first, second}
    alone = [reader.read([part], heads, tails) for part in (first, second)]
    n0, n1 = (int(m.size(1)) for _, m, _ in alone)
    assert states.size(1) == n0 + n1 == 12  # each part cut to 6 pieces, [CLS] and [SEP] included
    assert torch.equal(states[0, :n0], alone[0][0][0]) and torch.equal(states[0, n0:], alone[1][0][0])
    assert torch.equal(match[0], torch.cat([alone[0][2][0], alone[1][2][0]]))
    assert (match[0] == 1).any() and (match[0] == 2).any()  # "alice" in the first part, "bob" in the second
    joined = CaptionReader(reader.tokenizer, reader.network, pieces=6, parts="joined")
    j_states, _, j_match = joined.read([text], heads, tails)
    assert set(joined._cache) == {text} and j_states.size(1) == 6
    assert not (j_match[0] == 2).any()  # joined and cut to 6 pieces, the second caption's "bob" is lost
    assert reader.split(None) == [] and reader.split(f"a{CAPTION_JOIN} {CAPTION_JOIN}b") == ["a", None, "b"]
    assert joined.split(f"a{CAPTION_JOIN} {CAPTION_JOIN}b") == [f"a{CAPTION_JOIN}b"]  # the empty slot dropped


def test_caption_parts_round_trip_through_a_checkpoint_and_are_checked(tiny_hf, tmp_path):
    import pytest

    model = _hf_model(tiny_hf, caption_tokens=0, caption_pass=8, caption_parts="separate").eval()
    save_checkpoint(tmp_path, "model", model, {"labels": ["None", "x", "y"]})
    loaded, meta = load_checkpoint(tmp_path, "model")
    assert meta["model_kwargs"]["caption_parts"] == "separate" and loaded.caption_reader.parts == "separate"
    with pytest.raises(ValueError, match="parts must be one of"):
        _hf_model(tiny_hf, caption_tokens=0, caption_pass=8, caption_parts="each")


def test_weighted_parts_attend_apart_and_are_weighed(tiny_hf):
    """caption_parts="weighted": each part is attended alone and the parts' attentions are averaged by
    a softmax over the parts present; with a flat score that is their plain mean, a one-part caption
    is its own attention, and no caption gives the null key's value, as the unweighted fusion does."""
    from mmre_cli.data.captions import CAPTION_JOIN
    from mmre_cli.learn.caption_fusion import CaptionFusion

    model = _hf_model(tiny_hf, caption_tokens=0, caption_pass=8, caption_parts="weighted").eval()
    reader, fusion = model.caption_reader, model.caption_fusion
    assert fusion.per_part and reader.parts == "weighted"
    first, second = "alice holds a trophy on a stage", "bob in a crowd"
    heads, tails = [{"alice"}], [{"bob"}]
    with torch.no_grad():
        fusion.part_score.weight.zero_()  # a flat score: equal weights
        q = torch.randn(1, 2, reader.network.config.hidden_size)

        def attention(caption):
            states, mask, match, part = reader.read([caption], heads, tails, with_parts=True)
            kv = torch.cat([fusion.null, fusion.proj(states) + fusion.match(match)], dim=1)
            return fusion._weighted(q, kv, mask, part, torch.zeros(1, 1, dtype=torch.bool)), part

        both, part = attention(CAPTION_JOIN.join([first, second]))
        a, _ = attention(first)
        b, _ = attention(second)
        assert set(part[0].tolist()) == {0, 1}
        assert torch.allclose(both, (a + b) / 2, atol=1e-5) and not torch.allclose(a, b)
        none, part = attention(None)
        plain = CaptionFusion(q.size(-1))
        plain.load_state_dict({k: v for k, v in fusion.state_dict().items() if not k.startswith("part_score")})
        plain.eval()
        empty = torch.zeros(1, 0, q.size(-1)), torch.zeros(1, 0, dtype=torch.bool), torch.zeros(1, 0, dtype=torch.long)
        null_only = plain(q, *empty)[:, : 2 * q.size(-1)].reshape(1, 2, -1)
        gate = torch.sigmoid(fusion.gate(torch.cat([q, none], dim=-1)))
        assert part.numel() == 0 or (part == -1).all()
        assert torch.allclose(gate * none, null_only, atol=1e-5)
    model.train()
    model(next(iter(DataLoader(captioned(4, seed=5, dim=32), batch_size=4)))).sum().backward()
    assert fusion.part_score.weight.grad is not None


def test_pooled_caption_embeddings_are_each_parts_normalised_mean(tiny_hf, tmp_path):
    """caption_pool: each part's pooled embedding is the L2-normalised mean of that part's piece
    states (a missing part: zeros), projected and appended (out_dim grows by D); it trains and
    round-trips through a checkpoint."""
    from mmre_cli.data.captions import CAPTION_JOIN, join_captions

    model = _hf_model(tiny_hf, caption_tokens=0, caption_pass=8, caption_parts="separate", caption_pool=2).eval()
    reader, fusion = model.caption_reader, model.caption_fusion
    dim = reader.network.config.hidden_size
    assert fusion.needs_parts and fusion.out_dim == 3 * dim + 2
    first, second = "alice holds a trophy on a stage", "bob in a crowd"
    heads, tails = [{"alice"}, {"alice"}], [{"bob"}, {"bob"}]
    states, mask, match, part = reader.read([CAPTION_JOIN.join([first, second]), first], heads, tails, with_parts=True)
    pooled = fusion.pooled(states, mask, part)
    assert pooled.shape == (2, 2, dim)
    for p, text in enumerate((first, second)):
        alone, m, _ = reader.read([text], heads[:1], tails[:1])
        want = alone[0][m[0]].mean(0)
        assert torch.allclose(pooled[0, p], want / want.norm(), atol=1e-5)
    assert torch.allclose(pooled[1, 0], pooled[0, 0], atol=1e-6)  # the same first caption
    assert torch.equal(pooled[1, 1], torch.zeros(dim))  # no second caption: zeros
    assert torch.allclose(pooled.norm(dim=-1)[0], torch.ones(2), atol=1e-5)
    # the first captioner has no caption: its slot is zeros and the second keeps slot 1
    states, mask, match, part = reader.read([join_captions([None, second])], heads[:1], tails[:1], with_parts=True)
    shifted = fusion.pooled(states, mask, part)
    assert torch.equal(shifted[0, 0], torch.zeros(dim))
    assert torch.allclose(shifted[0, 1], pooled[0, 1], atol=1e-5)
    model.train()
    model(next(iter(DataLoader(captioned(4, seed=6, dim=32), batch_size=4)))).sum().backward()
    assert fusion.pool_proj[0].weight.grad is not None and fusion.pool_proj[0].weight.grad.abs().sum() > 0
    model.eval()
    save_checkpoint(tmp_path, "model", model, {"labels": ["None", "x", "y"]})
    loaded, meta = load_checkpoint(tmp_path, "model")
    loaded.eval()
    assert meta["model_kwargs"]["caption_pool"] == 2 and loaded.caption_fusion.pool_parts == 2
    batch = next(iter(DataLoader(captioned(4, seed=4, dim=32), batch_size=4)))
    with torch.no_grad():
        assert torch.allclose(model(batch), loaded(batch), atol=1e-5)


def test_caption_dropout_drops_whole_captions_in_training_only():
    """caption_dropout: in training a dropped instance's fusion equals that of no caption at all
    (null key only, no flags, zero embeddings); in eval no caption is dropped."""
    import pytest

    from mmre_cli.learn.caption_fusion import CaptionFusion

    torch.manual_seed(0)
    dim, b, n = 8, 64, 5
    fusion = CaptionFusion(dim, heads=2, dropout=0.0, pool_parts=1, drop=0.5)
    q, states = torch.randn(b, 2, dim), torch.randn(b, n, dim)
    mask, match, part = (
        torch.ones(b, n, dtype=torch.bool),
        torch.ones(b, n, dtype=torch.long),
        torch.zeros(b, n, dtype=torch.long),
    )
    empty = torch.zeros_like(mask)
    fusion.eval()
    with torch.no_grad():
        full, none = fusion(q, states, mask, match, part), fusion(q, states, empty, match, part)
        assert torch.allclose(fusion(q, states, mask, match, part), full)  # eval: nothing dropped
        fusion.train()
        out = fusion(q, states, mask, match, part)
    dropped = torch.isclose(out, none, atol=1e-6).all(1)
    kept = torch.isclose(out, full, atol=1e-6).all(1)
    assert bool((dropped ^ kept).all())  # every row is one or the other
    assert 16 <= int(dropped.sum()) <= 48  # about half of 64
    assert torch.equal(out[dropped][:, 2 * dim : 2 * dim + 2], torch.zeros(int(dropped.sum()), 2))  # no match flag
    with pytest.raises(ValueError, match="caption dropout must be in"):
        CaptionFusion(dim, drop=1.0)
