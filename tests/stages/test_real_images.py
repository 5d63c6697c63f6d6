"""CLIP + YOLO on the 12 real MNRE photos: extract-features, build-graphs and merge-cmg with a tiny
random-initialised CLIP and the YOLO detector, the network blocked (no weights can be downloaded
here; the real loading code runs). Skips when ``../shared`` is absent."""

from __future__ import annotations

import importlib.util
import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from mmre_cli.graphs.graph import EDGE_TYPES, MODALITIES, NODE_KINDS
from mmre_cli.params import apply_overrides, load_params

REPO = Path(__file__).resolve().parents[2]
SHARED_MNRE = REPO.parent / "shared" / "data" / "mnre"
REAL_RE = SHARED_MNRE / "real_image_sample" / "data" / "RE_data"

VIS = MODALITIES.index("visual")
IMAGE_KIND = NODE_KINDS.index("image")
OBJECT_KIND = NODE_KINDS.index("object")
SPATIAL = EDGE_TYPES.index("spatial")
PART_OF_IMAGE = EDGE_TYPES.index("part_of_image")

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture
def no_network(monkeypatch):
    """Any network connect or DNS lookup fails and is recorded (local AF_UNIX sockets still work)."""
    import socket

    attempts: list = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(real):
        def connect(self, address, *a, **k):  # noqa: ANN001
            if self.family == socket.AF_UNIX:  # image-decoding workers talk over local sockets
                return real(self, address, *a, **k)
            attempts.append(("connect", address))
            raise OSError(f"network disabled in tests ({address!r})")

        return connect

    def getaddrinfo(host, *a, **k):  # noqa: ANN001
        attempts.append(("dns", host))
        raise socket.gaierror(f"network disabled in tests ({host!r})")

    monkeypatch.setattr(socket.socket, "connect", guarded(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(real_connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


@pytest.mark.shared
@pytest.mark.skipif(not REAL_RE.exists(), reason="../shared/data/mnre/real_image_sample not present")
def test_clip_and_yolo_on_real_images(tmp_path, monkeypatch, no_network):
    import open_clip

    assert (
        importlib.util.find_spec("ultralytics") is not None
    )  # a dependency; imported later: mmre sets YOLO_OFFLINE first
    import torch
    from safetensors.torch import save_file

    from mmre_cli.features.detect import YoloDetector
    from mmre_cli.store.manifest import read_manifest
    from mmre_cli.store.readers import read_graphs, read_instances, read_table
    from mmre_cli.store.tables import array_to_vectors
    from mmre_cli.store.validate import validate
    from stages import build_graphs, extract_features, merge_cmg

    monkeypatch.setenv("MMRE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MMRE_OFFLINE", "1")
    for var in ("MMRE_CLIP_WEIGHTS", "MMRE_YOLO_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)

    # a tiny random-initialised CLIP, registered with open_clip and saved as .safetensors
    cfg_dir = tmp_path / "clip_cfg"
    cfg_dir.mkdir()
    name = f"mmre-tiny-clip-{uuid.uuid4().hex[:8]}"
    (cfg_dir / f"{name}.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(cfg_dir)
    torch.manual_seed(0)
    weights = tmp_path / "tiny-clip.safetensors"
    save_file(
        {k: v.detach().clone().contiguous() for k, v in open_clip.CLIP(**TINY_CLIP).state_dict().items()}, str(weights)
    )
    # a random-initialised yolov8n saved as a .pt
    torch.manual_seed(0)
    pt = tmp_path / "tiny-yolo.pt"
    YoloDetector("yolov8n.yaml", config_dir=tmp_path / "yolo_cfg").model.save(pt)
    assert pt.is_file()

    # an MNRE-layout dataset whose text is read from ../shared now and whose images stay there
    ds = tmp_path / "mnre_real"
    ds.mkdir()
    for split in ("train", "val"):
        (ds / f"ours_{split}.txt").write_text((REAL_RE / "txt" / f"ours_{split}.txt").read_text())
    shutil.copy(REAL_RE / "ours_rel2id.json", ds / "ours_rel2id.json")
    captions = SHARED_MNRE / "v2_captions" / "BLIP_{split}.txt"
    params = apply_overrides(
        load_params(REPO / "params.yaml"),
        {
            "data.root": str(ds),
            "data.image_root": str(REAL_RE / "img_org"),
            "data.captions": str(captions) if Path(str(captions).format(split="val")).exists() else None,
            "data.image_policy": "error",  # every one of these instances has its photo
            "extract_features.encoder": f"clip:{name}",
            "extract_features.weights": str(weights),
            "extract_features.detector": str(pt),
            "extract_features.det_conf": 0.0,  # a random YOLO is never confident; keep its boxes
            "extract_features.max_objects": 4,
            "extract_features.batch_size": 8,
        },
    )
    fout, gout, cout = tmp_path / "features", tmp_path / "graphs", tmp_path / "cmg"
    fstats = extract_features.run(out=fout, params=params)
    gstats = build_graphs.run(features=fout, out=gout, params=params)
    cstats = merge_cmg.run(features=fout, graphs=gout, out=cout, params=params)
    assert no_network == []
    for path in (fout, gout, cout):
        assert validate(path) == [], path

    instances = read_instances(fout)
    images = {inst.img_id for inst in instances}
    assert len(instances) == 10 and len(images) == 7  # 5 train photos, 2 val photos (4 lines share one)
    assert all(inst.image_path for inst in instances)
    man = read_manifest(fout)
    assert man["dim"] == 32 and man["encoder"].startswith(f"clip:{name}:sha256=")
    assert fstats["splits"]["train"]["text_only"] == fstats["splits"]["val"]["text_only"] == 0
    units = fstats["units_this_run"]
    assert units["image"] == 7 and 7 <= units["object"] <= 4 * 7

    feats = read_table(fout, "features")
    kinds = feats.column("kind").to_pylist()
    boxes, has_box = array_to_vectors(feats.column("box"), 4)
    emb, _ = array_to_vectors(feats.column("emb"), 32)
    obj = np.array([k == "object" for k in kinds])
    pixel = obj | np.array([k == "image" for k in kinds])
    assert (has_box == pixel).all()  # boxes only on the image and its objects
    b = boxes[obj]
    assert ((b >= 0) & (b <= 1)).all() and (b[:, 0] <= b[:, 2]).all() and (b[:, 1] <= b[:, 3]).all()
    np.testing.assert_allclose(np.linalg.norm(emb[pixel], axis=1), 1.0, atol=1e-5)

    visual = [g for g in read_graphs(gout) if g.graph_id.startswith("image:")]
    assert sorted(g.graph_id for g in visual) == sorted(f"image:{i}" for i in images)
    assert gstats["visual"]["graphs"] == 7
    for g in visual:
        kinds_g = g.node_kind.tolist()
        assert kinds_g.count(IMAGE_KIND) == 1 and kinds_g.count(OBJECT_KIND) >= 1, g.graph_id
        assert (g.node_modality == VIS).all()
        n_obj = kinds_g.count(OBJECT_KIND)
        assert (g.edge_type == PART_OF_IMAGE).sum() >= n_obj
        if n_obj >= 2:
            assert (g.edge_type == SPATIAL).any(), g.graph_id
    assert gstats["visual"]["edges_by_type"].get("spatial", 0) > 0

    cmgs = read_graphs(cout)
    assert len(cmgs) == 10 and cstats["head_and_tail_present"] == 10
    for g in cmgs:
        vis = g.node_modality == VIS
        assert vis.any(), f"{g.graph_id}: no visual node in the CMG"
        src, dst = g.edge_index
        assert ((vis[src]) != (vis[dst])).any(), f"{g.graph_id}: visual nodes not linked to the text"
        np.testing.assert_allclose(np.linalg.norm(g.x[vis], axis=1), 1.0, atol=1e-5)
    assert cstats["mean_nodes_by_kind"]["object"] > 0 and cstats["mean_nodes_by_kind"]["image"] > 0
