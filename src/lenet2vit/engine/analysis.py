"""What test predictions say beyond top-1: the confusion matrix, each class's precision, recall
and F1, and the most confident right and wrong answers.

``results.json``, ``lenet2vit eval --json`` and a study's report all take them from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["confusion_matrix", "class_report", "most_confident", "analyse"]


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> np.ndarray:
    """Counts ``m[true, predicted]``."""
    t, p = np.asarray(targets, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def class_report(confusion: np.ndarray, classes: Sequence[str]) -> dict:
    """Precision, recall, F1 and support of every class, and their unweighted (macro) means.

    From a confusion matrix, so the pooled matrix of several runs gives the pooled report. A
    class never predicted has precision 0 (and one never present, recall 0), as scikit-learn's
    ``zero_division=0``.
    """
    m = np.asarray(confusion, dtype=np.float64)
    tp, predicted, support = np.diag(m), m.sum(0), m.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    rows = [{"class": c, "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
             "support": int(support[i])} for i, c in enumerate(classes)]
    macro = {k: float(np.mean([r[k] for r in rows])) for k in ("precision", "recall", "f1")}
    return {"per_class": rows, "macro": macro}


def most_confident(targets: torch.Tensor, predictions: torch.Tensor, probabilities: torch.Tensor,
                   k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the ``k`` right and the ``k`` wrong predictions made with the highest
    probability, most confident first (ties in index order)."""
    confidence = probabilities.float().gather(1, predictions.long().view(-1, 1)).flatten()
    order = torch.argsort(-confidence, stable=True)
    right = predictions[order] == targets[order]
    return order[right][:k], order[~right][:k]


def analyse(res: dict, classes: Sequence[str], k: int = 8) -> dict:
    """The analysis of an evaluation's predictions (``evaluate(..., return_predictions=True)``):
    the confusion matrix, the class report, and the most confident right and wrong test images
    (index, true class, predicted class, probability)."""
    t, p, prob = res["targets"], res["predictions"], res["probabilities"]
    mat = confusion_matrix(t, p, len(classes))
    right, wrong = most_confident(t, p, prob, k)

    def listed(idx: torch.Tensor) -> list[dict]:
        return [{"index": int(i), "true": classes[int(t[i])], "predicted": classes[int(p[i])],
                 "probability": round(float(prob[i, p[i]]), 4)} for i in idx]

    return {"confusion": mat.tolist(), **class_report(mat, classes),
            "most_confident_right": listed(right), "most_confident_wrong": listed(wrong)}
