"""`mmre predict` on bad input: a damaged model folder, a decompression bomb, a bad batch line or
argument — one `error:` line and exit 2, argument errors before any model loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.cli_helpers import json_lines, run_predict, val_query


def _bad_model(trained, tmp_path, edit=None, drop=None) -> Path:
    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    if drop:
        (model / drop).unlink()
    if edit:
        pipeline = json.loads((model / "pipeline.json").read_text())
        pipeline.update(edit)
        (model / "pipeline.json").write_text(json.dumps(pipeline))
    return model


def _bomb(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)  # 400 MP declared, a few kB on disk
    return path


@pytest.mark.parametrize(
    "case",
    [
        "missing_image",
        "not_an_image",
        "too_many_pixels",
        "empty_text",
        "head_not_in_text",
        "only_head",
        "incompatible_version",
        "incompatible_schema",
        "missing_weights",
        "missing_pipeline",
        "no_model_folder",
        "encoder_mismatch",
        "explain_folder_missing",
        "tail_only_inside_head",
        "bad_span",
    ],
)
def test_bad_input_is_one_line_and_exit_2(trained, tmp_path, case):
    v = val_query(0)
    image, text, extra = v["image"], v["text"], ["--head", v["head"], "--tail", v["tail"]]
    model = trained["model"]
    expect = ""
    if case == "missing_image":
        image, expect = str(tmp_path / "nope.jpg"), "not found"
    elif case == "not_an_image":
        fake = tmp_path / "photo.jpg"
        fake.write_text("this is text, not a JPEG")
        image, expect = str(fake), "not an image"
    elif case == "too_many_pixels":
        image, expect = str(_bomb(tmp_path)), "too many pixels"
    elif case == "empty_text":
        text, extra, expect = "   ", [], "text is empty"
    elif case == "head_not_in_text":
        extra, expect = ["--head", "Somebody Else", "--tail", v["tail"]], "is not in the text"
    elif case == "only_head":
        extra, expect = ["--head", v["head"]], "both --head and --tail"
    elif case == "incompatible_version":
        model, expect = _bad_model(trained, tmp_path, edit={"mmre_version": "9.0.0"}), "incompatible model"
    elif case == "incompatible_schema":
        model, expect = _bad_model(trained, tmp_path, edit={"schema_version": 99}), "incompatible model"
    elif case == "missing_weights":
        model, expect = _bad_model(trained, tmp_path, drop="model.safetensors"), "missing model.safetensors"
    elif case == "missing_pipeline":
        model, expect = _bad_model(trained, tmp_path, drop="pipeline.json"), "missing pipeline.json"
    elif case == "no_model_folder":
        model, expect = tmp_path / "nothing", "no model folder"
    elif case == "encoder_mismatch":
        model = _bad_model(
            trained, tmp_path, edit={"encoder": "minilm:all-MiniLM-L6-v2:sha256=0000000000000000:size=1"}
        )
        expect = "sha256=0000000000000000"
    elif case == "explain_folder_missing":
        extra, expect = extra + ["--explain", str(tmp_path / "no" / "such" / "x.png")], "does not exist"
    elif case == "tail_only_inside_head":
        text, extra, expect = "Camila Cabello sings", ["--head", "Camila Cabello", "--tail", "Camila"], "only inside"
    if case == "bad_span":
        batch = tmp_path / "b.jsonl"
        batch.write_text(json.dumps({"text": "Camila Cabello sings", "head": [0, 2], "tail": [1, 9]}) + "\n")
        result = run_predict("--batch", str(batch), "--model", str(model))
        expect = "past the text's 3 tokens"  # the only line: every line skipped, the first reason named
    else:
        result = run_predict(image, text, *extra, "--model", str(model), "--json")
    assert result.exit_code == 2, (case, result.output)
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, (case, result.stderr)
    message = errors[0]
    assert expect in message, (case, result.stderr)
    if case == "encoder_mismatch":
        assert "minilm:all-MiniLM-L6-v2:sha256=" in message.replace("0000000000000000", "")


def test_token_spans_in_batch_lines_put_the_tail_where_it_is_said(trained, tmp_path):
    """ "Camila" inside "Camila Cabello": by words the tail cannot be placed; by span it can."""
    batch = tmp_path / "spans.jsonl"
    batch.write_text(
        json.dumps({"text": "Camila Cabello met Camila in Miami", "head": [0, 2], "tail": [3, 4]})
        + "\n"
        + json.dumps({"text": "Camila Cabello met Camila in Miami", "head": "Camila Cabello", "tail": "Camila"})
        + "\n"
    )
    result = run_predict("--batch", str(batch), "--model", str(trained["model"]), "--json")
    assert result.exit_code == 0, result.output
    by_span, by_words = json_lines(result)
    assert (by_span["head"], by_span["tail"]) == ("Camila Cabello", "Camila")
    # by words the tail's free occurrence (token 3) is taken, not the one inside the head
    assert (by_words["head"], by_words["tail"]) == ("Camila Cabello", "Camila")
    assert by_span["probability"] == by_words["probability"]


@pytest.mark.parametrize("case", ["head_not_in_text", "same_words"])
def test_argument_errors_come_before_any_model_loads(trained, monkeypatch, case):
    """A bad --head/--tail is refused before any model is loaded: with the model loader made to
    fail, the refusal is still the argument's own message (no timing: speed lives in bench/)."""
    from mmre_cli.predict.predictor import Predictor

    def no_load(*_, **__):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(Predictor, "__init__", no_load)
    v = val_query(0)
    head, tail, expect = {
        "head_not_in_text": ("Somebody Else", v["tail"], "is not in the text"),
        "same_words": (v["head"], v["head"].upper(), "--head and --tail name the same words"),
    }[case]
    bad = run_predict(v["image"], v["text"], "--head", head, "--tail", tail, "--model", str(trained["model"]))
    assert bad.exit_code == 2 and expect in bad.stderr, bad.stderr
    assert "model was loaded" not in bad.output
