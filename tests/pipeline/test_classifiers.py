"""The classifiers ``train_gnn`` builds from its params section."""


def test_caption_pool_counts_the_captioners_and_needs_the_pass():
    import pytest

    from mmre_cli.errors import MmreError
    from mmre_cli.pipeline.classifiers import build_classifier, caption_pool_parts

    three = ["a_{split}.txt", "b_{split}.txt", "c_{split}.txt"]
    assert caption_pool_parts({"caption_pool": False, "pair_captions": three}) == 0
    assert caption_pool_parts({"caption_pool": True, "caption_parts": "separate", "pair_captions": three}) == 3
    assert caption_pool_parts({"caption_pool": True, "caption_parts": "joined", "pair_captions": three}) == 1
    assert caption_pool_parts({"caption_pool": True, "caption_parts": "separate", "pair_captions": "a.txt"}) == 1
    cfg = {"markers": "special", "readout": "gnn_markers", "caption_pass": 0, "caption_pool": True}
    with pytest.raises(MmreError, match="caption_pool reads the caption's own pass"):
        build_classifier("finetune", 8, 3, cfg)
