"""Per-class precision, recall and F1 (checked against scikit-learn), the most confident answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import precision_recall_fscore_support

from lenet2vit.engine.analysis import analyse, class_report, confusion_matrix, most_confident


def test_class_report_equals_scikit_learn():
    rng = np.random.default_rng(0)
    t = torch.from_numpy(rng.integers(0, 4, 300))
    p = torch.where(torch.from_numpy(rng.random(300) < 0.6), t, torch.from_numpy(rng.integers(0, 3, 300)))  # class 3 rarely predicted
    mat = confusion_matrix(t, p, 5)  # class 4: never present, never predicted
    assert (mat == sk_confusion(t, p, labels=range(5))).all()
    rep = class_report(mat, list("abcde"))
    prec, rec, f1, support = precision_recall_fscore_support(t, p, labels=range(5), zero_division=0)
    for i, row in enumerate(rep["per_class"]):
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx(
            (prec[i], rec[i], f1[i], support[i]))
    assert rep["macro"]["f1"] == pytest.approx(f1.mean())


def test_most_confident_right_and_wrong_come_first():
    t = torch.tensor([0, 1, 1, 0, 1])
    p = torch.tensor([0, 1, 0, 1, 1])
    prob = torch.tensor([[0.6, 0.4], [0.1, 0.9], [0.95, 0.05], [0.3, 0.7], [0.2, 0.8]])
    right, wrong = most_confident(t, p, prob, k=2)
    assert right.tolist() == [1, 4] and wrong.tolist() == [2, 3]
    res = analyse({"targets": t, "predictions": p, "probabilities": prob}, ["cat", "dog"], k=1)
    assert res["most_confident_wrong"] == [{"index": 2, "true": "dog", "predicted": "cat", "probability": 0.95}]
    assert res["confusion"] == [[1, 1], [1, 2]]


def test_results_and_eval_carry_the_analysis(tmp_path, capsys):
    from lenet2vit.cli import main
    from lenet2vit.data import load_train_val_test
    from lenet2vit.engine import TrainConfig, evaluate_run, train_run

    data = load_train_val_test("digits", None, progress=False)
    cfg = TrainConfig(epochs=1, batch_size=32, amp="fp32", device="cpu", lr=0.05)
    res = train_run("lenet5", out=tmp_path / "run", cfg=cfg, dataset="digits", data=data, progress=False,
                    log=lambda s: None)
    a = res["analysis"]
    assert [r["class"] for r in a["per_class"]] == [str(i) for i in range(10)]
    assert sum(r["support"] for r in a["per_class"]) == len(data[2]) == sum(map(sum, a["confusion"]))
    assert sum(a["confusion"][i][i] for i in range(10)) / len(data[2]) == pytest.approx(res["test_top1"])
    ev = evaluate_run(tmp_path / "run", device="cpu", progress=False)
    assert ev["analysis"]["confusion"] == a["confusion"]  # the test split from disk: the same predictions
    assert main(["eval", str(tmp_path / "run"), "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "macro mean" in out
