"""The text encoders' networks by name (``minilm``, ``mpnet``, ``hf``): their model folder, and the
``(WordPieces, network, folder)`` both the frozen-feature encoders and fine-tuning run on.

Importing this module does not import torch; the networks load lazily.
"""

from __future__ import annotations

from pathlib import Path

from mmre_cli.errors import MmreError
from mmre_cli.features.minilm import minilm_folder

TEXT_ENCODERS = ("minilm", "mpnet", "hf")


def hf_folder(weights: str | Path | None) -> Path:
    """A local Hugging Face model folder: ``weights`` itself, or the cached snapshot of a hub id.

    Raises:
        MmreError: no weights given, or a hub id that is not in the local cache.
    """
    if weights is None or str(weights).strip() == "":
        raise MmreError("encoder 'hf' needs weights: a local Hugging Face model folder (or a hub id already cached)")
    p = Path(str(weights)).expanduser()
    if p.is_dir():
        return p.resolve()
    if p.exists() or str(weights).startswith((".", "/", "~")):
        raise MmreError(f"Hugging Face weights must be a model folder: {p}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(weights), local_files_only=True))
    except Exception as e:  # noqa: BLE001 - any hub error is one line
        raise MmreError(
            f"{weights}: not a folder and not in the Hugging Face cache ({type(e).__name__}); "
            "download it once on a connected machine or pass a local folder"
        ) from e


def text_encoder_folder(name: str, weights: str | Path | None = None) -> Path:
    """The model folder of a text encoder (``minilm``, ``mpnet`` or ``hf``), resolved as its encoder does."""
    low = (name or "").strip().lower()
    if low == "minilm":
        return minilm_folder(weights)
    if low == "mpnet":
        from mmre_cli.features.mpnet import mpnet_folder

        return mpnet_folder(weights)
    if low == "hf":
        return hf_folder(weights)
    raise MmreError(f"{name!r} is not a text encoder that can be fine-tuned; choose one of {', '.join(TEXT_ENCODERS)}")


def load_text_network(name: str, weights: str | Path | None = None, max_length: int = 512):
    """``(WordPieces, network, folder)`` of a text encoder, in eval mode.

    ``minilm`` runs on :class:`mmre_cli.features.bert.BertModel` (torch's own layers, fast to
    import); ``mpnet`` and ``hf`` on ``transformers.AutoModel`` (:class:`mmre_cli.features.hf.HFTransformer`).
    Both networks have the same interface (``forward``, ``lower``/``upper``, ``layers``).
    """
    path = text_encoder_folder(name, weights)
    if name.strip().lower() == "minilm":
        from mmre_cli.features.bert import WordPieces, load_bert

        return WordPieces(path, max_length), load_bert(path), path
    from mmre_cli.features.hf import load_hf

    tok, net = load_hf(path, max_length)
    return tok, net, path
