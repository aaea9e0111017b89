"""evaluate: ultralytics' own validation of best.pt on the val split, a report, and the gate."""

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EvalResult", "champion_map50_95", "evaluate", "gate"]

_PLOTS = ("BoxPR_curve.png", "confusion_matrix_normalized.png", "val_batch0_pred.jpg")


@dataclass
class EvalResult:
    """Validation metrics of one model on one dataset."""

    map50_95: float
    map50: float
    precision: float
    recall: float
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)


def evaluate(weights: str | Path, data_yaml: str | Path, *, imgsz: int, batch: int = 16,
             device: str = "", out_dir: str | Path | None = None) -> EvalResult:
    """Runs ultralytics' validator; plots (PR curve, confusion matrix) go to out_dir."""
    from kfp_yolo.components.runtime import offline_environment

    offline_environment()
    from ultralytics import YOLO

    out_dir = Path(out_dir) if out_dir else None
    kwargs = {"project": str(out_dir.parent), "name": out_dir.name, "exist_ok": True} if out_dir \
        else {}
    metrics = YOLO(str(weights)).val(data=str(data_yaml), imgsz=imgsz, batch=batch,
                                     device=device or None, plots=out_dir is not None,
                                     verbose=False, **kwargs)
    box = metrics.box
    names = metrics.names
    per_class = {}
    for index, class_id in enumerate(box.ap_class_index):
        p, r, ap50, ap = box.class_result(index)
        per_class[names[int(class_id)]] = {"precision": float(p), "recall": float(r),
                                           "mAP50": float(ap50), "mAP50-95": float(ap)}
    plots = [str(out_dir / name) for name in _PLOTS if out_dir and (out_dir / name).exists()]
    return EvalResult(map50_95=float(box.map), map50=float(box.map50), precision=float(box.mp),
                      recall=float(box.mr), per_class=per_class, plots=plots)


def champion_map50_95(registry_uri: str, name: str, data_yaml: str | Path, *, imgsz: int,
                      work: str | Path) -> tuple[float, str] | None:
    """mAP50-95 of the published `latest` model on the same val set, with its version; None
    when the registry holds no model of that name yet."""
    from kfp_yolo.components import storage
    from kfp_yolo.components.release.publish import read_latest

    if not registry_uri:
        return None
    latest = read_latest(registry_uri, name)
    if latest is None:
        return None
    weights = storage.download(f"{latest['uri']}/best.pt", Path(work) / "champion.pt")
    return evaluate(weights, data_yaml, imgsz=imgsz).map50_95, str(latest["version"])


def gate(result: EvalResult, *, min_map50_95: float,
         champion: tuple[float, str] | None = None) -> tuple[bool, str]:
    """The quality gate: a floor on mAP50-95 and, when a champion exists, no worse than it."""
    if result.map50_95 < min_map50_95:
        return False, f"mAP50-95 {result.map50_95:.4f} < min_map50_95 {min_map50_95}"
    if champion is not None and result.map50_95 < champion[0]:
        return False, (f"mAP50-95 {result.map50_95:.4f} is worse than the published champion "
                       f"{champion[1]} ({champion[0]:.4f}) on the same validation set")
    return True, f"mAP50-95 {result.map50_95:.4f} >= {min_map50_95}" + (
        f" and >= champion {champion[1]} ({champion[0]:.4f})" if champion else "")




