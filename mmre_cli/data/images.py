"""Finding and checking the image of each instance, cheaply.

Checks are: the id is a safe relative path (no absolute path, no ``..``, so it cannot leave the
image folder), the file exists, is a regular file and is readable. With ``verify=True`` the
image header is also opened with PIL (``Image.open`` reads the header only; no pixel decode).
Results are cached per id: MNRE repeats an image once per entity pair.

Containment holds through links too: an id relative to the image folder whose real path (every
symlink followed) lies outside that folder is refused as ``unsafe img_id`` — unless the target is
inside a DVC cache (a ``.dvc/cache`` folder; ``dvc checkout`` with ``cache.type: symlink`` links
every image there). User paths of a JSONL file (absolute ones) are the user's choice and are not
confined.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from mmre_cli.data.mnre import RecordError


@dataclass(frozen=True)
class ImageCheck:
    """The outcome for one image id.

    Attributes:
        path: absolute path when ``status == 'ok'``, else ``None``.
        status: ``'ok'``, ``'missing'`` (no such file / no image folder) or ``'unreadable'``.
        detail: a human-readable reason when not ok.
    """

    path: str | None
    status: str
    detail: str = ""


def check_safe_relative(img_id: str) -> None:
    """Raise ``RecordError('unsafe img_id')`` if ``img_id`` is absolute or contains ``..``."""
    posix, win = PurePosixPath(img_id), PureWindowsPath(img_id)
    if posix.is_absolute() or win.is_absolute() or win.drive or img_id.startswith(("/", "\\", "~")):
        raise RecordError(
            "unsafe img_id", f"image id {img_id!r} is an absolute path; it must be relative to the image folder"
        )
    if ".." in posix.parts or ".." in win.parts:
        raise RecordError("unsafe img_id", f"image id {img_id!r} escapes the image folder ('..')")
    if "\x00" in img_id:
        raise RecordError("unsafe img_id", f"image id {img_id!r} holds a NUL byte")


def _check_link_target(img_id: str, path: Path, root: Path) -> None:
    """Raise ``RecordError('unsafe img_id')`` if ``path`` (under ``root``) resolves outside ``root``
    and outside every DVC cache."""
    try:
        real = path.resolve()
        base = root.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise RecordError("unsafe img_id", f"image id {img_id!r}: its links cannot be resolved") from None
    if real == base or base in real.parents:
        return
    parts = real.parts
    if any(parts[i] == ".dvc" and parts[i + 1] == "cache" for i in range(len(parts) - 1)):
        return
    raise RecordError("unsafe img_id", f"image id {img_id!r} links to {real}, outside the image folder {base}")


def verify_image(path: str | Path) -> str | None:
    """Open the image header with PIL and check the file's integrity without decoding pixels
    (``Image.verify``: a truncated or corrupt PNG/GIF, a zero-byte or non-image file, too many
    pixels). Returns ``None`` if fine, else the reason."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - pillow is a dependency
        return "pillow is not installed; cannot verify images"
    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - header fields
            im.verify()
    except UnidentifiedImageError:
        return "not a recognised image file"
    except Image.DecompressionBombError as err:  # not an OSError: it would escape the handler below
        return f"too many pixels (decompression bomb guard): {err}"
    except (OSError, ValueError, SyntaxError) as err:  # PIL raises SyntaxError for broken chunks
        return f"cannot open image: {err}"
    return None


def find_image_root(base_dirs: list[Path], split: str, image_root: str | Path | None = None) -> Path | None:
    """The folder holding a split's images.

    Args:
        base_dirs: dataset folders to search, in order; each is tried as
            ``{base}/img_org/{split}``.
        split: split name as in the folder names (``train``, ``val``, ``valid``...).
        image_root: an explicit folder: ``{image_root}/{split}`` if that exists, else
            ``image_root`` itself (it need not exist; then every image is missing).

    Returns:
        The folder, or ``None`` when none of the candidates exists.
    """
    if image_root is not None:
        root = Path(image_root)
        return root / split if (root / split).is_dir() else root
    for base in base_dirs:
        cand = base / "img_org" / split
        if cand.is_dir():
            return cand
    return None


class ImageResolver:
    """Resolves image ids against one folder, with a per-id cache.

    Args:
        root: the image folder (``None``: every image is missing).
        verify: also open each image header with PIL.
    """

    def __init__(self, root: str | Path | None, *, verify: bool = False):
        self.root = None if root is None else Path(root).absolute()
        self.root_exists = self.root is not None and self.root.is_dir()
        self.verify = verify
        self._cache: dict[tuple[str, bool], ImageCheck] = {}

    def resolve(self, img_id: str, *, as_path: bool = False, base: Path | None = None) -> ImageCheck:
        """Check one image.

        Args:
            img_id: the id from the record (a file name relative to ``root``).
            as_path: JSONL mode: ``img_id`` is a user path; absolute paths are allowed, relative
                ones are taken from ``root`` if set, else from ``base`` (the JSONL file's folder).
            base: see ``as_path``.

        Raises:
            RecordError: ``unsafe img_id`` (absolute path or ``..``) -- a bad record, not an
                image problem.
        """
        key = (img_id, as_path)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if as_path and os.path.isabs(img_id):
            path = Path(img_id)
        else:
            check_safe_relative(img_id)
            if as_path and self.root is None:
                root = None if base is None else Path(base).absolute()
                exists = root is not None and root.is_dir()
            else:
                root, exists = self.root, self.root_exists
            if not exists:
                where = "no image folder found" if root is None else f"image folder {root} does not exist"
                out = ImageCheck(None, "missing", f"image {img_id!r} not found: {where}")
                self._cache[key] = out
                return out
            path = root / img_id
            _check_link_target(img_id, path, root)
        out = self._check_file(img_id, path)
        self._cache[key] = out
        return out

    def _check_file(self, img_id: str, path: Path) -> ImageCheck:
        try:
            if not path.is_file():
                return ImageCheck(None, "missing", f"image {img_id!r} not found (looked for {path})")
        except OSError as err:
            return ImageCheck(None, "missing", f"image {img_id!r}: {err}")
        if not os.access(path, os.R_OK):
            return ImageCheck(None, "unreadable", f"image {path} is not readable (permissions)")
        if self.verify:
            problem = verify_image(path)
            if problem:
                return ImageCheck(None, "unreadable", f"image {path}: {problem}")
        return ImageCheck(str(path), "ok")
