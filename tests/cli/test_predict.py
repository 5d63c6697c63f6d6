"""``mmre predict``: the trained pipeline on new input, its output forms, and bad input (exit 2).

One tiny model is trained once per session (`tests/cli/conftest.py`) with the stages' own ``run()`` functions on the
shipped sample (epochs 1, small GNN): MiniLM + spaCy sm, captions as the image's view.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmre_cli.cli.app import app

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
runner = CliRunner()


def _val(i: int) -> dict:
    """Line ``i`` of the sample's val split with its caption: image, text, head, tail, caption."""
    rec = ast.literal_eval((SAMPLE / "ours_val.txt").read_text().splitlines()[i])
    caps = {d["img_id"]: d["text"] for d in map(ast.literal_eval, (SAMPLE / "captions_val.txt").read_text().splitlines())}
    return {"image": str(SAMPLE / "img_org" / "val" / rec["img_id"]), "text": " ".join(rec["token"]),
            "head": rec["h"]["name"], "tail": rec["t"]["name"], "caption": caps[rec["img_id"]]}


def _predict(*argv: str):
    return runner.invoke(app, ["predict", *argv])


def _json_lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_table_for_one_sample_instance(trained):
    v = _val(0)
    result = _predict(v["image"], v["text"], "--head", v["head"], "--tail", v["tail"], "--image-caption", v["caption"],
                      "--model", str(trained["model"]))
    assert result.exit_code == 0, result.output
    for word in ("head", "relation", "tail", "probability", "Nadia Holt", "Kestrel Motors"):
        assert word in result.stdout


def test_json_keys_and_same_result_as_the_stages(trained):
    """predict on a val line gives what evaluate gives on the stage-built refined graph."""
    from mmre_cli.predict.scoring import score_split

    v = _val(1)
    result = _predict(v["image"], v["text"], "--head", v["head"], "--tail", v["tail"], "--image-caption", v["caption"],
                      "--model", str(trained["model"]), "--json")
    assert result.exit_code == 0, result.output
    (line,) = _json_lines(result)
    assert {"head", "tail", "relation", "probability", "top3", "text", "image"} <= set(line)
    assert line["head"] == v["head"] and line["tail"] == v["tail"] and line["image"].endswith("sample_val_001.png")
    assert len(line["top3"]) == 3 and line["top3"][0] == [line["relation"], line["probability"]]
    scored = score_split(trained["model"], trained["diffused"], "val")
    k = scored["ids"].index("val-000002")
    assert scored["labels"][int(scored["pred"][k])] == line["relation"]
    assert abs(float(scored["prob"][k].max()) - line["probability"]) < 0.01


def test_an_ensemble_predicts_the_mean_of_its_members(trained, second_model):
    """--model twice: the relation and probability of the mean of both models' probabilities,
    as ``mmre evaluate`` scores that ensemble on the stage-built graphs."""
    from mmre_cli.predict.scoring import ensemble_scores, score_split

    v = _val(1)
    out = _predict(v["image"], v["text"], "--head", v["head"], "--tail", v["tail"], "--image-caption", v["caption"],
                   "--model", str(trained["model"]), "--model", str(second_model), "--json")
    assert out.exit_code == 0, out.output
    (line,) = _json_lines(out)
    members = [score_split(m, trained["diffused"], "val") for m in (trained["model"], second_model)]
    both = ensemble_scores(members)
    k = both["ids"].index("val-000002")
    assert both["labels"][int(both["pred"][k])] == line["relation"]
    assert abs(float(both["prob"][k].max()) - line["probability"]) < 1e-4
    for alone in members:  # and it is not either member's own probability
        assert abs(float(alone["prob"][alone["ids"].index("val-000002")].max()) - line["probability"]) > 1e-3


def test_batch_of_three_lines(trained, tmp_path):
    a, b = _val(2), _val(3)
    (tmp_path / "img").mkdir()
    shutil.copy(a["image"], tmp_path / "img" / "a.png")
    lines = [{"image": "img/a.png", "text": a["text"], "head": a["head"], "tail": a["tail"], "caption": a["caption"]},
             {"image": b["image"], "text": b["text"], "head": b["head"], "tail": b["tail"], "caption": b["caption"]},
             {"text": b["text"], "head": b["head"], "tail": b["tail"]}]  # text-only
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    result = _predict("--batch", str(batch), "--model", str(trained["model"]), "--json")
    assert result.exit_code == 0, result.output
    out = _json_lines(result)
    assert len(out) == 3
    assert out[0]["image"] == str((tmp_path / "img" / "a.png").resolve()) and out[2]["image"] is None
    assert [o["head"] for o in out] == [a["head"], b["head"], b["head"]]


