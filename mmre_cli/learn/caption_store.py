r"""Frozen caption states on disk, shared by runs, seeds and processes (``mmre train-gnn --caption-cache``).

A caption's own pass (:class:`~mmre_cli.learn.caption_fusion.CaptionReader`) runs a *frozen* copy
of the pretrained encoder, so the last hidden states :math:`\mathbf{C} \in \mathbb{R}^{L\times D}` of
one caption text are the same in every run that starts from the same weights, reads the same
number of pieces and runs in the same precision. Without a store each run encodes every caption
again (on 2 CPU cores, three captioners' captions of MNRE-2 cost 30–60 minutes a run); with one,
the first run writes them and later runs, other seeds included, read them.

Layout::

    ROOT/<key>/<shard>.safetensors     one tensor [L, D] per caption, named sha1(caption text)

``key`` is a SHA-256 over the frozen network's weights, the piece limit and the dtype, so states of
another encoder, budget or precision are never mixed in. Shards are written whole to a temporary
name and renamed, so a reader never sees half a shard, and every writer gets shard names of its
own, so runs started together only duplicate work, never corrupt it. Shards are opened memory-mapped
(``safetensors.safe_open``): a run reads only the captions it asks for.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

__all__ = ["CaptionStateStore", "network_key"]


def network_key(network: nn.Module, pieces: int, dtype: torch.dtype) -> str:
    """SHA-256 (first 24 hex digits) of the network's weights in ``state_dict`` order, the piece limit
    and the states' dtype: what a caption's cached states depend on besides its text."""
    h = hashlib.sha256(f"pieces={int(pieces)};dtype={dtype}".encode())
    for name, t in network.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def text_key(text: str) -> str:
    """The tensor name a caption text is stored under."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class CaptionStateStore:
    """Caption states ``[L, D]`` by caption text under ``root/key`` (module docstring).

    Args:
        root: the store's folder (made on the first write).
        key: :func:`network_key` of the frozen network that computes the states.
        flush_every: pending states written as a shard once this many have gathered.
    """

    def __init__(self, root: str | Path, key: str, flush_every: int = 2048):
        self.dir = Path(root) / key
        self.flush_every = int(flush_every)
        self._where: dict[str, Path] = {}
        self._opened: dict[Path, object] = {}
        self._pending: dict[str, Tensor] = {}

    def _scan(self) -> None:
        """Index the shards written since the last scan (by this or another process)."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.safetensors")):
            if path in self._opened:
                continue
            handle = safe_open(str(path), framework="pt")
            self._opened[path] = handle
            for name in handle.keys():
                self._where.setdefault(name, path)

    def __len__(self) -> int:
        self._scan()
        return len(set(self._where) | set(self._pending))

    def get_many(self, texts: list[str]) -> dict[str, Tensor]:
        """The stored states of those ``texts`` the store has (a copy in memory each)."""
        self._scan()
        found = {}
        for t in texts:
            k = text_key(t)
            if k in self._pending:
                found[t] = self._pending[k]
            elif k in self._where:
                found[t] = self._opened[self._where[k]].get_tensor(k)
        return found

    def put(self, text: str, states: Tensor) -> None:
        """Keep ``states`` for ``text``; written with the next :meth:`flush` (or once ``flush_every`` gather)."""
        k = text_key(text)
        if k in self._where:
            return
        self._pending[k] = states.detach().cpu().contiguous()
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> Path | None:
        """Write the pending states as one new shard (atomically); returns its path, ``None`` if none."""
        if not self._pending:
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.dir / f"{uuid.uuid4().hex}.safetensors"
        tmp = final.with_suffix(".tmp")
        save_file(self._pending, str(tmp))
        os.replace(tmp, final)
        self._pending = {}
        self._scan()
        return final
