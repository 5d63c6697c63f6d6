"""open_clip CLIP as an encoder (default ``ViT-B-32``; text + images): :class:`ClipEncoder`.

Weights: explicit path → ``$MMRE_CLIP_WEIGHTS`` → ``$MMRE_CACHE/<model>.safetensors`` (or
``.bin``, also under ``clip/``) → open_clip download of a default tag (unless offline). Word
vectors are per word (context-free), cached by unique word. Note: OpenAI-trained CLIP weights
need the QuickGELU variant of the architecture (``clip:ViT-B-32-quickgelu``).

Importing this module does not import torch or open_clip; the model loads in the constructor.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from mmre_cli.errors import MmreError
from mmre_cli.features.base import Encoder, as_float32_normalised, batches, file_fingerprint, weights_file_in
from mmre_cli.features.resolver import resolve_weights

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

DEFAULT_CLIP_MODEL = "ViT-B-32"
#: open_clip tag downloaded when no local CLIP weights are found and downloads are allowed.
DEFAULT_CLIP_TAGS = {"ViT-B-32": "laion2b_s34b_b79k", "ViT-B-32-quickgelu": "openai"}


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
                    load_name, pretrained=pretrained_arg, device=device, force_quick_gelu=force_quick_gelu
                )
            except Exception as e:  # noqa: BLE001
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                where = self.weights_path or pretrained_arg or "(no weights)"
                raise MmreError(f"cannot load CLIP model {model_name!r} with weights {where}: {first[:300]}") from e
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
                    f"(allow them with MMRE_ALLOW_DOWNLOAD=1): pass a local weights file instead "
                    f"(or set MMRE_CLIP_WEIGHTS)"
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
            f = weights_file_in(path)
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
            for chunk in batches(texts, self.batch_size):
                out.append(as_float32_normalised(self._encode_text_batch(list(chunk))))
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
            out.append(np.stack([fresh[w] if w in fresh else self._word_cache[w] for w in s]).astype(np.float32))
        return out

    def encode_images(self, images: list["Image.Image"]) -> np.ndarray:
        import torch

        images = list(images)
        if not images:
            return self._empty()
        out = []
        with torch.no_grad():
            for chunk in batches(images, self.batch_size):
                x = torch.stack([self._preprocess(im.convert("RGB")) for im in chunk]).to(self.device)
                out.append(as_float32_normalised(self._model.encode_image(x)))
        return np.concatenate(out, axis=0)

    def fingerprint(self) -> str:
        if self._fp is None:
            if self.weights_path is not None:
                src = file_fingerprint(self.weights_path)
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
