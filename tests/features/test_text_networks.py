"""The text networks by name (mmre_cli.features.text_networks): the hf folder, one interface for every encoder."""

from __future__ import annotations

import pytest
import torch
import transformers  # noqa: F401 - a hard dependency: a broken install fails, never skips

from mmre_cli.errors import MmreError  # noqa: E402
from mmre_cli.features.text_networks import hf_folder, load_text_network  # noqa: E402


def test_hf_needs_a_folder(tmp_path):
    with pytest.raises(MmreError, match="needs weights"):
        hf_folder(None)
    with pytest.raises(MmreError, match="model folder"):
        hf_folder(tmp_path / "missing")


def test_load_text_network_gives_one_interface(tiny_bert):
    from mmre_cli.features.minilm import resolve_minilm_dir

    nets = [load_text_network("hf", tiny_bert, 32)[1]]
    if resolve_minilm_dir() is not None:
        nets.append(load_text_network("minilm", None, 32)[1])
    for net in nets:
        ids = torch.tensor([[2, 10, 11, 3]])
        mask = torch.ones_like(ids)
        with torch.no_grad():
            top = net.upper(net.lower(ids, mask, None, stop=1), mask, start=1)
            assert torch.allclose(top, net(ids, mask), atol=1e-5)
        assert net.num_layers == len(net.layers) and net.embedding_modules()
