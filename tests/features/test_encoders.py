"""build_encoder: the encoder registry, and that importing the encoders does not import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mmre_cli.errors import MmreError
from mmre_cli.features.encoders import KNOWN_ENCODERS, build_encoder


def test_import_does_not_import_torch():
    code = (
        "import sys, mmre_cli.features, mmre_cli.features.encoders, mmre_cli.features.detect, "
        "mmre_cli.features.imageio, mmre_cli.features.resolver\n"
        "bad = [m for m in ('torch', 'open_clip', 'ultralytics', 'sentence_transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_build_encoder_unknown_name():
    with pytest.raises(MmreError, match="unknown encoder"):
        build_encoder("word2vec")
    assert {"minilm", "clip"} <= set(KNOWN_ENCODERS)
