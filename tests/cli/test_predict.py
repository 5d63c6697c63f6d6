"""``mmre predict``: the trained pipeline on new input and its output forms (bad input: test_predict_errors.py).

One tiny model is trained once per session (`tests/cli/conftest.py`) with the stages' own ``run()`` functions on the
shipped sample (epochs 1, small GNN): MiniLM + spaCy sm, captions as the image's view.
"""

from __future__ import annotations

import json
import shutil

from mmre_cli.cli.app import app
from tests.cli.cli_helpers import json_lines, query_args, run_predict, runner, val_query, write_lines


def test_table_for_one_sample_instance(trained):
    v = val_query(0)
    result = run_predict(*query_args(v), "--model", str(trained["model"]))
    assert result.exit_code == 0, result.output
    for word in ("head", "relation", "tail", "probability", "Nadia Holt", "Kestrel Motors"):
        assert word in result.stdout


def test_json_keys_and_same_result_as_the_stages(trained):
    """predict on a val line gives what evaluate gives on the stage-built refined graph."""
    from mmre_cli.predict.scoring import score_split

    v = val_query(1)
    result = run_predict(*query_args(v), "--model", str(trained["model"]), "--json")
    assert result.exit_code == 0, result.output
    (line,) = json_lines(result)
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

    v = val_query(1)
    out = run_predict(*query_args(v), "--model", str(trained["model"]), "--model", str(second_model), "--json")
    assert out.exit_code == 0, out.output
    (line,) = json_lines(out)
    members = [score_split(m, trained["diffused"], "val") for m in (trained["model"], second_model)]
    both = ensemble_scores(members)
    k = both["ids"].index("val-000002")
    assert both["labels"][int(both["pred"][k])] == line["relation"]
    assert abs(float(both["prob"][k].max()) - line["probability"]) < 1e-4
    for alone in members:  # and it is not either member's own probability
        assert abs(float(alone["prob"][alone["ids"].index("val-000002")].max()) - line["probability"]) > 1e-3


def test_batch_of_three_lines(trained, tmp_path):
    a, b = val_query(2), val_query(3)
    (tmp_path / "img").mkdir()
    shutil.copy(a["image"], tmp_path / "img" / "a.png")
    lines = [
        {"image": "img/a.png", "text": a["text"], "head": a["head"], "tail": a["tail"], "caption": a["caption"]},
        {"image": b["image"], "text": b["text"], "head": b["head"], "tail": b["tail"], "caption": b["caption"]},
        {"text": b["text"], "head": b["head"], "tail": b["tail"]},
    ]  # text-only
    batch = tmp_path / "batch.jsonl"
    batch.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    result = run_predict("--batch", str(batch), "--model", str(trained["model"]), "--json")
    assert result.exit_code == 0, result.output
    out = json_lines(result)
    assert len(out) == 3
    assert out[0]["image"] == str((tmp_path / "img" / "a.png").resolve()) and out[2]["image"] is None
    assert [o["head"] for o in out] == [a["head"], b["head"], b["head"]]


def test_batch_skips_exactly_the_bad_lines_and_exits_2_at_the_end(trained, tmp_path):
    a, b = val_query(2), val_query(3)
    fake = tmp_path / "fake.jpg"
    fake.write_text("this is text, not a JPEG")
    good = [
        {"text": a["text"], "head": a["head"], "tail": a["tail"]},
        {"text": b["text"], "head": b["head"], "tail": b["tail"]},
    ]
    lines = [
        json.dumps(good[0]),
        "{not json",
        json.dumps(good[1]),
        json.dumps({"text": "Camila Cabello sings", "head": [0, 2], "tail": [1, 9]}),
        json.dumps({**good[0], "image": "fake.jpg"}),
        json.dumps({**good[1], "colour": "red"}),
        "",
    ]
    batch = tmp_path / "mixed.jsonl"
    batch.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")  # a BOM in front, a blank line
    report = tmp_path / "skipped.jsonl"
    result = run_predict("--batch", str(batch), "--model", str(trained["model"]), "--json", "--skipped", str(report))
    assert result.exit_code == 2, result.output
    out = json_lines(result)
    assert [o["head"] for o in out] == [a["head"], b["head"]]
    alone = run_predict(
        "--batch", str(write_lines(tmp_path / "good.jsonl", good)), "--model", str(trained["model"]), "--json"
    )
    drop = lambda rows: [{k: v for k, v in r.items() if k != "source"} for r in rows]  # noqa: E731
    assert alone.exit_code == 0 and drop(json_lines(alone)) == drop(out)  # the good lines as if alone
    skipped = [json.loads(x) for x in report.read_text().splitlines()]
    assert [s["where"] for s in skipped] == [f"{batch}:{n}" for n in (2, 4, 5, 6)]
    reasons = [s["reason"] for s in skipped]
    assert "not valid JSON" in reasons[0] and "past the text's 3 tokens" in reasons[1]
    assert "not an image" in reasons[2] and "colour" in reasons[3]
    assert sum(line.startswith("warning: skipped") for line in result.stderr.splitlines()) == 4
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: 4 of 6 batch lines skipped as bad input (listed above); the others were predicted"]
    strict = run_predict("--batch", str(batch), "--model", str(trained["model"]), "--json", "--on-error", "fail")
    assert strict.exit_code == 2 and strict.stdout == "" and f"{batch}:2" in strict.stderr