def test_batch_skips_exactly_the_bad_lines_and_exits_2_at_the_end(trained, tmp_path):
    a, b = _val(2), _val(3)
    fake = tmp_path / "fake.jpg"
    fake.write_text("this is text, not a JPEG")
    good = [{"text": a["text"], "head": a["head"], "tail": a["tail"]}, {"text": b["text"], "head": b["head"], "tail": b["tail"]}]
    lines = [json.dumps(good[0]), "{not json", json.dumps(good[1]),
             json.dumps({"text": "Camila Cabello sings", "head": [0, 2], "tail": [1, 9]}),
             json.dumps({**good[0], "image": "fake.jpg"}), json.dumps({**good[1], "colour": "red"}), ""]
    batch = tmp_path / "mixed.jsonl"
    batch.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")  # a BOM in front, a blank line
    report = tmp_path / "skipped.jsonl"
    result = _predict("--batch", str(batch), "--model", str(trained["model"]), "--json", "--skipped", str(report))
    assert result.exit_code == 2, result.output
    out = _json_lines(result)
    assert [o["head"] for o in out] == [a["head"], b["head"]]
    alone = _predict("--batch", str(_write(tmp_path / "good.jsonl", good)), "--model", str(trained["model"]), "--json")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "source"} for r in rows]  # noqa: E731
    assert alone.exit_code == 0 and drop(_json_lines(alone)) == drop(out)  # the good lines as if alone
    skipped = [json.loads(x) for x in report.read_text().splitlines()]
    assert [s["where"] for s in skipped] == [f"{batch}:{n}" for n in (2, 4, 5, 6)]
    reasons = [s["reason"] for s in skipped]
    assert "not valid JSON" in reasons[0] and "past the text's 3 tokens" in reasons[1]
    assert "not an image" in reasons[2] and "colour" in reasons[3]
    assert sum(line.startswith("warning: skipped") for line in result.stderr.splitlines()) == 4
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: 4 of 6 batch lines skipped as bad input (listed above); the others were predicted"]
    strict = _predict("--batch", str(batch), "--model", str(trained["model"]), "--json", "--on-error", "fail")
    assert strict.exit_code == 2 and strict.stdout == "" and f"{batch}:2" in strict.stderr


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_ner_pairs_without_head_and_tail(trained):
    result = _predict(_val(0)["image"], "Barack Obama met Angela Merkel in Berlin on Tuesday.", "--image-caption",
                      "Two people shake hands.", "--model", str(trained["model"]), "--json", "--max-pairs", "4")
    assert result.exit_code == 0, result.output
    out = _json_lines(result)
    assert len(out) == 4 and all(o["pairs_from"] == "ner" for o in out)
    assert all(o["head"] != o["tail"] for o in out)
    assert "Tuesday" not in {o["head"] for o in out} | {o["tail"] for o in out}  # dates are not proposed


def test_no_entities_says_so_and_exits_2(trained):
    result = _predict(_val(0)["image"], "the weather is nice today", "--model", str(trained["model"]))
    assert result.exit_code == 2
    assert "fewer than two named entities" in result.output and "Traceback" not in result.output


def test_explain_writes_a_png(trained, tmp_path):
    v, picture = _val(2), tmp_path / "why.png"
    result = _predict(v["image"], v["text"], "--head", v["head"], "--tail", v["tail"], "--image-caption", v["caption"],
                      "--model", str(trained["model"]), "--explain", str(picture))
    assert result.exit_code == 0, result.output
    assert picture.stat().st_size > 10_000 and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_caption_warns_and_predicts_text_only(trained):
    v = _val(0)
    result = _predict(v["image"], v["text"], "--head", v["head"], "--tail", v["tail"], "--model", str(trained["model"]), "--json")
    assert result.exit_code == 0, result.output
    assert "trained with captions" in result.stderr and len(_json_lines(result)) == 1


