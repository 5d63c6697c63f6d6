"""Bad input at scale: a generated 1,200-instance JSONL corpus with faults mixed in goes through the
whole chain with ``on_error: skip`` / ``image_policy: skip``; exactly the bad instances are left
out, each with its reason in ``skipped.jsonl`` and counted in the stage stats, and every artifact
equals the chain's on the good instances alone (every table row but its source line, the weights
byte for byte, the predictions)."""

from __future__ import annotations

import ast
import copy
import json
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from mmre_cli.hashing import sha256_file

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
N_GOOD = {"train": 1000, "val": 120}


def _good_records(split: str, n: int) -> list[dict]:
    """``n`` valid records from the sample's lines (unique ids, the sample's images)."""
    lines = [ast.literal_eval(x) for x in (SAMPLE / f"ours_{split}.txt").read_text().splitlines() if x.strip()]
    out = []
    for k in range(n):
        r = lines[k % len(lines)]
        out.append(
            {
                "id": f"{split}-{k:05d}",
                "tokens": r["token"],
                "head": {"name": r["h"]["name"], "pos": r["h"]["pos"]},
                "tail": {"name": r["t"]["name"], "pos": r["t"]["pos"]},
                "image": f"img/{split}/{r['img_id']}",
                "relation": r["relation"],
            }
        )
    return out


def _bad_images(folder: Path) -> dict[str, str]:
    """Broken image files -> the reason kind their instance must be skipped for."""
    folder.mkdir(parents=True, exist_ok=True)
    good = next((SAMPLE / "img_org" / "train").iterdir()).read_bytes()
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image")
    (folder / "broken.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + bytes(random.Random(0).randrange(256) for _ in range(300))
    )
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # 400 MP declared, a few kB on disk
    return {
        f"img/bad/{n}": "unreadable image" for n in ("zero.png", "text.jpg", "broken.png", "truncated.png", "bomb.png")
    }


def _faults(split: str, good: list[dict], images: dict[str, str]) -> list[tuple[int, bytes, str]]:
    """``(insert before good line k, raw line bytes, reason)``: one of each fault kind, several times."""
    base = good[3]
    faults = []

    def add(k, record_or_bytes, reason):
        raw = record_or_bytes if isinstance(record_or_bytes, bytes) else json.dumps(record_or_bytes).encode()
        faults.append((k, raw, reason))

    for rep in range(3):
        k = 7 + 97 * rep
        add(k, b"{'token': ['not', 'json'", "invalid JSON")
        add(
            k + 1,
            json.dumps({**base, "id": f"{split}-latin-{rep}", "tokens": ["Caf\u00e9"] + base["tokens"][1:]})
            .encode("utf-8")
            .replace("\\u00e9".encode(), "\u00e9".encode("latin-1")),
            "not UTF-8",
        )
        add(k + 2, {**base, "id": f"{split}-span-{rep}", "head": {"name": "x", "pos": [40, 42]}}, "span out of range")
        add(k + 3, {**base, "id": f"{split}-empty-{rep}", "tokens": []}, "empty tokens")
        add(k + 4, {**good[0], "id": good[0]["id"]}, "duplicate id")
        add(k + 5, {**base, "id": f"{split}-label-{rep}", "relation": "/per/per/nemesis"}, "unknown relation")
        add(k + 6, {**base, "id": f"{split}-noimg-{rep}", "image": "img/nowhere.png"}, "missing image")
        for j, (image, reason) in enumerate(images.items()):
            add(k + 7 + j, {**base, "id": f"{split}-img{j}-{rep}", "image": image}, reason)
    return faults


def _write_corpus(root: Path, faulty: bool) -> dict[str, list[str]]:
    """The corpus (with or without the faults); returns the expected skip reasons per split."""
    root.mkdir(parents=True)
    shutil.copy(SAMPLE / "ours_rel2id.json", root / "rel2id.json")
    for split in ("train", "val"):
        shutil.copytree(SAMPLE / "img_org" / split, root / "img" / split)
    images = _bad_images(root / "img" / "bad") if faulty else {}
    expected = {}
    for split, n in N_GOOD.items():
        good = _good_records(split, n)
        lines = [json.dumps(r).encode() for r in good]
        reasons = []
        if faulty:
            for k, raw, _reason in sorted(_faults(split, good, images), key=lambda f: -f[0]):
                lines.insert(k, raw)
            reasons = [reason for _, _, reason in sorted(_faults(split, good, images), key=lambda f: f[0])]
        body = b"\n".join(lines) + b"\n"
        (root / f"{split}.jsonl").write_bytes((b"\xef\xbb\xbf" if split == "train" else b"") + body)  # a BOM is fine
        expected[split] = reasons
    if faulty:  # captions for images nobody names: ignored, not an error
        (root / "captions_train.txt").write_text("img/nope.png\ta caption of an unknown image\n")
    return expected


