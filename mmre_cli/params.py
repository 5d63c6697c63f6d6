"""``params.yaml``: one section per stage; CLI options override single keys.

The keys, their defaults, types and help live in :mod:`mmre_cli.param_sections`; here they are
loaded (a params file over the defaults, each value checked), overridden (``--set
train_gnn.lr=0.001``) and narrowed to what one stage reads: each stage declares the dotted keys it
reads (``PARAMS``, the same list ``dvc.yaml`` gives DVC), sees only those (:func:`stage_view`),
hashes only those into its artifact's metadata and records only those, over its inputs' records,
in ``params.effective.yaml`` beside its output — so ``dvc repro`` and ``mmre run`` rerun the same
stages when a key changes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from mmre_cli.errors import MmreError
from mmre_cli.param_sections import SECTIONS, defaults, fields

PARAMS_FILE = "params.yaml"
EFFECTIVE_FILE = "params.effective.yaml"

#: Built-in defaults, from the typed sections (:mod:`mmre_cli.param_sections`): a params.yaml may
#: omit any key; unknown keys are an error (typos matter).
DEFAULTS: dict[str, dict[str, Any]] = defaults()


def load_params(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Defaults updated with ``params.yaml`` (``path``, or ``./params.yaml`` if it exists).

    Raises:
        MmreError: unreadable YAML, a section that is not a mapping, or an unknown key.
    """
    params = copy.deepcopy(DEFAULTS)
    if path is None:
        path = Path(PARAMS_FILE) if Path(PARAMS_FILE).exists() else None
    elif not Path(path).exists():
        raise MmreError(f"params file not found: {path}")
    if path is None:
        return params
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise MmreError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise MmreError(f"{path}: expected a mapping of sections, got {type(loaded).__name__}")
    for section, values in loaded.items():
        if section not in params:
            raise MmreError(f"{path}: unknown section '{section}' (known: {', '.join(params)})")
        if not isinstance(values, dict):
            raise MmreError(f"{path}: section '{section}' must be a mapping")
        for key, value in values.items():
            if key not in params[section]:
                moved = {("data", "pair_captions"): "train_gnn.pair_captions"}.get((section, key))
                raise MmreError(
                    f"{path}: unknown key '{section}.{key}'"
                    + (f" (it moved to {moved})" if moved else " (`mmre params` lists the keys)")
                )
            params[section][key] = check_value(section, key, _number(value), source=str(path))
    return params


def _type_names(annotation: str) -> list[str]:
    return [t.strip() for t in annotation.split("|")]


def check_value(section: str, key: str, value: Any, *, source: str = "params") -> Any:
    """``value`` for ``section.key`` checked against its typed field (type, allowed words).

    An int is accepted for a float key, a number for a word key (``-S train_gnn.precision=32``,
    read back as the word ``"32"``).

    Raises:
        MmreError: a value of another type, or a word outside the key's choices.
    """
    field_ = next(f for f in fields(section) if f.name == key)
    allowed = _type_names(str(field_.type))
    choices = field_.metadata.get("choices")
    where = f"{source}: {section}.{key}"
    if value is None:
        if "None" in allowed:
            return None
        raise MmreError(f"{where} may not be null")
    if isinstance(value, bool):
        if "bool" in allowed:
            return value
    elif isinstance(value, int) and ("int" in allowed or "float" in allowed):
        return value
    elif isinstance(value, float) and "float" in allowed:
        return value
    elif isinstance(value, (int, float)) and "str" in allowed and choices and str(value) in choices:
        return str(value)
    elif isinstance(value, str) and "str" in allowed:
        if choices and value not in choices:
            raise MmreError(f"{where} must be one of {' | '.join(choices)}, not {value!r}")
        return value
    elif isinstance(value, list) and any(t.startswith("list") for t in allowed):
        if all(isinstance(v, str) for v in value):
            return value
    kinds = {
        "str": "a word or path",
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "None": "null",
        "list[str]": "a list of words or paths",
    }
    wanted = " or ".join(kinds.get(t, t) for t in allowed)
    raise MmreError(f"{where} must be {wanted}, not {value!r}")


