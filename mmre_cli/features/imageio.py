"""Image decoding with guards: missing files, non-images, decompression bombs, worker processes.

* :func:`open_image` — one image, RGB, size checked from the header *before* pixels are decoded.
* :func:`decode_images` — many images decoded in worker processes, yielded in input order as
  ``(path, image_or_error)``; a bad image yields an :class:`~mmre_cli.errors.InputError`
  (a :class:`~mmre_cli.errors.MmreError`) instead of stopping the whole run.
* :func:`crop` — crop a normalised ``(x1, y1, x2, y2)`` box.

Images are *not* EXIF-rotated by default (``exif_transpose=False``): peer MMRE code opens images
with ``Image.open(p).convert("RGB")`` and dataset boxes (MORE) refer to that raw pixel grid.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import warnings
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from mmre_cli.errors import InputError, MmreError

#: Default pixel limit (width × height): 64 MP, well above any dataset photo (twitter images
#: are ≤ 4096², i.e. ~16.8 MP) and far below what would exhaust memory.
DEFAULT_MAX_PIXELS = 64_000_000

_PIL_LIMIT_LOCK = threading.Lock()


def _pil_open():
    """Pillow's own ``Image.open``.

    ultralytics replaces ``PIL.Image.open`` on import with a wrapper that, on an unidentified
    file, tries to pip-install and import ``pi-heif`` (raising ModuleNotFoundError offline and
    printing to stdout). We bypass that wrapper so a non-image stays a clean InputError.
    """
    fn = Image.open
    mod = getattr(fn, "__module__", "") or ""
    if mod.startswith("ultralytics"):
        fn = getattr(sys.modules.get(mod), "_image_open", fn)
    return fn


def _fail(path: str | Path, reason: str) -> InputError:
    return InputError(reason, path=str(path))


def open_image(
    path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, *, exif_transpose: bool = False
) -> Image.Image:
    """Open an image file as a fully decoded RGB :class:`PIL.Image.Image`.

    Args:
        path: the image file.
        max_pixels: refuse images with more than this many pixels (checked from the header,
            before decoding); ``None`` disables the check (and Pillow's own bomb check).
        exif_transpose: apply the EXIF orientation tag (off by default, see module doc).

    Raises:
        InputError (an MmreError): the file is missing, is not a readable image, is truncated /
            corrupt, or has too many pixels. The message names the file.
    """
    p = Path(path)
    if not p.exists():
        raise _fail(p, "image file not found")
    if not p.is_file():
        raise _fail(p, "not a file (expected an image)")
    try:
        with warnings.catch_warnings():
            # We enforce our own limit below; Pillow's >MAX_IMAGE_PIXELS warning is noise here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if max_pixels is None or (Image.MAX_IMAGE_PIXELS is not None and max_pixels > 2 * Image.MAX_IMAGE_PIXELS):
                # Caller allows more than Pillow's own hard limit: lift it for this open only.
                with _PIL_LIMIT_LOCK:
                    saved = Image.MAX_IMAGE_PIXELS
                    Image.MAX_IMAGE_PIXELS = None
                    try:
                        im = _pil_open()(p)
                    finally:
                        Image.MAX_IMAGE_PIXELS = saved
            else:
                im = _pil_open()(p)
    except Image.DecompressionBombError as e:
        raise _fail(p, f"image has too many pixels (decompression bomb guard): {e}") from None
    except (UnidentifiedImageError, ImportError):
        raise _fail(p, "not an image (cannot identify the image format)") from None
    except OSError as e:
        raise _fail(p, f"cannot read image: {e}") from None

    with im:
        w, h = im.size
        if max_pixels is not None and w * h > max_pixels:
            raise _fail(p, f"image has too many pixels: {w}x{h} = {w * h} > max_pixels={max_pixels}")
        if w <= 0 or h <= 0:
            raise _fail(p, f"image has an empty size {w}x{h}")
        try:
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            im.load()
            out = ImageOps.exif_transpose(im) if exif_transpose else im
            out = _to_rgb(out)
        except (OSError, SyntaxError, ValueError) as e:
            raise _fail(p, f"cannot decode image (corrupt or truncated): {e}") from None
    return out


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB copy; transparent pixels are composited on white (not black, as a bare convert does)."""
    if im.mode == "RGB":
        return im.copy()
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def _decode_worker(path: str, max_pixels: int | None, exif_transpose: bool):
    """Runs in a worker process; returns ``("ok", image)`` or ``("err", reason)``."""
    try:
        return ("ok", open_image(path, max_pixels, exif_transpose=exif_transpose))
    except InputError as e:
        return ("err", e.reason)
    except MmreError as e:  # pragma: no cover - open_image only raises InputError
        return ("err", str(e))
    except Exception as e:  # noqa: BLE001 - never let one bad file kill the pool
        return ("err", f"cannot decode image: {type(e).__name__}: {e}")


def decode_images(
    paths: Iterable[str | Path],
    workers: int = 2,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    *,
    exif_transpose: bool = False,
    prefetch: int = 4,
    mp_context: str | None = None,
) -> Iterator[tuple[str | Path, Image.Image | MmreError]]:
    """Decode images in worker processes, yielding ``(path, image_or_error)`` in input order.

    Args:
        paths: image paths (any iterable; consumed lazily).
        workers: number of worker processes; ``0`` or ``1`` decodes in this process.
        max_pixels: see :func:`open_image`.
        exif_transpose: see :func:`open_image`.
        prefetch: images in flight per worker (bounds memory: at most ``workers * prefetch``
            decoded images wait in the queue).
        mp_context: multiprocessing start method; default ``"forkserver"`` on POSIX (safe when
            the parent already runs torch threads), ``"spawn"`` elsewhere.

    Yields:
        ``(path, PIL RGB image)`` or ``(path, InputError)`` — errors are yielded, not raised.
    """
    if workers <= 1:
        for p in paths:
            try:
                yield p, open_image(p, max_pixels, exif_transpose=exif_transpose)
            except MmreError as e:
                yield p, e
        return

    if mp_context is None:
        methods = multiprocessing.get_all_start_methods()
        mp_context = "forkserver" if "forkserver" in methods else "spawn"
    ctx = multiprocessing.get_context(mp_context)
    window = max(1, workers * max(1, prefetch))
    pending: deque[tuple[str | Path, Future]] = deque()
    it = iter(paths)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        try:
            for p in it:
                pending.append((p, pool.submit(_decode_worker, os.fspath(p), max_pixels, exif_transpose)))
                if len(pending) >= window:
                    yield _collect(*pending.popleft())
            while pending:
                yield _collect(*pending.popleft())
        finally:
            for _, fut in pending:
                fut.cancel()


def _collect(path: str | Path, fut: Future) -> tuple[str | Path, Image.Image | MmreError]:
    status, payload = fut.result()
    if status == "ok":
        return path, payload
    return path, _fail(path, payload)


def crop(image: Image.Image, box: Sequence[float], *, min_size: int = 1) -> Image.Image:
    """Crop a normalised ``(x1, y1, x2, y2)`` box (values in [0, 1]) out of ``image``.

    The box is clamped to the image and widened to at least ``min_size`` pixels per side, so a
    degenerate (zero-area) detection still yields a valid crop.
    """
    if len(box) != 4:
        raise ValueError(f"box must have 4 values (x1, y1, x2, y2), got {len(box)}")
    W, H = image.size
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 < x1:
        x1, x2 = x2, x1
    if y2 < y1:
        y1, y2 = y2, y1
    px1 = min(max(int(round(x1 * W)), 0), W)
    py1 = min(max(int(round(y1 * H)), 0), H)
    px2 = min(max(int(round(x2 * W)), 0), W)
    py2 = min(max(int(round(y2 * H)), 0), H)
    if px2 - px1 < min_size:
        px2 = min(W, px1 + min_size)
        px1 = max(0, px2 - min_size)
    if py2 - py1 < min_size:
        py2 = min(H, py1 + min_size)
        py1 = max(0, py2 - min_size)
    return image.crop((px1, py1, px2, py2))