# -- bad input: one line on stderr, exit 2, never a traceback -----------------------------------------


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


@pytest.mark.parametrize("case", ["missing_image", "not_an_image", "too_many_pixels", "empty_text", "head_not_in_text",
                                  "only_head", "incompatible_version", "incompatible_schema", "missing_weights",
                                  "missing_pipeline", "no_model_folder", "encoder_mismatch",
                                  "explain_folder_missing", "tail_only_inside_head", "bad_span"])
def test_bad_input_is_one_line_and_exit_2(trained, tmp_path, case):
    v = _val(0)
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
        model = _bad_model(trained, tmp_path, edit={"encoder": "minilm:all-MiniLM-L6-v2:sha256=0000000000000000:size=1"})
        expect = "sha256=0000000000000000"
    elif case == "explain_folder_missing":
        extra, expect = extra + ["--explain", str(tmp_path / "no" / "such" / "x.png")], "does not exist"
    elif case == "tail_only_inside_head":
        text, extra, expect = "Camila Cabello sings", ["--head", "Camila Cabello", "--tail", "Camila"], "only inside"
    if case == "bad_span":
        batch = tmp_path / "b.jsonl"
        batch.write_text(json.dumps({"text": "Camila Cabello sings", "head": [0, 2], "tail": [1, 9]}) + "\n")
        result = _predict("--batch", str(batch), "--model", str(model))
        expect = "past the text's 3 tokens"  # the only line: every line skipped, the first reason named
    else:
        result = _predict(image, text, *extra, "--model", str(model), "--json")
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
    batch.write_text(json.dumps({"text": "Camila Cabello met Camila in Miami", "head": [0, 2], "tail": [3, 4]}) + "\n"
                     + json.dumps({"text": "Camila Cabello met Camila in Miami", "head": "Camila Cabello",
                                   "tail": "Camila"}) + "\n")
    result = _predict("--batch", str(batch), "--model", str(trained["model"]), "--json")
    assert result.exit_code == 0, result.output
    by_span, by_words = _json_lines(result)
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
    v = _val(0)
    head, tail, expect = {"head_not_in_text": ("Somebody Else", v["tail"], "is not in the text"),
                          "same_words": (v["head"], v["head"].upper(), "--head and --tail name the same words")}[case]
    bad = _predict(v["image"], v["text"], "--head", head, "--tail", tail, "--model", str(trained["model"]))
    assert bad.exit_code == 2 and expect in bad.stderr, bad.stderr
    assert "model was loaded" not in bad.output


def test_captioner_captions_a_raw_image_for_a_caption_model(trained, tiny_blip, monkeypatch):
    """`mmre predict img.jpg "text"` on a model that reads captions: --captioner writes the caption
    (a tiny random BLIP through the real loading code), and the prediction is the one with that caption."""
    v = _val(0)
    base = [v["image"], v["text"], "--head", v["head"], "--tail", v["tail"], "--model", str(trained["model"]), "--json"]
    result = _predict(*base, "--captioner", str(tiny_blip))
    assert result.exit_code == 0, result.output
    assert result.stderr.count("caption by") == 1
    from mmre_cli.features.captioner import Captioner

    caption = Captioner(tiny_blip)(v["image"])
    assert caption
    (line,) = _json_lines(result)
    (given,) = _json_lines(_predict(*base, "--image-caption", caption))
    assert (line["relation"], line["probability"]) == (given["relation"], given["probability"])
    # the environment variable does the same; neither given: a note says how to get one
    monkeypatch.setenv("MMRE_CAPTIONER", str(tiny_blip))
    assert "caption by" in _predict(*base).stderr
    monkeypatch.delenv("MMRE_CAPTIONER")
    plain = _predict(*base)
    assert plain.exit_code == 0 and "--captioner MODEL" in plain.stderr


def test_a_captioner_that_is_not_one_is_a_clear_error(trained, tmp_path):
    v = _val(0)
    result = _predict(v["image"], v["text"], "--head", v["head"], "--tail", v["tail"], "--model", str(trained["model"]),
                      "--captioner", str(tmp_path / "nothing-here"))
    assert result.exit_code == 2 and "cannot load an image-to-text model" in result.stderr


