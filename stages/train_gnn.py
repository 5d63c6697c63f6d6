"""DVC stage ``train_gnn``: the relation classifier over the refined graphs.

Fits :class:`~mmre_cli.learn.gnn.RelationGNN` (or :class:`~mmre_cli.learn.gnn.PooledMLP`, the
"w/o GNN" ablation, with ``model: pooled``; or, with ``model: finetune``,
:class:`~mmre_cli.learn.finetune.FinetunedRelationModel`: the same GNN with a text encoder
(``encoder``: the features' one, or ``mpnet`` / ``hf``) fine-tuned end to end, learning rate
``enc_lr`` for it and ``lr`` for the rest, the caption as its second segment with
``caption_tokens``,
``warmup`` fraction of linear warm-up then linear decay) on the train split, keeping the epoch
with the best val micro-F1 (peer metric). The output folder is a self-describing model for ``mmre predict``:
``model.safetensors`` + ``model.json`` (labels, none id, encoder, history), the editor
(``agent.*``, copied from train-agent when enabled) and ``pipeline.json`` (the effective params
of every stage, the encoder fingerprint, mmre and schema versions).

**Ensembles.** With ``ensemble: k > 1`` the stage trains ``k`` models that differ only in their
seed (``seed``, ``seed + 1``, …): the first is the model folder itself (every reader of a model
folder works as before), the others go to ``members/seed<S>/`` inside it, and ``pipeline.json``
lists them under ``ensemble``. ``mmre evaluate`` and ``mmre predict`` then use the mean of the
``k`` models' class probabilities (:func:`mmre_cli.predict.scoring.ensemble_scores`). ``k``
times the training time; with ``resume`` a member already written is kept.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch

from mmre_cli.errors import MmreError
from mmre_cli.features.text_networks import TEXT_ENCODERS
from mmre_cli.hashing import sha256_file
from mmre_cli.learn.checkpoint import save_checkpoint
from mmre_cli.learn.finetune_training import fit_finetuned
from mmre_cli.learn.resume import STATE_DIR
from mmre_cli.learn.trainer import fit_classifier
from mmre_cli.params import DEFAULTS, declared, params_hash, select, stage_view
from mmre_cli.pipeline.classifiers import build_classifier
from mmre_cli.pipeline.learning import TrainingSetup, apply_pair_captions, apply_teacher, loader, needs_words
from mmre_cli.pipeline.records import finish, merge_records, upstream_params, write_plots
from mmre_cli.plots import curves_png
from mmre_cli.predict.folder import AGENT_FILES, MEMBERS_DIR, PIPELINE_FILE, list_members, write_pipeline
from mmre_cli.reporting import Reporter, reporter_or_null
from mmre_cli.store.manifest import read_manifest
from mmre_cli.store.predictions import predictions_path

#: the params this stage reads (dvc.yaml lists the same; tests/test_params_declared.py);
#: data.on_error: what a malformed line of train_gnn.pair_captions does
PARAMS = declared(
    "train_gnn.model",
    "train_gnn.hidden",
    "train_gnn.layers",
    "train_gnn.heads",
    "train_gnn.dropout",
    "train_gnn.epochs",
    "train_gnn.lr",
    "train_gnn.weight_decay",
    "train_gnn.batch_size",
    "train_gnn.class_weights",
    "train_gnn.patience",
    "train_gnn.seed",
    "train_gnn.enc_lr",
    "train_gnn.markers",
    "train_gnn.train_layers",
    "train_gnn.warmup",
    "train_gnn.layer_decay",
    "train_gnn.rdrop",
    "train_gnn.ema",
    "train_gnn.distill_from",
    "train_gnn.distill_weight",
    "train_gnn.distill_temperature",
    "train_gnn.ensemble",
    "train_gnn.encoder",
    "train_gnn.encoder_weights",
    "train_gnn.caption_tokens",
    "train_gnn.caption_pass",
    "train_gnn.caption_parts",
    "train_gnn.caption_pool",
    "train_gnn.caption_dropout",
    "train_gnn.pair_captions",
    "train_gnn.readout",
    "train_gnn.relation_text",
    "train_gnn.precision",
    "train_gnn.graph_encoder",
    "train_gnn.hop_alpha",
    "train_gnn.hop_k",
    "train_gnn.fusion",
    "train_gnn.queries",
    "train_gnn.loss",
    "train_gnn.nl_weight",
    "data.on_error",
)


def _finetune_encoder(graphs: Path, cfg: dict) -> tuple[str, str | None]:
    """``(encoder, weights)`` fine-tuned: ``train_gnn.encoder`` (+ ``encoder_weights``), or by
    default the text encoder the features came from (with its weights).

    Raises:
        MmreError: no text encoder to fine-tune (e.g. CLIP features and no ``train_gnn.encoder``).
    """
    ef = upstream_params(graphs).get("extract_features", {})
    name = cfg.get("encoder") or ef.get("encoder")
    if str(name).lower() not in TEXT_ENCODERS:
        raise MmreError(
            f"train_gnn.model=finetune fine-tunes a text encoder ({', '.join(TEXT_ENCODERS)}), but the "
            f"features were made by '{ef.get('encoder')}'; set train_gnn.encoder (e.g. minilm or mpnet)"
        )
    if cfg.get("encoder_weights"):
        return str(name).lower(), str(cfg["encoder_weights"])
    same = not cfg.get("encoder") or str(cfg["encoder"]).lower() == str(ef.get("encoder")).lower()
    return str(name).lower(), ef.get("weights") if same else None


def _editor_to_copy(graphs: Path, agent: Path | None) -> Path | None:
    """The train-agent folder whose editor goes into the model folder, or ``None`` when the graphs
    were not edited (``train_agent.enabled: false``) or no folder is given.

    Raises:
        MmreError: the graphs were edited but ``agent`` lacks the editor's files.
    """
    if agent is None or not upstream_params(graphs).get("train_agent", {}).get("enabled"):
        return None
    agent = Path(agent)
    missing = [n for n in AGENT_FILES if not (agent / n).is_file()]
    if missing:
        raise MmreError(
            f"{graphs} was edited by the RL editor, but {agent} has no {', '.join(missing)}: pass "
            f"--agent with train-agent's output folder (the model carries the editor for predict)"
        )
    return agent


def _precision(asked: str, device, reporter) -> str:
    """``train_gnn.precision`` for this device (``auto``: bf16 where it is native, else 32), said
    aloud; an explicit ``bf16`` where it is emulated trains, with a warning of the cost."""
    from mmre_cli.learn.precision import bf16_is_native, resolve_precision  # looked up per call (tests patch it)

    try:
        chosen = resolve_precision(asked, device)
    except ValueError as e:
        raise MmreError(f"train_gnn.{e}") from None
    native = bf16_is_native(device)
    if chosen == "bf16" and not native:
        where = f"CPU ({torch.backends.cpu.get_cpu_capability()})" if device.type == "cpu" else device.type
        reporter.warn(
            f"train_gnn.precision=bf16 on a {where} without native bfloat16: autocast is emulated, "
            "~14x slower than float32 on an AVX2 CPU; use precision: auto or 32"
        )
    elif asked == "auto":
        reporter.info(
            f"train_gnn.precision=auto: {'bfloat16 autocast' if chosen == 'bf16' else 'float32'} "
            f"({'native' if native else 'no native'} bfloat16 on this {device.type})"
        )
    return chosen


def _draw_train_curve(rows: list[dict], path: Path) -> Path:
    return curves_png(
        rows,
        "epoch",
        [["loss", "val_loss"], ["val_f1", "val_acc"]],
        path,
        "train-gnn: loss and val scores per epoch (best epoch kept)",
        ["loss", "val score"],
    )


def _read_captions(reader, graphs: list, cache: Path | None, device, reporter: Reporter) -> None:
    """The frozen caption pass (``caption_pass``) over every caption the graphs' batches will carry,
    before epoch 1 and with a progress bar, shortest first; through the state store at ``cache``
    when given (:mod:`mmre_cli.learn.caption_store`), so another run or seed reads them from disk."""
    from mmre_cli.graphs.refine import edited_caption

    reader.to(device)
    if cache is not None:
        reader.use_store(cache)
    captions = [edited_caption(g.meta) or None for g in graphs]
    texts = {p for c in captions for p in reader.split(c)}
    with reporter.progress("caption pass", total=len(texts)) as task:
        encoded = reader.prefill(captions, progress=task)
    where = f", {len(texts) - encoded} read from {cache}" if cache is not None else ""
    reporter.info(f"caption pass: {len(texts)} caption texts, {encoded} encoded{where}")


def _run_ensemble(
    k: int, *, graphs: Path, out: Path, params: dict, stats: Path | None = None, reporter: Reporter | None = None, **kw
) -> dict:
    """Train the ``k - 1`` other members under ``out/members/seed<S>``, then the first model in
    ``out`` (module docstring); its ``pipeline.json`` lists the members and ``stats.json`` their
    val scores."""

    def summary(folder: str, member_seed: int, result: dict) -> dict:
        return {
            "model": folder,
            "seed": member_seed,
            **{key: result.get(key) for key in ("best_epoch", "val_micro_f1", "train_seconds")},
        }

    reporter = reporter_or_null(reporter)
    seed = int(params["train_gnn"]["seed"])
    rel, members = [], []
    for i in range(1, k):
        folder = Path(MEMBERS_DIR) / f"seed{seed + i}"
        sub = copy.deepcopy(params)
        sub["train_gnn"].update(seed=seed + i, ensemble=1)
        done = out / folder / "stats.json"
        if kw.get("resume") and (out / folder / PIPELINE_FILE).is_file() and done.is_file():
            reporter.info(f"ensemble member {i + 1} of {k} (seed {seed + i}) is already trained: kept")
            result = json.loads(done.read_text(encoding="utf-8"))
        else:
            reporter.info(f"ensemble member {i + 1} of {k}: seed {seed + i} -> {out / folder}")
            result = run(graphs=graphs, out=out / folder, params=sub, reporter=reporter, **kw)
        rel.append(folder.as_posix())
        members.append(summary(folder.as_posix(), seed + i, result))
    first = copy.deepcopy(params)
    first["train_gnn"].update(ensemble=1)
    reporter.info(f"ensemble member 1 of {k}: seed {seed} -> {out}")
    result = run(graphs=graphs, out=out, params=first, reporter=reporter, **kw)
    if "params_hash" not in result:  # a DDP rank other than 0: it wrote nothing (finish() did not run)
        return result
    list_members(out, rel, params["train_gnn"])  # with ensemble: k
    members.insert(0, summary(".", seed, result))
    result = {key: v for key, v in result.items() if key != "params_hash"}
    result.update(ensemble=members, train_seconds=round(sum(m["train_seconds"] or 0 for m in members), 1))
    return finish(out, params, PARAMS, result, stats, upstream=(graphs,))


def run(
    *,
    graphs: Path,
    out: Path,
    params: dict,
    gpus: int = 0,
    stats: Path | None = None,
    reporter: Reporter | None = None,
    agent: Path | None = None,
    plots: Path | None = None,
    resume: bool = False,
    nodes: int = 1,
    caption_cache: Path | None = None,
) -> dict:
    """Run the stage; returns (and writes) its statistics.

    The training state is saved after every epoch under ``out/checkpoint``
    (:mod:`mmre_cli.learn.resume`); ``resume=True`` continues from it (a state written with other
    params or other graphs is refused). It is removed once the model folder is written.
    """
    graphs, out = Path(graphs), Path(out)
    params = stage_view(params, PARAMS)
    cfg = params["train_gnn"]
    agent_dir = _editor_to_copy(graphs, agent)  # checked before training, not after it
    k = int(cfg["ensemble"] or 1)
    if k > 1:
        return _run_ensemble(
            k,
            graphs=graphs,
            out=out,
            params=params,
            gpus=gpus,
            stats=stats,
            reporter=reporter,
            agent=agent,
            plots=plots,
            resume=resume,
            nodes=nodes,
            caption_cache=caption_cache,
        )
    if cfg["distill_from"] and not (
        0.0 <= float(cfg["distill_weight"]) <= 1.0 and float(cfg["distill_temperature"]) > 0
    ):
        raise MmreError(
            f"train_gnn.distill_weight must be in [0, 1] and distill_temperature > 0 "
            f"(got {cfg['distill_weight']} and {cfg['distill_temperature']})"
        )
    finetune = cfg["model"] == "finetune"
    encoder, weights = _finetune_encoder(graphs, cfg) if finetune else ("minilm", None)
    setup = TrainingSetup(
        graphs, "diffuse", gpus, cfg["seed"], reporter_or_null(reporter), threads=0 if finetune else 1, nodes=nodes
    )
    fabric, reporter, labels, none_id = setup.fabric, setup.reporter, setup.labels, setup.none_id
    pair_captions = cfg["pair_captions"]
    if finetune and pair_captions:
        found = apply_pair_captions(setup.groups, pair_captions, params["data"]["on_error"])
        reporter.info(f"second-segment captions from {pair_captions}: {found} graphs have one")
    train, val = setup.train, setup.val
    distill, fingerprint_extra = None, ""
    if cfg["distill_from"]:
        distill = (float(cfg["distill_weight"]), float(cfg["distill_temperature"]))
        n = apply_teacher(train, cfg["distill_from"], labels)
        reporter.info(
            f"distilling from {cfg['distill_from']} ({n} training graphs): alpha {distill[0]}, T {distill[1]}"
        )
        fingerprint_extra = ":" + sha256_file(predictions_path(cfg["distill_from"]))[:16]  # a new teacher: no resume
    if finetune:
        cfg = {**cfg, "precision": _precision(cfg["precision"], fabric.device, reporter)}
    model = build_classifier(
        cfg["model"], setup.in_dim, len(labels), cfg, encoder_weights=weights, encoder=encoder, labels=labels
    )
    words = needs_words(model)
    train_loader = setup.train_loader(cfg["batch_size"], cfg["seed"], words)
    val_loader = loader(val, cfg["batch_size"], False, words=words)
    if getattr(model, "caption_reader", None) is not None:
        _read_captions(model.caption_reader, train + val, caption_cache, fabric.device, reporter)

    state_dir = out / STATE_DIR

    fingerprint = f"{params_hash(params, PARAMS)}:{sha256_file(graphs / 'manifest.json')[:16]}{fingerprint_extra}"
    common = dict(
        epochs=cfg["epochs"],
        weight_decay=cfg["weight_decay"],
        class_weights=cfg["class_weights"],
        none_id=none_id,
        seed=cfg["seed"],
        patience=cfg["patience"],
        reporter=reporter,
        fabric=fabric,
        num_classes=len(labels),
        state_dir=state_dir,
        resume=resume,
        fingerprint=fingerprint,
        rdrop=float(cfg["rdrop"]),
        ema=float(cfg["ema"]),
        distill=distill,
    )
    if finetune:  # two learning rates, warm-up then linear decay
        _, history = fit_finetuned(
            model,
            train_loader,
            val_loader,
            enc_lr=cfg["enc_lr"],
            head_lr=cfg["lr"],
            warmup=cfg["warmup"],
            layer_decay=float(cfg["layer_decay"]),
            **common,
        )
    else:
        _, history = fit_classifier(model, train_loader, val_loader, lr=cfg["lr"], **common)
    model = getattr(model, "module", model)
    best = max(history, key=lambda h: (h["val_micro_f1"], -h["val_loss"]))
    result = {
        "best_epoch": best["epoch"],
        "val_acc": best["val_acc"],
        "val_micro_p": best["val_micro_p"],
        "val_micro_r": best["val_micro_r"],
        "val_micro_f1": best["val_micro_f1"],
        "epochs_run": len(history),
        "train_graphs": len(train),
        "val_graphs": len(val),
        "model": cfg["model"],
        "processes": fabric.world_size,
        "steps_per_epoch": len(train_loader),
        "train_seconds": round(sum(h["seconds"] for h in history), 1),
    }
    if not fabric.is_global_zero:
        return result
    man = read_manifest(graphs)
    model.cpu()
    save_checkpoint(
        out,
        "model",
        model,
        {
            "labels": labels,
            "none_id": none_id,
            "encoder": man["encoder"],
            "encoder_name": man.get("info", {}).get("encoder"),
            "history": history,
        },
    )
    upstream = upstream_params(graphs)
    for section in ("train_agent", "diffuse"):  # trained on merge-cmg's output: no editor, no diffusion
        if not isinstance(upstream.get(section), dict):
            upstream[section] = {**DEFAULTS[section], "enabled": False}
    if agent_dir is not None:
        for name in AGENT_FILES:
            shutil.copyfile(agent_dir / name, out / name)
    recorded = merge_records(upstream, select(params, PARAMS))  # the whole chain's params travel with the model
    write_pipeline(
        out,
        manifest=man,
        labels=labels,
        none_id=none_id,
        params=recorded,
        finetune_encoder=model.encoder.fingerprint if finetune else None,
    )
    curve = [
        {
            "epoch": h["epoch"],
            "loss": h["loss"],
            "val_loss": h["val_loss"],
            "val_f1": h["val_micro_f1"],
            "val_acc": h["val_acc"],
        }
        for h in history
    ]
    write_plots([out, plots], "train_curve", curve, _draw_train_curve)
    shutil.rmtree(state_dir, ignore_errors=True)  # the model folder is whole: nothing left to resume
    return finish(out, params, PARAMS, result, stats, recorded=recorded)
