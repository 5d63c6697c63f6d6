"""`mmre train-gnn`'s kinds of model (fine-tuned MiniLM, a Hugging Face encoder with caption pairs or a
caption pass, the classifier switches, a model of the merged CMGs), each trained through the stage or
the CLI on the sample: `mmre predict` gives what `mmre evaluate` scores."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmre_cli.cli.app import app
from tests.cli.cli_helpers import json_lines, query_args, run_predict, runner, tiny_finetune_params, val_query


def _predict_equals_evaluate(model: Path, trained: dict, graphs: Path | None = None) -> list[str]:
    """``mmre predict`` on val line 1 (with its caption) gives evaluate's prediction on ``graphs``
    (default: the diffused graphs); returns the argv."""
    from mmre_cli.predict.scoring import score_split

    v = val_query(1)
    args = [*query_args(v), "--model", str(model), "--json"]
    out = run_predict(*args)
    assert out.exit_code == 0, out.output
    (line,) = json_lines(out)
    scored = score_split(model, graphs or trained["diffused"], "val")
    k = scored["ids"].index("val-000002")
    assert scored["labels"][int(scored["pred"][k])] == line["relation"]
    assert abs(float(scored["prob"][k].max()) - line["probability"]) < 0.01
    return args


def test_finetuned_model_trains_evaluates_and_predicts(trained, tmp_path):
    """train_gnn.model=finetune: MiniLM trained with the GNN; evaluate and predict feed it the words."""
    from mmre_cli.features.minilm import resolve_minilm_dir
    from mmre_cli.params import DEFAULTS
    from stages import train_gnn

    if resolve_minilm_dir(None) is None:
        pytest.skip("all-MiniLM-L6-v2 weights not installed")
    params = copy.deepcopy(DEFAULTS)
    params["train_gnn"].update(model="finetune", epochs=1, hidden=32, heads=2, train_layers=1, batch_size=16)
    model = tmp_path / "ft_model"
    result = train_gnn.run(graphs=trained["diffused"], out=model, params=params, agent=trained["root"] / "agent")
    assert result["model"] == "finetune" and result["epochs_run"] == 1
    assert json.loads((model / "model.json").read_text())["model_class"] == "FinetunedRelationModel"
    # a fresh process (mmre evaluate, mmre predict) loads it without importing the fine-tuning module first
    code = (
        "import sys; from mmre_cli.learn.checkpoint import load_checkpoint; "
        "print(type(load_checkpoint(sys.argv[1], 'model')[0]).__name__)"
    )
    fresh = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True)
    assert fresh.returncode == 0 and fresh.stdout.strip() == "FinetunedRelationModel", fresh.stderr[-2000:]

    _predict_equals_evaluate(model, trained)


def test_hf_encoder_with_caption_pairs_trains_evaluates_and_predicts(trained, tmp_path, tiny_bert):
    """train_gnn.encoder=hf (a tiny random BERT folder) over MiniLM features, the caption as 2nd segment."""
    from stages import train_gnn

    params = tiny_finetune_params(tiny_bert, caption_tokens=8)
    model = tmp_path / "hf_model"
    train_gnn.run(graphs=trained["diffused"], out=model, params=params, agent=trained["root"] / "agent")
    kwargs = json.loads((model / "model.json").read_text())["model_kwargs"]
    assert kwargs["encoder"] == "hf" and kwargs["caption_tokens"] == 8 and kwargs["in_dim"] == 384
    pipeline = json.loads((model / "pipeline.json").read_text())
    assert pipeline["finetune_encoder"].startswith("hf:model:")

    args = _predict_equals_evaluate(model, trained)

    # another tokenizer under the same name is refused, not silently mis-read
    pipeline["finetune_encoder"] = "hf:model:0000000000000000"
    (model / "pipeline.json").write_text(json.dumps(pipeline))
    refused = run_predict(*args)
    assert refused.exit_code == 2 and "fine-tuned encoder mismatch" in refused.output


@pytest.mark.parametrize(
    ("readout", "parts"),
    [("gnn_markers", "joined"), ("markers", "separate"), ("gnn_markers", "weighted")],
    ids=["gnn_markers", "markers_separate", "gnn_markers_weighted"],
)
def test_a_caption_pass_model_predicts_as_it_evaluates_and_reads_the_given_caption(
    trained, tmp_path, tiny_bert, readout, parts
):
    """train_gnn.caption_pass (the caption's own pass) + relation_text: predict = evaluate, and the
    caption given to predict is the one the model reads (with caption_parts=separate, a " ; "-joined
    caption is read as one pass per part)."""
    from stages import train_gnn

    params = tiny_finetune_params(tiny_bert, caption_pass=16, caption_parts=parts, readout=readout, relation_text=True)
    model = tmp_path / "caption_pass_model"
    train_gnn.run(graphs=trained["diffused"], out=model, params=params, agent=trained["root"] / "agent")
    kwargs = json.loads((model / "model.json").read_text())["model_kwargs"]
    assert kwargs["caption_pass"] == 16 and kwargs["readout"] == readout and len(kwargs["relation_descriptions"]) > 1
    assert kwargs["caption_parts"] == parts
    args = _predict_equals_evaluate(model, trained)
    k = args.index("--image-caption")
    first = json_lines(run_predict(*args))[0]
    typed = "a completely different scene ; a red car on a wet road"
    other = json_lines(run_predict(*args[: k + 1], typed, *args[k + 2 :]))[0]
    assert first["probability"] != other["probability"] or first["top3"] != other["top3"]


def test_a_caption_cache_is_written_once_and_read_by_the_next_run(trained, tmp_path, tiny_bert):
    """--caption-cache: the first run encodes every caption and writes the store; a second run (another
    out folder) encodes none and trains the same model; the help explains the option."""
    from safetensors.torch import load_file

    from mmre_cli.reporting import NullReporter
    from stages import train_gnn

    params = tiny_finetune_params(tiny_bert, caption_pass=16, caption_parts="separate", readout="markers")
    store, weights = tmp_path / "captions", []
    for run in ("first", "second"):
        reporter = NullReporter()
        train_gnn.run(
            graphs=trained["diffused"],
            out=tmp_path / run,
            params=params,
            agent=trained["root"] / "agent",
            reporter=reporter,
            caption_cache=store,
        )
        (line,) = [m for m in reporter.messages if m.startswith("caption pass:")]
        weights.append(load_file(str(tmp_path / run / "model.safetensors")))
        if run == "first":
            texts = int(line.split()[2])
            assert texts > 0 and f"{texts} encoded, 0 read from" in line
        else:
            assert f"0 encoded, {texts} read from {store}" in line
    assert len(list(store.glob("*/*.safetensors"))) >= 1
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # evaluate reads the same store (val captions are in it) and scores as without it
    from mmre_cli.params import DEFAULTS
    from stages import evaluate

    scores = [
        evaluate.run(
            model=tmp_path / "second", graphs=trained["diffused"], out=tmp_path / f"eval{i}", params=DEFAULTS, **kw
        )["micro_f1"]
        for i, kw in enumerate([{}, {"caption_cache": store}])
    ]
    assert scores[0] == scores[1]
    for command in ("train-gnn", "evaluate", "run"):
        shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert "--caption-cache" in shown.output and "MMRE_CAPTION_CACHE" in shown.output


@pytest.mark.parametrize(
    "switches",
    [
        ("train_gnn.graph_encoder=hop_attention",),
        ("train_gnn.fusion=mm_qformer",),
        ("train_gnn.loss=ce+negative_learning",),
        ("train_gnn.graph_encoder=hop_attention", "train_gnn.fusion=mm_qformer", "train_gnn.loss=ce+negative_learning"),
    ],
    ids=["hop_attention", "mm_qformer", "negative_learning", "all_three"],
)
def test_classifier_switches_train_through_the_cli_and_predict(trained, tmp_path, switches):
    """Issue 12: `mmre train-gnn -S train_gnn.<switch>=...` trains; predict and evaluate agree."""
    model = tmp_path / "model"
    sets = [a for s in switches for a in ("-S", s)]
    result = runner.invoke(
        app,
        [
            "train-gnn",
            "--graphs",
            str(trained["diffused"]),
            "--agent",
            str(trained["root"] / "agent"),
            "--out",
            str(model),
            "-S",
            "train_gnn.epochs=1",
            "-S",
            "train_gnn.hidden=32",
            "-S",
            "train_gnn.heads=2",
            *sets,
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((model / "model.json").read_text())["model_kwargs"]
    for s in switches:
        key, value = s.removeprefix("train_gnn.").split("=")
        expect = {"graph_encoder": ("conv", {"hop_attention": "hop_attention"})}.get(key)
        if expect:
            assert config[expect[0]] == expect[1][value]
        else:
            assert config[key] == value
    recorded = json.loads((model / "pipeline.json").read_text())["params"]["train_gnn"]
    assert all(str(recorded[s.split("=")[0].removeprefix("train_gnn.")]) == s.split("=")[1] for s in switches)
    _predict_equals_evaluate(model, trained)


def test_finetuned_model_with_all_switches_predicts(trained, tmp_path):
    from mmre_cli.features.minilm import resolve_minilm_dir
    from mmre_cli.params import DEFAULTS
    from stages import train_gnn

    if resolve_minilm_dir(None) is None:
        pytest.skip("all-MiniLM-L6-v2 weights not installed")
    params = copy.deepcopy(DEFAULTS)
    params["train_gnn"].update(
        model="finetune",
        epochs=1,
        hidden=32,
        heads=2,
        train_layers=1,
        batch_size=16,
        graph_encoder="hop_attention",
        fusion="mm_qformer",
        loss="ce+negative_learning",
    )
    model = tmp_path / "ft_switches"
    train_gnn.run(graphs=trained["diffused"], out=model, params=params, agent=trained["root"] / "agent")
    config = json.loads((model / "model.json").read_text())["model_kwargs"]
    assert (config["conv"], config["fusion"], config["loss"]) == ("hop_attention", "mm_qformer", "ce+negative_learning")
    _predict_equals_evaluate(model, trained)


def test_unknown_switch_value_is_one_clear_error(trained, tmp_path):
    result = runner.invoke(
        app,
        [
            "train-gnn",
            "--graphs",
            str(trained["diffused"]),
            "--out",
            str(tmp_path / "m"),
            "--agent",
            str(trained["root"] / "agent"),
            "-S",
            "train_gnn.fusion=transformer",
            "-q",
        ],
    )
    assert result.exit_code != 0
    assert "train_gnn.fusion must be one of none | mm_qformer" in result.output


def test_a_finetuned_model_trained_on_the_merged_cmgs_evaluates_and_predicts(trained, tmp_path, tiny_bert):
    """The w/o-editor-and-diffusion setup (train-gnn straight on merge-cmg's output, as configs/mnre_cpu
    does through diffuse with both off): the model records both as disabled, so evaluate and predict
    rebuild the same graphs."""
    from stages import train_gnn

    params = tiny_finetune_params(tiny_bert)
    model = tmp_path / "cmg_model"
    cmg = trained["root"] / "cmg"
    train_gnn.run(graphs=cmg, out=model, params=params, agent=trained["root"] / "agent")
    pipeline = json.loads((model / "pipeline.json").read_text())["params"]
    assert pipeline["train_agent"]["enabled"] is False and pipeline["diffuse"]["enabled"] is False
    assert not (model / "agent.safetensors").exists()
    _predict_equals_evaluate(model, trained, graphs=cmg)


def test_a_student_distils_from_the_teachers_train_predictions(trained, tmp_path):
    """train_gnn.distill_from: evaluate's train-split distribution is the soft target; a val file is refused."""
    from mmre_cli.errors import MmreError
    from mmre_cli.params import DEFAULTS
    from stages import evaluate, train_gnn

    params = copy.deepcopy(DEFAULTS)
    params["evaluate"]["split"] = "train"
    evaluate.run(model=trained["model"], graphs=trained["diffused"], out=tmp_path / "teach", params=params)
    params = copy.deepcopy(DEFAULTS)
    params["train_gnn"].update(epochs=1, hidden=16, heads=2, distill_from=str(tmp_path / "teach"), distill_weight=1.0)
    result = train_gnn.run(graphs=trained["diffused"], out=tmp_path / "student", params=params)
    assert result["epochs_run"] == 1 and result["train_graphs"] > 0
    recorded = json.loads((tmp_path / "student" / "pipeline.json").read_text())
    assert recorded["params"]["train_gnn"]["distill_from"] == str(tmp_path / "teach")

    params["evaluate"]["split"] = "val"
    evaluate.run(model=trained["model"], graphs=trained["diffused"], out=tmp_path / "val", params=params)
    params["train_gnn"]["distill_from"] = str(tmp_path / "val")
    with pytest.raises(MmreError, match="no probabilities for .* training graphs"):
        train_gnn.run(graphs=trained["diffused"], out=tmp_path / "wrong", params=params)
    assert not (tmp_path / "wrong").exists()
