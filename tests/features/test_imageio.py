"""open_image / decode_images / crop: errors are clear MmreErrors; order is preserved."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from mmre_cli.errors import InputError, MmreError
from mmre_cli.features.imageio import crop, decode_images, open_image


def _png(path, size=(20, 10), mode="RGB", color=(10, 20, 30)):
    Image.new(mode, size, color).save(path)
    return path


def test_open_rgb_from_other_modes(tmp_path):
    im = open_image(_png(tmp_path / "g.png", mode="L", color=128))
    assert im.mode == "RGB" and im.size == (20, 10)
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    rgba.save(tmp_path / "t.png")
    out = open_image(tmp_path / "t.png")
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)  # on white, not black
    Image.new("P", (5, 5)).save(tmp_path / "p.gif")
    assert open_image(tmp_path / "p.gif").mode == "RGB"


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found") as exc:
        open_image(tmp_path / "missing.jpg")
    assert "missing.jpg" in str(exc.value)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(MmreError, match="not a file"):
        open_image(tmp_path)


def test_not_an_image(tmp_path):
    p = tmp_path / "fake.jpg"
    p.write_text("hello, I am text")
    with pytest.raises(MmreError, match="not an image") as exc:
        open_image(p)
    assert "fake.jpg" in str(exc.value)


def test_truncated_image(tmp_path):
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, "JPEG")
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(MmreError, match="corrupt or truncated"):
        open_image(p)


def test_too_many_pixels_checked_before_decoding(tmp_path):
    p = _png(tmp_path / "big.png", size=(100, 100))
    with pytest.raises(MmreError, match="too many pixels") as exc:
        open_image(p, max_pixels=5_000)
    assert "100x100" in str(exc.value)
    assert open_image(p, max_pixels=10_000).size == (100, 100)


def test_pillow_global_limit_is_respected_and_liftable(tmp_path, monkeypatch):
    p = _png(tmp_path / "mid.png", size=(100, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow bomb error above 2_000
    assert open_image(p, max_pixels=None).size == (100, 100)  # caller lifts the limit
    assert open_image(p, max_pixels=20_000).size == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == 1_000  # restored
    with pytest.raises(MmreError, match="too many pixels"):
        open_image(p, max_pixels=1_500)


def test_decode_images_preserves_order_and_yields_errors(tmp_path):
    paths = []
    for i in range(9):
        if i == 3:
            p = tmp_path / "bad.jpg"
            p.write_bytes(b"\x00not an image")
        elif i == 6:
            p = tmp_path / "absent.png"
        else:
            # different sizes so that decode times differ; the size encodes the index
            p = _png(tmp_path / f"{i}.png", size=(10 + i, 5 + 40 * (i % 3)))
        paths.append(p)
    for workers in (2, 0):
        out = list(decode_images(paths, workers=workers, prefetch=1))
        assert [p for p, _ in out] == paths
        for i, (p, im) in enumerate(out):
            if i in (3, 6):
                assert isinstance(im, InputError) and str(p) in str(im)
            else:
                assert isinstance(im, Image.Image) and im.size[0] == 10 + i and im.mode == "RGB"


def test_decode_images_max_pixels_in_workers(tmp_path):
    paths = [_png(tmp_path / "a.png", size=(10, 10)), _png(tmp_path / "b.png", size=(100, 100))]
    out = list(decode_images(paths, workers=2, max_pixels=1_000))
    assert isinstance(out[0][1], Image.Image)
    assert isinstance(out[1][1], MmreError) and "too many pixels" in str(out[1][1])


def test_decode_real_images(real_images):
    paths = real_images
    assert len(paths) == 12
    out = list(decode_images(paths, workers=2))
    assert [p for p, _ in out] == paths
    assert all(isinstance(im, Image.Image) and im.mode == "RGB" for _, im in out)


def test_crop_normalised_box():
    im = Image.new("RGB", (200, 100))
    assert crop(im, (0.25, 0.5, 0.75, 1.0)).size == (100, 50)
    assert crop(im, (0.0, 0.0, 1.0, 1.0)).size == (200, 100)
    assert crop(im, (-0.5, -1.0, 2.0, 3.0)).size == (200, 100)  # clamped
    assert crop(im, (0.5, 0.5, 0.5, 0.5)).size == (1, 1)  # degenerate -> 1 px
    assert crop(im, (1.0, 1.0, 1.0, 1.0)).size == (1, 1)  # at the far edge
    assert crop(im, (0.75, 1.0, 0.25, 0.5)).size == (100, 50)  # swapped corners
    with pytest.raises(ValueError):
        crop(im, (0.1, 0.2, 0.3))
