"""The caption state store (mmre_cli.learn.caption_store): states written by one reader are read,
unchanged, by another reader with the same frozen weights, piece limit and dtype, and never by one
that differs in any of them; shards appear whole; a prefill encodes each new text once."""

import torch

from mmre_cli.learn.caption_fusion import CaptionReader
from mmre_cli.learn.caption_store import CaptionStateStore, network_key, text_key
from tests.learn.test_finetune import _hf_model, threads  # noqa: F401 (threads: the fixture)

CAPTIONS = ["alice holds a trophy on a big stage", "bob in a crowd", None, "alice holds a trophy on a big stage"]


class _Count:
    def __init__(self):
        self.n = 0

    def advance(self, n: int = 1) -> None:
        self.n += n


def test_store_round_trips_states_and_writes_shards_whole(tmp_path):
    store = CaptionStateStore(tmp_path, "k", flush_every=2)
    a, b, c = torch.randn(3, 4), torch.randn(5, 4), torch.randn(1, 4)
    store.put("a", a)
    assert not (tmp_path / "k").exists()  # pending, not written yet
    assert CaptionStateStore(tmp_path, "k").get_many(["a"]) == {}
    store.put("b", b)  # the second put reaches flush_every: one shard
    assert len(list((tmp_path / "k").glob("*.safetensors"))) == 1
    store.put("c", c)
    store.flush()
    assert not list((tmp_path / "k").glob("*.tmp"))
    other = CaptionStateStore(tmp_path, "k")
    got = other.get_many(["a", "b", "c", "d"])
    assert set(got) == {"a", "b", "c"} and len(other) == 3
    assert torch.equal(got["a"], a) and torch.equal(got["b"], b) and torch.equal(got["c"], c)
    assert text_key("a") != text_key("a ") and CaptionStateStore(tmp_path, "other").get_many(["a"]) == {}


def test_network_key_follows_weights_pieces_and_dtype():
    net = torch.nn.Linear(3, 2)
    k = network_key(net, 128, torch.float32)
    assert k == network_key(net, 128, torch.float32)
    assert len({k, network_key(net, 64, torch.float32), network_key(net, 128, torch.bfloat16)}) == 3
    with torch.no_grad():
        net.bias[0] += 1
    assert network_key(net, 128, torch.float32) != k


def test_a_second_reader_reads_the_first_readers_states(tiny_hf, tmp_path):
    model = _hf_model(tiny_hf, caption_tokens=0, caption_pass=8).eval()
    first = CaptionReader(model.encoder.tokenizer, model.caption_reader.network, pieces=8).use_store(tmp_path)
    task = _Count()
    assert first.prefill(CAPTIONS, batch_size=1, progress=task) == 2 and task.n == 2  # two distinct texts
    assert first.prefill(CAPTIONS) == 0  # already cached in memory
    heads, tails = [{"alice"}] * 4, [{"bob"}] * 4
    want = first.read(CAPTIONS, heads, tails)

    second = CaptionReader(model.encoder.tokenizer, model.caption_reader.network, pieces=8).use_store(tmp_path)
    assert second.prefill(CAPTIONS) == 0  # both read from the store
    got = second.read(CAPTIONS, heads, tails)
    assert all(torch.equal(w, g) for w, g in zip(want, got))  # states, mask and match flags
    # the same texts without a store: the same states, computed
    plain = CaptionReader(model.encoder.tokenizer, model.caption_reader.network, pieces=8)
    computed = plain.read(CAPTIONS, heads, tails)
    assert all(torch.allclose(w.float(), g.float(), atol=1e-5) for w, g in zip(want, computed))
    # another piece limit is another key: nothing read, everything encoded
    shorter = CaptionReader(model.encoder.tokenizer, model.caption_reader.network, pieces=4).use_store(tmp_path)
    assert shorter.prefill(CAPTIONS) == 2
    assert len(list(tmp_path.iterdir())) == 2