def _chain(work: Path, params: dict) -> dict:
    """The seven stages through the CLI in ``work`` (corpus in ``work/corpus``, outputs in
    ``work/out``), each in a fresh process (as a user runs them). ``data.root`` is the relative
    ``corpus``, so two chains in two folders run with the same params."""
    import subprocess
    import sys

    import yaml

    p = copy.deepcopy(params)
    p["data"].update(root="corpus")
    (work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    mmre = str(Path(sys.executable).with_name("mmre"))
    steps = [
        ["extract-features", "corpus", "--out", "out/features"],
        ["build-graphs", "corpus", "--features", "out/features", "--out", "out/graphs"],
        ["merge-cmg", "--features", "out/features", "--graphs", "out/graphs", "--out", "out/cmg"],
        ["train-agent", "--cmg", "out/cmg", "--out", "out/agent"],
        ["diffuse", "--cmg", "out/cmg", "--agent", "out/agent", "--out", "out/diffused"],
        ["train-gnn", "--graphs", "out/diffused", "--agent", "out/agent", "--out", "out/model"],
        ["evaluate", "--model", "out/model", "--graphs", "out/diffused", "--out", "out/eval"],
    ]
    env = {**__import__("os").environ, "MMRE_TORCH_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for step in steps:
        run = subprocess.run(
            [mmre, *step, "--params", "params.yaml", "-q"], cwd=work, env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, (step[0], run.stderr[-3000:])
    out = work / "out"
    return {
        "extract_features": json.loads((out / "features" / "stats.json").read_text()),
        "evaluate": json.loads((out / "eval" / "stats.json").read_text()),
    }


def _contents(out: Path) -> dict[str, object]:
    """What must not depend on the faults: every table (but the rows' ``source`` line; image paths
    below the chain's folder), the weights, the predictions (but their ``source``)."""
    import pyarrow.parquet as pq

    got: dict[str, object] = {}
    for f in sorted(out.rglob("*.parquet")):
        table = pq.read_table(f)
        rows = table.drop_columns([c for c in ("source",) if c in table.column_names]).to_pylist()
        # NaN boxes compare equal; image paths are compared below the chain's own folder
        got[str(f.relative_to(out))] = json.dumps(rows, sort_keys=True, default=str).replace(str(out.parent), "WORK")
    for f in sorted(out.rglob("*.safetensors")):
        got[str(f.relative_to(out))] = sha256_file(f)
    rows = [json.loads(x) for x in (out / "eval" / "predictions.jsonl").read_text().splitlines()]
    got["predictions"] = [{k: v for k, v in r.items() if k != "source"} for r in rows]
    return got


@pytest.mark.slow
def test_a_faulty_corpus_skips_exactly_the_bad_instances(tmp_path):
    from mmre_cli.params import DEFAULTS

    params = copy.deepcopy(DEFAULTS)
    params["data"].update(format="jsonl", on_error="skip", image_policy="skip", captions=None)
    params["extract_features"].update(workers=0)
    params["train_agent"].update(episodes=1, warmup_epochs=1)
    params["train_gnn"].update(epochs=1, hidden=32, heads=2)

    expected = _write_corpus(tmp_path / "faulty" / "corpus", faulty=True)
    _write_corpus(tmp_path / "clean" / "corpus", faulty=False)
    with ThreadPoolExecutor(2) as pool:  # the two chains side by side, one torch thread each
        faulty, clean = pool.map(lambda work: _chain(work, params), (tmp_path / "faulty", tmp_path / "clean"))

    ef = faulty["extract_features"]
    assert ef["instances"] == sum(N_GOOD.values()) == clean["extract_features"]["instances"]
    report = [
        json.loads(x) for x in (tmp_path / "faulty" / "out" / "features" / "skipped.jsonl").read_text().splitlines()
    ]
    assert ef["skipped"] == len(report) == sum(len(v) for v in expected.values()) == 2 * 3 * 12
    for split, reasons in expected.items():
        got = [r["reason"] for r in report if f"{split}.jsonl:" in r["where"]]
        assert sorted(got) == sorted(reasons), split
        assert sum(ef["splits"][split]["skipped"].values()) == len(reasons)
    assert all(r["message"] for r in report)
    assert (tmp_path / "clean" / "out" / "features" / "skipped.jsonl").read_text() == ""
    assert _contents(tmp_path / "faulty" / "out") == _contents(tmp_path / "clean" / "out")
    assert faulty["evaluate"]["micro_f1"] == clean["evaluate"]["micro_f1"]
