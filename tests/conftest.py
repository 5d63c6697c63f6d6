"""Shared fixtures: paths to the repository, the shipped sample, and the optional real MNRE data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
SHARED_MNRE = REPO.parent / "shared" / "data" / "mnre"

needs_shared = pytest.mark.skipif(not SHARED_MNRE.exists(), reason="../shared/data/mnre not present")


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture
def shared_mnre() -> Path:
    if not SHARED_MNRE.exists():
        pytest.skip("../shared/data/mnre not present")
    return SHARED_MNRE


def make_tiny_hf(folder: Path, kind: str = "bert", texts: list[str] | None = None) -> Path:
    """A tiny random-initialised Hugging Face encoder folder (``bert`` or ``mpnet``), built offline.

    Its WordPiece tokenizer is trained on ``texts`` (default: a few sentences) with the
    ``tokenizers`` library and saved as a fast tokenizer with the model family's pair template
    (``[CLS] a [SEP] b [SEP]`` for BERT, ``<s> a </s></s> b </s>`` for MPNet), so
    ``AutoTokenizer``/``AutoModel.from_pretrained(folder)`` load it like a downloaded model.
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    texts = texts or ["Alice met Bob in Paris .", "a man holds a trophy on a stage", "RT @user : # news today"]
    if kind == "bert":
        cls, sep, pad, unk, mask = "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"
        specials = [pad, unk, cls, sep, mask]
    else:
        cls, sep, pad, unk, mask = "<s>", "</s>", "<pad>", "[UNK]", "<mask>"
        specials = [cls, pad, sep, unk, mask]
    tok = Tokenizer(models.WordPiece(unk_token=unk))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts * 3, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
        )
    else:
        tok.post_processor = processors.RobertaProcessing((sep, tok.token_to_id(sep)), (cls, tok.token_to_id(cls)))
    vocab = tok.get_vocab_size()
    if kind == "bert":
        model = BertModel(
            BertConfig(
                vocab_size=vocab,
                hidden_size=32,
                num_hidden_layers=3,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=128,
                pad_token_id=tok.token_to_id(pad),
            )
        )
    else:
        model = MPNetModel(
            MPNetConfig(
                vocab_size=vocab,
                hidden_size=32,
                num_hidden_layers=3,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=130,
                pad_token_id=tok.token_to_id(pad),
                bos_token_id=tok.token_to_id(cls),
                eos_token_id=tok.token_to_id(sep),
            )
        )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=unk, pad_token=pad, cls_token=cls, sep_token=sep, mask_token=mask
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    import transformers  # noqa: F401 - a hard dependency: a broken install fails, never skips

    return make_tiny_hf(tmp_path_factory.mktemp("tiny-bert") / "model", "bert")


@pytest.fixture(scope="session")
def tiny_mpnet(tmp_path_factory) -> Path:
    import transformers  # noqa: F401 - a hard dependency: a broken install fails, never skips

    return make_tiny_hf(tmp_path_factory.mktemp("tiny-mpnet") / "model", "mpnet")


@pytest.fixture(params=["bert", "mpnet"])
def tiny_hf(request, tiny_bert, tiny_mpnet) -> Path:
    """A tiny random-initialised Hugging Face model folder: each test runs on BERT, then on MPNet."""
    return {"bert": tiny_bert, "mpnet": tiny_mpnet}[request.param]


def make_tiny_blip(folder: Path) -> Path:
    """A tiny random-initialised BLIP captioner folder (model + processor), built offline."""
    import torch
    from transformers import AutoTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    tok = AutoTokenizer.from_pretrained(make_tiny_hf(folder.parent / f"{folder.name}_tokenizer", "bert"))
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
        sep_token_id=tok.sep_token_id,
    )
    vision = dict(
        hidden_size=32, image_size=32, patch_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=32))
    model.save_pretrained(folder)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok).save_pretrained(
        folder
    )
    return folder


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory) -> Path:
    return make_tiny_blip(tmp_path_factory.mktemp("hf") / "tiny_blip")