def test_ner_pairs_without_head_and_tail(trained):
    result = run_predict(
        val_query(0)["image"],
        "Barack Obama met Angela Merkel in Berlin on Tuesday.",
        "--image-caption",
        "Two people shake hands.",
        "--model",
        str(trained["model"]),
        "--json",
        "--max-pairs",
        "4",
    )
    assert result.exit_code == 0, result.output
    out = json_lines(result)
    assert len(out) == 4 and all(o["pairs_from"] == "ner" for o in out)
    assert all(o["head"] != o["tail"] for o in out)
    assert "Tuesday" not in {o["head"] for o in out} | {o["tail"] for o in out}  # dates are not proposed


def test_no_entities_says_so_and_exits_2(trained):
    result = run_predict(val_query(0)["image"], "the weather is nice today", "--model", str(trained["model"]))
    assert result.exit_code == 2
    assert "fewer than two named entities" in result.output and "Traceback" not in result.output


def test_explain_writes_a_png(trained, tmp_path):
    v, picture = val_query(2), tmp_path / "why.png"
    result = run_predict(*query_args(v), "--model", str(trained["model"]), "--explain", str(picture))
    assert result.exit_code == 0, result.output
    assert picture.stat().st_size > 10_000 and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_caption_warns_and_predicts_text_only(trained):
    v = val_query(0)
    result = run_predict(*query_args(v, caption=False), "--model", str(trained["model"]), "--json")
    assert result.exit_code == 0, result.output
    assert "trained with captions" in result.stderr and len(json_lines(result)) == 1


# -- bad input: one line on stderr, exit 2, never a traceback -----------------------------------------


def test_captioner_captions_a_raw_image_for_a_caption_model(trained, tiny_blip, monkeypatch):
    """`mmre predict img.jpg "text"` on a model that reads captions: --captioner writes the caption
    (a tiny random BLIP through the real loading code), and the prediction is the one with that caption."""
    v = val_query(0)
    base = [*query_args(v, caption=False), "--model", str(trained["model"]), "--json"]
    result = run_predict(*base, "--captioner", str(tiny_blip))
    assert result.exit_code == 0, result.output
    assert result.stderr.count("caption by") == 1
    from mmre_cli.features.captioner import Captioner

    caption = Captioner(tiny_blip)(v["image"])
    assert caption
    (line,) = json_lines(result)
    (given,) = json_lines(run_predict(*base, "--image-caption", caption))
    assert (line["relation"], line["probability"]) == (given["relation"], given["probability"])
    # the environment variable does the same; neither given: a note says how to get one
    monkeypatch.setenv("MMRE_CAPTIONER", str(tiny_blip))
    assert "caption by" in run_predict(*base).stderr
    monkeypatch.delenv("MMRE_CAPTIONER")
    plain = run_predict(*base)
    assert plain.exit_code == 0 and "--captioner MODEL" in plain.stderr


def test_a_captioner_that_is_not_one_is_a_clear_error(trained, tmp_path):
    v = val_query(0)
    result = run_predict(
        *query_args(v, caption=False), "--model", str(trained["model"]), "--captioner", str(tmp_path / "nothing-here")
    )
    assert result.exit_code == 2 and "cannot load an image-to-text model" in result.stderr


