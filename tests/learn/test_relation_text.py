"""Relations as text (mmre_cli.learn.relation_text): the head scores against encoded descriptions."""

import pytest
import torch
from torch_geometric.loader import DataLoader

from tests.learn.test_finetune import D, _hf_model, captioned, needs_minilm, threads  # noqa: F401 (threads: the fixture)


def test_relation_text_head_scores_against_encoded_descriptions(tiny_hf):
    from mmre_cli.learn.relation_text import RelationTextHead, describe

    model = _hf_model(tiny_hf, relation_descriptions=["no relation", "a teacher of", "a captain of"]).eval()
    assert isinstance(model.classifier[-1], RelationTextHead)
    batch = next(iter(DataLoader(captioned(4, seed=1, dim=32), batch_size=4)))
    with torch.no_grad():
        base = model(batch)
        model.descriptions = ["no relation", "a captain of", "a teacher of"]  # swapped texts swap the columns
        swapped = model(batch)
    bias = model.classifier[-1].bias.detach()
    assert torch.allclose(base[:, 1] - bias[1], swapped[:, 2] - bias[2], atol=1e-5)
    model.train()
    model.descriptions = ["no relation", "a teacher of", "a captain of"]
    model(batch).sum().backward()
    assert model.encoder.transformer.layers[-1].parameters().__next__().grad is not None
    assert describe("/per/loc/place_of_birth").startswith("the head person was born")
    assert describe("/org/per/founded_by") == "organization person founded by"
    with pytest.raises(ValueError):
        _hf_model(tiny_hf, relation_descriptions=["only one"])
