"""Captions for a raw image, for models trained with captions as the image's view (``--captioner``).

:class:`Captioner` loads a Hugging Face image-to-text model — BLIP, GIT or any model
``AutoModelForImageTextToText`` maps — with its ``AutoProcessor``, from a local folder or a hub id
already in the Hugging Face cache (``local_files_only``: nothing is downloaded), and captions one
image at a time with greedy decoding (``max_new_tokens`` 40, CAMIM's caption length).

Which one: the ``--captioner`` option of ``mmre predict`` / ``mmre serve``, else ``$MMRE_CAPTIONER``,
else the ``data.captioner`` param recorded in the model (null by default). A model trained on
one captioner's captions (e.g. CogVLM's long descriptions) sees another captioner's style at
prediction time; the closer the two, the better.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmre_cli.errors import MmreError

__all__ = ["Captioner", "captioner_source"]


def captioner_source(option: str | Path | None, params: dict | None = None) -> str | None:
    """The captioner to use: ``option``, else ``$MMRE_CAPTIONER``, else ``params["data"]["captioner"]``."""
    if option:
        return str(option)
    if os.environ.get("MMRE_CAPTIONER"):
        return os.environ["MMRE_CAPTIONER"]
    value = ((params or {}).get("data") or {}).get("captioner")
    return str(value) if value else None


class Captioner:
    """An image-to-text model ready to caption images.

    Args:
        source: a local model folder, or a hub id already in the Hugging Face cache.
        max_new_tokens: the longest caption, in tokens. (default: ``40``)

    Raises:
        MmreError: the folder or cache entry is missing, or it is not an image-to-text model.
    """

    def __init__(self, source: str | Path, max_new_tokens: int = 40):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.source = str(source)
        self.max_new_tokens = int(max_new_tokens)
        local = Path(self.source).expanduser()
        where = str(local) if local.exists() else self.source
        try:
            self.processor = AutoProcessor.from_pretrained(where, local_files_only=True)
            self.model = AutoModelForImageTextToText.from_pretrained(where, local_files_only=True).eval()
        except (OSError, ValueError, KeyError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise MmreError(
                f"captioner {self.source}: cannot load an image-to-text model from it ({first}); give a "
                "local folder (e.g. a saved BLIP or GIT) or a hub id already in the Hugging Face cache"
            ) from None
        self._no_grad = torch.no_grad

    def __call__(self, image: str | Path) -> str:
        """The caption of one image file (whitespace-normalised); decoded by
        :func:`~mmre_cli.features.imageio.open_image` (pixel limit on, bad files an InputError)."""
        from mmre_cli.features.imageio import open_image

        rgb = open_image(image)
        with self._no_grad():
            inputs = self.processor(images=rgb, return_tensors="pt")
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        text = self.processor.batch_decode(out, skip_special_tokens=True)[0]
        return " ".join(text.split())