#: a number YAML 1.1 reads as a string: ``1e-4``, ``5E3`` (no dot)
_EXP_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _number(value: Any) -> Any:
    """``"1e-4"`` → ``0.0001``: PyYAML (YAML 1.1) leaves exponent numbers without a dot as strings."""
    if isinstance(value, str) and _EXP_NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def parse_value(text: str) -> Any:
    """A CLI override value, read as YAML: ``3`` → int, ``0.1`` and ``1e-4`` → float, ``null`` → None."""
    try:
        return _number(yaml.safe_load(text))
    except yaml.YAMLError:
        return text


def apply_overrides(params: dict, overrides: Mapping[str, Any], *, skip_none: bool = True) -> dict:
    """Set dotted keys (``"train_gnn.lr"``) on a copy of ``params``.

    With ``skip_none`` (the default, for CLI options left unset) ``None`` values change nothing;
    ``--set key=null`` goes through with ``skip_none=False`` and really sets ``None``.

    Raises:
        MmreError: a key that is not ``section.key`` or names an unknown key.
    """
    out = copy.deepcopy(params)
    for dotted, value in overrides.items():
        if value is None and skip_none:
            continue
        section, _, key = dotted.partition(".")
        if not key or section not in out or key not in out[section]:
            raise MmreError(
                f"unknown parameter '{dotted}' (write it as section.key, e.g. train_gnn.lr; `mmre params` lists them)"
            )
        out[section][key] = check_value(section, key, value, source="--set")
    return out


def parse_set_options(items: list[str] | None) -> dict[str, Any]:
    """``["train_gnn.lr=0.01", ...]`` → ``{"train_gnn.lr": 0.01}``."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise MmreError(f"--set expects key=value, got '{item}'")
        result[key.strip()] = parse_value(value)
    return result


def select(params: Mapping[str, Any], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The dotted ``keys`` of ``params`` as plain nested dicts (``{"train_gnn": {"lr": ...}}``), in
    the order given."""
    out: dict[str, dict[str, Any]] = {}
    for dotted in keys:
        section, _, key = dotted.partition(".")
        out.setdefault(section, {})[key] = copy.deepcopy(params[section][key])
    return out


def params_hash(params: Mapping[str, Any], keys: Sequence[str]) -> str:
    """sha256 (16 hex) of the dotted ``keys``' values, canonical JSON; goes into artifact metadata."""
    blob = json.dumps(select(params, keys), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def write_effective(out_dir: str | Path, recorded: Mapping[str, Any]) -> Path:
    """Write ``recorded`` (sections of keys) to ``out_dir/params.effective.yaml`` (atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / EFFECTIVE_FILE
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(dict(recorded), sort_keys=True), encoding="utf-8")
    os.replace(tmp, target)
    return target


class StageSection(dict):
    """One section as a stage sees it: only the keys the stage declared; reading another raises.

    ``cfg.get(key, default)`` and ``cfg[key]`` alike fail on an undeclared key, so a stage that
    reads a key its ``PARAMS`` (and so ``dvc.yaml``) does not list fails in the tests instead of
    keeping a stale artifact under ``dvc repro``.
    """

    def __init__(self, name: str, values: Mapping[str, Any]):
        super().__init__(values)
        self.name = name

    def __missing__(self, key: str) -> Any:
        raise MmreError(f"internal: {self.name}.{key} is read but not declared in the stage's PARAMS")

    def get(self, key: str, default: Any = None) -> Any:  # noqa: D102 (dict's)
        return self[key]


class StageParams(dict):
    """The params a stage may read: ``{section: StageSection}`` of its declared keys."""

    def __missing__(self, section: str) -> Any:
        raise MmreError(f"internal: section {section!r} is read but no key of it is declared in the stage's PARAMS")

    def get(self, section: str, default: Any = None) -> Any:  # noqa: D102 (dict's)
        return self[section]


def stage_view(params: Mapping[str, Any], keys: Sequence[str]) -> StageParams:
    """What a stage declaring ``keys`` sees of ``params`` (see :class:`StageSection`)."""
    return StageParams({section: StageSection(section, values) for section, values in select(params, keys).items()})


def declared(*keys: str) -> tuple[str, ...]:
    """A stage's ``PARAMS``: dotted keys, each checked against the typed sections at import."""
    for dotted in keys:
        section, _, key = dotted.partition(".")
        if section not in SECTIONS or key not in {f.name for f in fields(section)}:
            raise ValueError(f"unknown parameter {dotted!r}")
    return keys