# -- issue 24: text kept verbatim, argument checks first, the batch table's line numbers -----------


def test_user_text_with_square_brackets_is_reported_verbatim(trained, tmp_path):
    v = val_query(0)
    image = tmp_path / "a[b].png"
    shutil.copy(v["image"], image)
    bad = run_predict(str(image), v["text"], "--head", v["head"], "--tail", "[x]", "--model", str(trained["model"]))
    assert bad.exit_code == 2 and "error: --tail '[x]' is not in the text" in bad.stderr, bad.stderr
    missing = run_predict(str(tmp_path / "c[d].jpg"), v["text"], "--model", str(trained["model"]))
    assert missing.exit_code == 2 and "c[d].jpg: image file not found" in missing.stderr, missing.stderr
    good = run_predict(
        str(image),
        v["text"],
        "--head",
        v["head"],
        "--tail",
        v["tail"],
        "--image-caption",
        v["caption"],
        "--model",
        str(trained["model"]),
    )
    assert good.exit_code == 0, good.output
    assert "[image: a[b].png]" in good.stdout, good.stdout


def test_the_same_words_twice_in_the_text_are_a_pair(trained):
    v = val_query(0)
    # the same words twice in the text are a pair (the tail is looked for away from the head)
    twice = run_predict(
        v["image"],
        "Paris met Paris in Paris",
        "--head",
        "Paris",
        "--tail",
        "Paris",
        "--model",
        str(trained["model"]),
        "--json",
    )
    assert twice.exit_code == 0, twice.output


def test_batch_table_numbers_the_input_lines(trained, tmp_path):
    a, b = val_query(2), val_query(3)
    lines = [
        json.dumps({"text": a["text"], "head": a["head"], "tail": a["tail"]}),
        "{not json",
        "",
        json.dumps({"text": b["text"], "head": b["head"], "tail": b["tail"]}),
    ]
    batch = tmp_path / "b.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    result = runner.invoke(
        app, ["predict", "--batch", str(batch), "--model", str(trained["model"])], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2, result.output
    rows = [line.split("│")[1:3] for line in result.stdout.splitlines() if line.startswith("│")]
    numbered = [(n.strip(), head.strip()) for n, head in rows if n.strip()]
    assert numbered == [("1", a["head"]), ("4", b["head"])], result.stdout


def test_quiet_hides_warnings_but_not_the_skipped_lines(trained, tmp_path):
    v = val_query(0)
    loud = run_predict(*query_args(v, caption=False), "--model", str(trained["model"]))
    assert "warning:" in loud.stderr  # no caption given to a caption model
    quiet = run_predict(*query_args(v, caption=False), "--model", str(trained["model"]), "-q")
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
    batch = tmp_path / "b.jsonl"
    batch.write_text(json.dumps({"text": v["text"], "head": v["head"], "tail": v["tail"]}) + "\n{not json\n")
    skipped = run_predict("--batch", str(batch), "--model", str(trained["model"]), "-q", "--json")
    assert skipped.exit_code == 2
    assert [line.split(":")[0] for line in skipped.stderr.splitlines()] == ["warning", "error"], skipped.stderr


def _option_help(command: str, name: str) -> str:
    import typer

    (param,) = [p for p in typer.main.get_command(app).commands[command].params if p.name == name]
    return param.help


def test_the_batch_help_example_is_a_line_predict_accepts(trained, tmp_path):
    help_text = _option_help("predict", "batch")
    example = help_text[help_text.index("e.g. ") + 5 : help_text.rindex("}") + 1]
    batch = tmp_path / "example.jsonl"
    batch.write_text(example + "\n")
    result = run_predict("--batch", str(batch), "--model", str(trained["model"]), "--json")
    assert result.exit_code == 0, (example, result.output)
    assert len(json_lines(result)) == 1


def test_json_help_names_every_field_a_prediction_has(trained, tmp_path):
    v = val_query(0)
    batch = tmp_path / "b.jsonl"
    batch.write_text(json.dumps(v) + "\n")
    result = run_predict("--batch", str(batch), "--model", str(trained["model"]), "--json")
    (line,) = json_lines(result)
    import re

    fields = _option_help("predict", "json_out").split("pair:", 1)[1]
    assert {"caption", "pairs_from", "source"} <= set(line)
    for key in line:
        assert re.search(rf"(^|[ ,]){key}[ ,(]", fields), key
