"""MORE reader: visual tails, rel2id, torch-free ent_{split}_dict.pth."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import pytest

from mmre_cli.data.instance import Entity
from mmre_cli.data.load import load_split
from mmre_cli.data.locate import detect_format, split_files
from mmre_cli.data.more import load_object_dict, load_torch_pickle
from mmre_cli.errors import InputError


def _torch_zip(path, obj, inner="archive"):
    """Write what torch.save writes for a plain dict: a zip with <inner>/data.pkl."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{inner}/data.pkl", pickle.dumps(obj, protocol=2))
        zf.writestr(f"{inner}/version", "3\n")
    return path


def test_more_detect_and_load(fixture_copy, make_image):
    d = fixture_copy("more")
    assert detect_format(d) == "more"
    assert set(split_files(d, "more")) == {"train", "valid"}
    make_image(d / "img_org" / "train" / "m1.jpg")
    insts, rep = load_split(d, "train")
    assert rep.format == "more" and rep.kept == 3
    a = insts[0]
    assert a.head == Entity("Ivy", 0, 1)
    assert a.tail == Entity("bike", -1, -1, box=(0.5, 0.6, 0.3, 0.2)) and a.tail.is_visual
    assert a.image_status == "ok" and insts[2].image_status == "missing"
    assert rep.label_counts == {"/per/rides": 1, "none": 1, "/per/holds": 1}


def test_more_val_alias_uses_valid_files(fixture_copy, make_image):
    d = fixture_copy("more")
    make_image(d / "img_org" / "valid" / "m3.jpg")
    insts, rep = load_split(d, "val")
    assert rep.kept == 1 and insts[0].split == "val" and insts[0].image_status == "ok"


def test_more_object_dict_attached(fixture_copy):
    d = fixture_copy("more")
    _torch_zip(d / "ent_train_dict.pth", {"m1.jpg": {"bike": [0.5, 0.6, 0.3, 0.2], "dog": (0.1, 0.2, 0.1, 0.1)}})
    insts, _ = load_split(d, "train")
    assert insts[0].extra["objects"] == {"bike": (0.5, 0.6, 0.3, 0.2), "dog": (0.1, 0.2, 0.1, 0.1)}
    assert "objects" not in insts[2].extra  # m2.jpg has no entry


def test_torch_pickle_legacy_and_unsafe(tmp_path):
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(InputError, match="legacy"):
        load_torch_pickle(legacy)

    buf = io.BytesIO()
    pickle.dump({"x": os.system}, buf)  # any non-builtin global must be refused
    bad = tmp_path / "bad.pth"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
    with pytest.raises(InputError, match="refusing to load"):
        load_torch_pickle(bad)
    nopkl = tmp_path / "nopkl.pth"
    with zipfile.ZipFile(nopkl, "w") as zf:
        zf.writestr("archive/version", "3")
    with pytest.raises(InputError, match="no data.pkl"):
        load_torch_pickle(nopkl)


def test_object_dict_bad_box(tmp_path):
    p = _torch_zip(tmp_path / "ent_train_dict.pth", {"m1.jpg": {"bike": [0.5, 0.6, 1.3, 0.2]}})
    with pytest.raises(InputError, match=r"image 'm1.jpg'.*outside \[0, 1\]"):
        load_object_dict(p)


class _Payload:
    """Unpickling this runs code: ``__reduce__`` asks for ``os.system(...)`` to be called."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pth_with_a_malicious_reduce_is_refused_and_runs_nothing(tmp_path):
    import torch

    marker = tmp_path / "pwned"
    evil = tmp_path / "ent_train_dict.pth"
    torch.save({"m1.jpg": _Payload(marker)}, evil)  # a real torch zip, as a third party would ship it
    with pytest.raises(InputError, match="refusing to load"):
        load_object_dict(evil)
    assert not marker.exists()
    # the same file through torch's own safe loader is refused too (what the checkpoints use)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(evil, weights_only=True)
    assert not marker.exists()
