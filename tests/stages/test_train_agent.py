"""train-agent's Algorithm 1: rounds of editor episodes and classifier training on the edited graphs."""

from __future__ import annotations

import json

import pytest

from tests.stages.test_first_stages import minilm_available, offline, run_stages, sample_params  # noqa: F401


@pytest.fixture(scope="module")
def cmg(tmp_path_factory, offline, minilm_available):  # noqa: F811
    return run_stages(tmp_path_factory.mktemp("rounds"), sample_params())["cmg"]


def test_two_rounds_retrain_the_classifier_and_report_each_round(cmg, tmp_path):
    from mmre_cli.learn.checkpoint import load_checkpoint
    from stages import train_agent

    params = sample_params(
        **{
            "train_agent.episodes": 1,
            "train_agent.warmup_epochs": 1,
            "train_agent.rounds": 2,
            "train_agent.round_epochs": 1,
            "train_agent.evidence_penalty": 1.0,
            "train_gnn.hidden": 32,
            "train_gnn.heads": 2,
        }
    )
    out = tmp_path / "agent"
    stats = train_agent.run(cmg=cmg, out=out, params=params, plots=tmp_path / "plots")
    rounds = stats["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    # the classifier's weights change between rounds (Alg. 1 carries and retrains it)
    assert rounds[0]["classifier_sha256"] != rounds[1]["classifier_sha256"]
    for r in rounds:
        for key in ("node_filter_ratio", "edge_adjust_ratio", "add_rate", "val_f1_edited", "val_f1_unedited"):
            assert 0.0 <= r[key] <= 1.0 + 1e-9, key
        assert sum(v for k, v in r.items() if k.startswith("deleted_")) >= 0
    # the saved classifier is the last round's
    import hashlib

    clf, _ = load_checkpoint(out, "classifier")
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in clf.state_dict().values())).hexdigest()[:16]
    assert digest == rounds[-1]["classifier_sha256"]
    assert (tmp_path / "plots" / "agent_rounds.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "stats.json").read_text())["rounds"][1]["round"] == 2


def test_one_round_is_the_warm_up_classifier_as_before(cmg, tmp_path):
    from stages import train_agent

    params = sample_params(
        **{"train_agent.episodes": 1, "train_agent.warmup_epochs": 1, "train_gnn.hidden": 32, "train_gnn.heads": 2}
    )
    stats = train_agent.run(cmg=cmg, out=tmp_path / "agent", params=params)
    assert "rounds" not in stats and not (tmp_path / "agent" / "agent_rounds.csv").exists()


class _Killed(Exception):
    pass


class _KillAt:
    """A reporter that raises at the first message starting with ``prefix`` (a simulated kill)."""

    def __init__(self, prefix: str):
        from mmre_cli.reporting import NullReporter

        self.inner, self.prefix = NullReporter(), prefix

    def info(self, message: str) -> None:
        if message.startswith(self.prefix):
            raise _Killed(message)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("kill_at", ["epoch 2:", "round 1/2", "round 2/2"])
def test_resume_after_a_kill_gives_the_uninterrupted_editor(cmg, tmp_path, kill_at):
    """Killed in the warm-up, after round 1's classifier, in round 2: --resume ends with the same
    editor, classifier and step log as a run that was never stopped."""
    from mmre_cli.hashing import sha256_file
    from stages import train_agent

    params = sample_params(
        **{
            "train_agent.episodes": 2,
            "train_agent.warmup_epochs": 2,
            "train_agent.rounds": 2,
            "train_agent.round_epochs": 1,
            "train_gnn.hidden": 32,
            "train_gnn.heads": 2,
        }
    )
    whole = tmp_path / "whole"
    train_agent.run(cmg=cmg, out=whole, params=params)
    out = tmp_path / "killed"
    with pytest.raises(_Killed):
        train_agent.run(cmg=cmg, out=out, params=params, reporter=_KillAt(kill_at))
    assert (out / "checkpoint").is_dir() and not (out / "agent.safetensors").exists()
    train_agent.run(cmg=cmg, out=out, params=params, resume=True)
    for name in ("agent.safetensors", "classifier.safetensors", "steps.csv"):
        assert sha256_file(out / name) == sha256_file(whole / name), name
    assert not (out / "checkpoint").exists()


# -------------------------------------------------------------------------------------------------
# issue 26: a trained (fine-tuned) classifier as the reward model


def test_a_trained_model_is_the_reward_classifier_and_reads_the_words(cmg, tmp_path):
    """``reward_model``: no warm-up fit; the saved model is the reward classifier, scored once on
    val, and the editor's batches carry the words it re-encodes."""
    import torch

    from mmre_cli.learn.checkpoint import load_checkpoint, save_checkpoint
    from mmre_cli.learn.finetune import FinetunedRelationModel
    from mmre_cli.pipeline.learning import label_info
    from stages import train_agent

    labels, none_id = label_info(cmg)
    torch.manual_seed(0)
    model = FinetunedRelationModel(384, len(labels), markers="special", readout="gnn_markers", hidden=32, layers=1)
    folder = tmp_path / "ft_model"
    save_checkpoint(folder, "model", model.eval(), {"labels": labels, "none_id": none_id})
    params = sample_params(**{"train_agent.episodes": 1, "train_agent.reward_model": str(folder)})
    out = tmp_path / "agent"
    stats = train_agent.run(cmg=cmg, out=out, params=params)
    assert stats["agent_steps"] > 0
    clf, meta = load_checkpoint(out, "classifier")
    assert type(clf).__name__ == "FinetunedRelationModel"
    assert [h["epoch"] for h in meta["history"]] == [0]  # scored, not trained
    assert meta["history"][0]["val_micro_f1"] == pytest.approx(stats["classifier_val_f1"])
    saved = load_checkpoint(folder, "model")[0].state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in clf.state_dict().items())  # the reward model is not trained


def test_reward_model_refuses_an_ensemble_folder_and_rounds_before_reading_any_graph(tmp_path):
    from mmre_cli.errors import MmreError
    from stages import train_agent

    cmg = tmp_path / "no_such_cmg"  # the refusals come first: the missing CMG is never reached

    ens = tmp_path / "ens"
    (ens / "members" / "seed13").mkdir(parents=True)
    (ens / "members" / "seed13" / "model.json").write_text("{}")
    with pytest.raises(MmreError, match=r"holds no train-gnn model \(an ensemble: name one member, e\.g\. .*seed13"):
        train_agent.run(cmg=cmg, out=tmp_path / "a", params=sample_params(**{"train_agent.reward_model": str(ens)}))
    params = sample_params(**{"train_agent.reward_model": str(ens), "train_agent.rounds": 2})
    with pytest.raises(MmreError, match="rounds > 1"):
        train_agent.run(cmg=cmg, out=tmp_path / "b", params=params)
