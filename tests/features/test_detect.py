"""Object detection: a random-initialised YOLO (yolov8n.yaml, no download), .pt round trip, dataset boxes."""

from __future__ import annotations

import sys

import pytest
from PIL import Image

from mmre_cli.data.instance import Entity
from mmre_cli.errors import MmreError
from mmre_cli.features.detect import Detection, YoloDetector, boxes_from_dataset, build_detector
from mmre_cli.features.imageio import crop, open_image


def _assert_valid(dets: list[Detection]) -> None:
    for d in dets:
        x1, y1, x2, y2 = d.box
        assert 0.0 <= x1 <= x2 <= 1.0 and 0.0 <= y1 <= y2 <= 1.0
        assert isinstance(d.label, str) and 0.0 <= d.score <= 1.0


def test_boxes_from_dataset_more_convention():
    dets = boxes_from_dataset(
        [
            ("dog", (0.5, 0.5, 0.2, 0.4)),
            Entity("man", -1, -1, (0.1, 0.9, 0.4, 0.4)),  # overhangs the corner -> clipped
            Entity("text", 0, 1),  # a text entity has no box -> skipped
            {"name": "cup", "box": [0.25, 0.25, 0.5, 0.5]},
        ]
    )
    assert [d.label for d in dets] == ["dog", "man", "cup"]
    assert dets[0].box == pytest.approx((0.4, 0.3, 0.6, 0.7))
    assert dets[1].box == pytest.approx((0.0, 0.7, 0.3, 1.0))
    assert dets[2].box == pytest.approx((0.0, 0.0, 0.5, 0.5))
    assert all(d.score == 1.0 for d in dets)
    _assert_valid(dets)
    with pytest.raises(MmreError, match="cx, cy, w, h"):
        boxes_from_dataset([("bad", (0.1, 0.2))])


def test_build_detector_specs_and_errors(clean_env, monkeypatch, tmp_path):
    assert build_detector("none") is None
    assert build_detector("NONE") is None
    with pytest.raises(MmreError, match="missing.pt"):
        build_detector(str(tmp_path / "missing.pt"))
    monkeypatch.setenv("MMRE_OFFLINE", "1")
    with pytest.raises(MmreError) as exc:
        build_detector(None)
    assert "MMRE_YOLO_WEIGHTS" in str(exc.value) and str(clean_env) in str(exc.value)
    with pytest.raises(MmreError, match="yolov8s.pt"):
        build_detector("yolov8s.pt")  # bare official name, not in the cache, offline
    with pytest.raises(MmreError, match="YOLO weights not found"):
        YoloDetector(tmp_path / "nope.pt")


@pytest.fixture(scope="module")
def yolo(tmp_path_factory, network_blocker):
    """A random-initialised yolov8n from its yaml, with low thresholds so boxes come out.

    Built (ultralytics imported, settings written, first prediction warmed up) with the network
    blocked: nothing may be fetched (weights, fonts, settings sync, DNS probes).
    """
    import importlib.util

    if importlib.util.find_spec("ultralytics") is None:  # importing it here would skip mmre's offline setup
        pytest.skip("ultralytics not installed")
    cfg_dir = tmp_path_factory.mktemp("yolo_config")
    fresh = "ultralytics" not in sys.modules
    with pytest.MonkeyPatch.context() as mp:
        guard = network_blocker(mp)
        det = YoloDetector("yolov8n.yaml", conf=0.0, iou=0.45, max_det=5, imgsz=160, config_dir=cfg_dir, batch_size=5)
        det.detect([Image.new("RGB", (32, 32))])
    assert guard.attempts == [], guard.attempts
    if fresh:  # ultralytics' settings live in our writable dir
        from ultralytics.utils import USER_CONFIG_DIR

        assert USER_CONFIG_DIR == cfg_dir / "Ultralytics"
    return det


def test_yolo_random_model_on_synthetic_image(yolo, no_network):
    import os

    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["YOLO_AUTOINSTALL"] == "0"
    im = Image.new("RGB", (120, 80), (40, 160, 90))
    im.paste((200, 20, 20), (30, 20, 70, 60))
    grey = Image.new("L", (64, 64), 100)
    out = yolo.detect([im, grey])
    assert len(out) == 2
    assert all(len(d) >= 1 for d in out)  # conf=0.0: a random model still emits boxes
    for dets in out:
        _assert_valid(dets)
        assert len(dets) <= 5
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
        for d in dets:
            assert crop(im, d.box).size[0] >= 1
    assert yolo.detect([]) == []
    assert no_network.attempts == []


def test_yolo_on_real_images_batched(yolo, real_images, no_network, monkeypatch):
    images = [open_image(p) for p in real_images]
    out = yolo.detect(images)  # 12 images in batches of 5
    assert len(out) == len(images) == 12
    assert sum(len(d) for d in out) > 0
    for dets in out:
        _assert_valid(dets)
    monkeypatch.setattr(yolo, "conf", 0.99)  # a random model is never that sure
    strict = yolo.detect(images[:3])
    assert len(strict) == 3
    for dets in strict:
        _assert_valid(dets)
    assert no_network.attempts == []


def test_yolo_pt_round_trip(yolo, tmp_path, clean_env, monkeypatch, no_network):
    import torch

    pt = tmp_path / "tiny-yolo.pt"
    yolo.model.save(pt)
    assert pt.is_file()
    monkeypatch.setenv("MMRE_OFFLINE", "1")
    det = build_detector(str(pt), conf=0.0, max_det=3, imgsz=160)
    assert isinstance(det, YoloDetector) and det.max_det == 3
    saved = {k: v.float() for k, v in yolo.model.model.state_dict().items()}
    loaded = det.model.model.state_dict()
    assert set(saved) == set(loaded)
    for k, v in saved.items():  # ultralytics saves fp16
        if v.is_floating_point():
            torch.testing.assert_close(loaded[k].float(), v, atol=1e-2, rtol=1e-2)
    out = det.detect([Image.new("RGB", (90, 70), (10, 10, 10))])
    assert len(out) == 1 and 1 <= len(out[0]) <= 3
    _assert_valid(out[0])
    # the resolver path: MMRE_YOLO_WEIGHTS, then the cache by name
    monkeypatch.setenv("MMRE_YOLO_WEIGHTS", str(pt))
    assert build_detector(None).weights == str(pt.resolve())
    monkeypatch.delenv("MMRE_YOLO_WEIGHTS")
    (clean_env / "yolov8n.pt").write_bytes(pt.read_bytes())
    assert build_detector("").weights == str((clean_env / "yolov8n.pt").resolve())
    assert no_network.attempts == []


def test_yolo_corrupt_pt_is_an_mmre_error(yolo, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(MmreError, match="cannot load YOLO model"):
        YoloDetector(bad)
