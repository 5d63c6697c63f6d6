"""Object detection for the visual scene graph: ultralytics YOLO, or boxes the dataset gives.

* :class:`Detection` — one box, normalised ``(x1, y1, x2, y2)`` in [0, 1], a label and a score.
* :class:`YoloDetector` — a local ultralytics YOLO model (``.pt`` checkpoint, or a model
  ``.yaml`` such as ``yolov8n.yaml`` for a random-initialised model in tests / smoke runs).
* :func:`boxes_from_dataset` — MORE-style ``(cx, cy, w, h)`` boxes → :class:`Detection`.
* :func:`build_detector` — ``"none"`` | path to ``.pt`` | ``*.yaml`` | ``None`` (resolver:
  ``$MMRE_YOLO_WEIGHTS`` → ``$MMRE_CACHE/yolov8n.pt`` → ultralytics download unless offline).

Offline: before ultralytics is first imported, :class:`YoloDetector` sets ``YOLO_OFFLINE=1``
(no DNS probe, no downloads), ``YOLO_AUTOINSTALL=0`` (never pip-installs at run time),
``YOLO_VERBOSE=False`` (ultralytics logs to stdout, which the CLI keeps machine-readable),
``ULTRALYTICS_SAFE_LOAD=1`` (checkpoints load with ``torch.load(weights_only=True)`` and a
class allow-list), and a writable ``YOLO_CONFIG_DIR`` (default ``<mmre cache>/ultralytics``).
Values the user already set are kept. Prediction needs no fonts (only plotting does).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from mmre_cli.errors import MmreError
from mmre_cli.features.resolver import cache_dir, is_offline, resolve_weights

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

DEFAULT_YOLO_WEIGHTS = "yolov8n.pt"


@dataclass(frozen=True)
class Detection:
    """One detected (or dataset-given) object.

    Attributes:
        box: ``(x1, y1, x2, y2)`` normalised to [0, 1] by image width/height, ``x1 <= x2``,
            ``y1 <= y2``.
        label: class name (YOLO) or object name (dataset).
        score: confidence in [0, 1] (1.0 for dataset boxes).
    """

    box: tuple[float, float, float, float]
    label: str
    score: float


def _clip01(v: float) -> float:
    return 0.0 if v < 0.0 else 1.0 if v > 1.0 else float(v)


def _norm_box(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
    x1, x2 = sorted((_clip01(x1), _clip01(x2)))
    y1, y2 = sorted((_clip01(y1), _clip01(y2)))
    return (x1, y1, x2, y2)


def boxes_from_dataset(objects: Iterable[Any], *, score: float = 1.0) -> list[Detection]:
    """Convert dataset boxes (MORE convention: normalised ``(cx, cy, w, h)``) to detections.

    Args:
        objects: items that are either objects with ``.name`` and ``.box`` (e.g.
            :class:`mmre_cli.data.instance.Entity`; items whose ``box`` is ``None`` are skipped),
            ``(label, (cx, cy, w, h))`` pairs, or mappings with ``"name"``/``"label"`` and
            ``"box"``.
        score: score given to every box.

    Returns:
        Detections with corner boxes clipped to [0, 1], in input order.
    """
    out: list[Detection] = []
    for obj in objects:
        if hasattr(obj, "box") and hasattr(obj, "name"):
            label, box = obj.name, obj.box
        elif isinstance(obj, dict):
            label, box = obj.get("name", obj.get("label", "")), obj.get("box")
        else:
            label, box = obj
        if box is None:
            continue
        if len(box) != 4:
            raise MmreError(f"dataset box for {label!r} must be (cx, cy, w, h), got {box!r}")
        cx, cy, w, h = (float(v) for v in box)
        w, h = abs(w), abs(h)
        out.append(Detection(_norm_box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), str(label), float(score)))
    return out


def _prepare_ultralytics_env(config_dir: str | Path | None, offline: bool) -> None:
    """Environment ultralytics reads at import time; must run before its first import."""
    if offline:
        os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("ULTRALYTICS_SAFE_LOAD", "1")
    if config_dir is not None:
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_dir() / "ultralytics"))
    try:
        Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if "ultralytics" not in sys.modules:
            raise MmreError(
                f"YOLO config directory {os.environ['YOLO_CONFIG_DIR']} is not writable ({e}); "
                "set YOLO_CONFIG_DIR or MMRE_CACHE to a writable directory"
            ) from None


class YoloDetector:
    """ultralytics YOLO loaded from a local file.

    Args:
        weights: a local ``.pt`` checkpoint, or a model ``.yaml`` (a path, or a built-in
            ultralytics name such as ``yolov8n.yaml``: random-initialised, for tests / smoke).
        conf: confidence threshold.
        iou: NMS IoU threshold.
        max_det: maximum detections per image.
        imgsz: inference image size (multiple of 32).
        device: torch device string (``"cpu"``, ``"cuda:0"``).
        batch_size: images per forward pass in :meth:`detect`.
        config_dir: writable ultralytics settings directory (``YOLO_CONFIG_DIR``).
        allow_download: let ultralytics download a bare official name (e.g. ``yolov8n.pt``);
            only :func:`build_detector` sets this, and only when not offline.
    """

    def __init__(
        self,
        weights: str | Path,
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 10,
        imgsz: int = 640,
        device: str = "cpu",
        *,
        batch_size: int = 8,
        config_dir: str | Path | None = None,
        allow_download: bool = False,
    ) -> None:
        w = str(weights)
        is_yaml = w.lower().endswith((".yaml", ".yml"))
        if not is_yaml and not allow_download:
            p = Path(w).expanduser()
            if not p.is_file():
                raise MmreError(f"YOLO weights not found: {p} (expected a local .pt file or a model .yaml)")
            w = str(p.resolve())
        _prepare_ultralytics_env(config_dir, offline=not allow_download)
        try:
            from ultralytics import YOLO

            self._model = YOLO(w, task="detect")
        except MmreError:
            raise
        except Exception as e:  # noqa: BLE001
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MmreError(f"cannot load YOLO model from {w}: {first[:300]}") from e
        self.weights = w
        self.conf, self.iou, self.max_det, self.imgsz = float(conf), float(iou), int(max_det), int(imgsz)
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.names: dict[int, str] = dict(getattr(self._model, "names", {}) or {})

    @property
    def model(self) -> Any:
        """The underlying ``ultralytics.YOLO`` object."""
        return self._model

    def detect(self, images: Sequence["Image.Image"]) -> list[list[Detection]]:
        """Detect objects; one list of detections (highest score first) per input image."""
        images = list(images)
        out: list[list[Detection]] = []
        for i in range(0, len(images), self.batch_size):
            chunk = [im if im.mode == "RGB" else im.convert("RGB") for im in images[i : i + self.batch_size]]
            results = self._model.predict(
                chunk,
                conf=self.conf,
                iou=self.iou,
                max_det=self.max_det,
                imgsz=self.imgsz,
                device=self.device,
                verbose=False,
                save=False,
            )
            for r in results:
                out.append(self._to_detections(r))
        return out

    def _to_detections(self, result: Any) -> list[Detection]:
        boxes = getattr(result, "boxes", None)
        if boxes is None or len(boxes) == 0:
            return []
        xyxyn = boxes.xyxyn.detach().cpu().numpy().tolist()
        confs = boxes.conf.detach().cpu().numpy().tolist()
        classes = boxes.cls.detach().cpu().numpy().astype(int).tolist()
        names = getattr(result, "names", None) or self.names
        dets = [
            Detection(_norm_box(*b), str(names.get(c, c)) if isinstance(names, dict) else str(c), float(s))
            for b, s, c in zip(xyxyn, confs, classes)
        ]
        dets.sort(key=lambda d: -d.score)
        return dets


def build_detector(spec: str | None, **kwargs: Any) -> YoloDetector | None:
    """Build the detector a pipeline option names.

    Args:
        spec: ``"none"`` (no detector: returns ``None``); a path to a ``.pt`` checkpoint; a
            model ``.yaml`` (e.g. ``yolov8n.yaml``, random init); a bare file name found in the
            mmre cache; or ``None`` / ``""`` for the default: ``$MMRE_YOLO_WEIGHTS`` →
            ``$MMRE_CACHE/yolov8n.pt`` (also ``yolo/``) → ultralytics download of ``yolov8n.pt``
            unless offline (``MMRE_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``: MmreError with how-to).
        **kwargs: passed to :class:`YoloDetector` (``conf``, ``iou``, ``max_det``, ``device``...).
    """
    hint = "a YOLO .pt file as the detector (e.g. --detector /path/yolov8n.pt)"
    s = "" if spec is None else str(spec).strip()
    if s.lower() == "none":
        return None
    if s.lower().endswith((".yaml", ".yml")):
        return YoloDetector(s, **kwargs)
    if not s:
        path = resolve_weights(
            "YOLO", None, env_var="MMRE_YOLO_WEIGHTS", cache_names=[DEFAULT_YOLO_WEIGHTS], option_hint=hint
        )
        if path is None:
            return YoloDetector(DEFAULT_YOLO_WEIGHTS, allow_download=True, **kwargs)
        return YoloDetector(path, **kwargs)
    p = Path(s).expanduser()
    if p.exists() or os.sep in s or "/" in s:
        return YoloDetector(resolve_weights("YOLO", p, env_var="MMRE_YOLO_WEIGHTS", cache_names=[]), **kwargs)
    # A bare file name: look in the cache, else download it (official names) unless offline.
    root = cache_dir()
    for cand in (root / s, root / "yolo" / s):
        if cand.is_file():
            return YoloDetector(cand, **kwargs)
    if is_offline():
        raise MmreError(
            f"YOLO weights {s!r} not found locally and downloads are off (allow them with MMRE_ALLOW_DOWNLOAD=1): "
            f"pass a path to the .pt file, set MMRE_YOLO_WEIGHTS, or put {s} in {root}"
        )
    return YoloDetector(s, allow_download=True, **kwargs)
