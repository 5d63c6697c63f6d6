"""MORE reader (NJUNLP/MORE, ACM MM'23): text head entity, visual tail object.

Layout as the authors ship it::

    MORE/txt/{train,valid,test}.txt     one Python-literal dict per line
    MORE/rel2id.json                    {label: id}
    MORE/ent_{split}_dict.pth           torch-saved {img_id: {object_name: [cx, cy, w, h]}}
    MORE/img_org/{split}/               the images

A line is an MNRE line whose tail is an object in the image:
``'t': {'name': 'man', 'box': [cx, cy, w, h]}`` with all four numbers normalised to [0, 1].
The tail becomes ``Entity(name, -1, -1, box=(cx, cy, w, h))``.

``ent_{split}_dict.pth`` is read WITHOUT torch: a torch zip file holds ``<name>/data.pkl``, a
plain pickle for a dict of lists; it is unpickled with a restricted unpickler that only allows a
few builtin types (no tensors, no code).
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

from mmre_cli.data.instance import Entity
from mmre_cli.data.mnre import (
    REQUIRED_KEYS,
    Record,
    RecordError,
    check_img_id,
    check_name,
    check_relation,
    check_tokens,
    parse_literal,
    require_keys,
    text_entity,
)
from mmre_cli.errors import InputError

#: Slack allowed on the [0, 1] box range (float rounding in the shipped files).
BOX_EPS = 1e-6


def check_box(value: Any, key: str = "t") -> tuple[float, float, float, float]:
    """Validate a normalised ``[cx, cy, w, h]`` box: four finite numbers in [0, 1], w and h > 0."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise RecordError("bad box", f"entity {key!r}: 'box' must be four numbers [cx, cy, w, h], got {value!r}")
    box = tuple(float(v) for v in value)
    if not all(math.isfinite(v) and -BOX_EPS <= v <= 1 + BOX_EPS for v in box):
        raise RecordError("bad box", f"entity {key!r}: box {list(value)} is outside [0, 1] (must be normalised)")
    if box[2] <= 0 or box[3] <= 0:
        raise RecordError("bad box", f"entity {key!r}: box {list(value)} has zero width or height")
    return box  # type: ignore[return-value]


def visual_entity(value: Any, key: str = "t") -> Entity:
    """Validate ``{'name': str, 'box': [cx, cy, w, h]}`` and build a visual :class:`Entity`."""
    if not isinstance(value, dict):
        raise RecordError("bad entity", f"entity {key!r} must be a dict with 'name' and 'box'")
    if "box" not in value:
        raise RecordError("missing key", f"entity {key!r} has no 'box'")
    name = check_name(value.get("name"), key)
    return Entity(name, -1, -1, box=check_box(value["box"], key))


def parse_more_record(obj: dict, objects: dict | None = None) -> Record:
    """Validate one parsed MORE line.

    Args:
        obj: the parsed line.
        objects: the split's ``{img_id: {name: box}}`` dict, if loaded; the image's objects are
            attached as ``extra['objects']``.
    """
    require_keys(obj, REQUIRED_KEYS)
    tokens = check_tokens(obj["token"])
    head = text_entity(obj["h"], "h", tokens)
    tail = visual_entity(obj["t"], "t")
    relation = check_relation(obj["relation"])
    img_id = check_img_id(obj.get("img_id"))
    extra = {k: v for k, v in obj.items() if k not in ("token", "h", "t", "relation", "img_id")}
    if objects is not None and img_id is not None and img_id in objects:
        extra["objects"] = objects[img_id]
    return Record(tokens, head, tail, relation, img_id, extra)


def parse_more_line(text: str, objects: dict | None = None) -> Record:
    """Parse and validate one MORE line of text."""
    return parse_more_record(parse_literal(text), objects)


# -- torch-free .pth reading ------------------------------------------------------------------
class _RestrictedUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("builtins", name)
        for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bytes", "bool", "complex")
    } | {("collections", "OrderedDict")}

    def find_class(self, module: str, name: str):  # noqa: D401
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only plain builtin types are allowed)")

    def persistent_load(self, pid):  # tensors/storages are persistent ids in torch pickles
        raise pickle.UnpicklingError("the file holds tensors; only plain dicts/lists are supported")


def load_torch_pickle(path: str | Path) -> Any:
    """Load a plain Python object from a ``torch.save`` zip file, without torch.

    Raises:
        InputError: missing file, legacy (non-zip) torch format, no ``data.pkl`` inside, or a
            pickle that needs anything beyond builtin containers and scalars.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", str(path))
    if not zipfile.is_zipfile(path):
        raise InputError(
            "not a zip-format torch file (legacy torch.save format, or not a .pth at all); "
            "re-save it with torch>=1.6: torch.save(torch.load(p), p)",
            str(path),
        )
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if not names:
                raise InputError("torch zip file has no data.pkl", str(path))
            data = zf.read(names[0])
    except zipfile.BadZipFile as err:
        raise InputError(f"corrupt zip file: {err}", str(path)) from None
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise InputError(f"cannot unpickle data.pkl: {err}", str(path)) from None


def load_object_dict(path: str | Path) -> dict[str, dict[str, tuple[float, float, float, float]]]:
    """Read ``ent_{split}_dict.pth``: ``{img_id: {object_name: (cx, cy, w, h)}}``.

    Raises:
        InputError: see :func:`load_torch_pickle`, or a value of the wrong shape (named in the
            message).
    """
    obj = load_torch_pickle(path)
    if not isinstance(obj, dict):
        raise InputError(f"expected a dict img_id -> {{name: box}}, got {type(obj).__name__}", str(path))
    out: dict[str, dict[str, tuple[float, float, float, float]]] = {}
    for img_id, ents in obj.items():
        if not isinstance(img_id, str) or not isinstance(ents, dict):
            raise InputError(f"entry {img_id!r}: expected str -> {{name: box}}", str(path))
        boxes = {}
        for name, box in ents.items():
            try:
                boxes[str(name)] = check_box(list(box) if isinstance(box, (list, tuple)) else box, str(name))
            except RecordError as err:
                raise InputError(f"image {img_id!r}: {err.message}", str(path)) from None
        out[img_id] = boxes
    return out