# -- issue 24: text kept verbatim, argument checks first, the batch table's line numbers -----------


def test_user_text_with_square_brackets_is_reported_verbatim(trained, tmp_path):
    v = _val(0)
    image = tmp_path / "a[b].png"
    shutil.copy(v["image"], image)
    bad = _predict(str(image), v["text"], "--head", v["head"], "--tail", "[x]", "--model", str(trained["model"]))
    assert bad.exit_code == 2 and "error: --tail '[x]' is not in the text" in bad.stderr, bad.stderr
    missing = _predict(str(tmp_path / "c[d].jpg"), v["text"], "--model", str(trained["model"]))
    assert missing.exit_code == 2 and "c[d].jpg: image file not found" in missing.stderr, missing.stderr
    good = _predict(str(image), v["text"], "--head", v["head"], "--tail", v["tail"], "--image-caption", v["caption"],
                    "--model", str(trained["model"]))
    assert good.exit_code == 0, good.output
    assert "[image: a[b].png]" in good.stdout, good.stdout


def test_the_same_words_twice_in_the_text_are_a_pair(trained):
    v = _val(0)
    # the same words twice in the text are a pair (the tail is looked for away from the head)
    twice = _predict(v["image"], "Paris met Paris in Paris", "--head", "Paris", "--tail", "Paris",
                     "--model", str(trained["model"]), "--json")
    assert twice.exit_code == 0, twice.output


def test_batch_table_numbers_the_input_lines(trained, tmp_path):
    a, b = _val(2), _val(3)
    lines = [json.dumps({"text": a["text"], "head": a["head"], "tail": a["tail"]}), "{not json", "",
             json.dumps({"text": b["text"], "head": b["head"], "tail": b["tail"]})]
    batch = tmp_path / "b.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["predict", "--batch", str(batch), "--model", str(trained["model"])], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    rows = [line.split("│")[1:3] for line in result.stdout.splitlines() if line.startswith("│")]
    numbered = [(n.strip(), head.strip()) for n, head in rows if n.strip()]
    assert numbered == [("1", a["head"]), ("4", b["head"])], result.stdout


def test_quiet_hides_warnings_but_not_the_skipped_lines(trained, tmp_path):
    v = _val(0)
    loud = _predict(v["image"], v["text"], "--head", v["head"], "--tail", v["tail"], "--model", str(trained["model"]))
    assert "warning:" in loud.stderr  # no caption given to a caption model
    quiet = _predict(v["image"], v["text"], "--head", v["head"], "--tail", v["tail"], "--model", str(trained["model"]), "-q")
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
    batch = tmp_path / "b.jsonl"
    batch.write_text(json.dumps({"text": v["text"], "head": v["head"], "tail": v["tail"]}) + "\n{not json\n")
    skipped = _predict("--batch", str(batch), "--model", str(trained["model"]), "-q", "--json")
    assert skipped.exit_code == 2
    assert [line.split(":")[0] for line in skipped.stderr.splitlines()] == ["warning", "error"], skipped.stderr


def _option_help(command: str, name: str) -> str:
    import typer

    (param,) = [p for p in typer.main.get_command(app).commands[command].params if p.name == name]
    return param.help


def test_the_batch_help_example_is_a_line_predict_accepts(trained, tmp_path):
    help_text = _option_help("predict", "batch")
    example = help_text[help_text.index("e.g. ") + 5:help_text.rindex("}") + 1]
    batch = tmp_path / "example.jsonl"
    batch.write_text(example + "\n")
    result = _predict("--batch", str(batch), "--model", str(trained["model"]), "--json")
    assert result.exit_code == 0, (example, result.output)
    assert len(_json_lines(result)) == 1


def test_json_help_names_every_field_a_prediction_has(trained, tmp_path):
    v = _val(0)
    batch = tmp_path / "b.jsonl"
    batch.write_text(json.dumps(v) + "\n")
    result = _predict("--batch", str(batch), "--model", str(trained["model"]), "--json")
    (line,) = _json_lines(result)
    import re

    fields = _option_help("predict", "json_out").split("pair:", 1)[1]
    assert {"caption", "pairs_from", "source"} <= set(line)
    for key in line:
        assert re.search(rf"(^|[ ,]){key}[ ,(]", fields), key
