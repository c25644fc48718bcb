"""The pure parts of a study: protocol diffs, aggregation, arguments, job order, figures."""

from __future__ import annotations

import math
import statistics

import pytest

from lenet2vit.experiment import CompareError, jobs_for
from lenet2vit.experiment.study import find_pretrained, parse_seeds, parse_shard, resolve_study
from lenet2vit.engine.run_folder import diff_protocols
from lenet2vit.experiment.store import ROW_FIELDS, ResultStore, aggregate, markdown_table


def _row(model, seed, top1, secs, **kw):
    return dict({"model": model, "variant": model, "seed": seed, "test_top1": top1, "test_top5": 1.0,
                 "test_top1_err": 1 - top1, "test_top5_err": 0.0, "test_loss": 1 - top1, "best_val_top1": top1,
                 "best_epoch": seed + 1, "epochs": 3, "train_seconds": secs, "seconds_per_epoch": secs / 3,
                 "train_images_per_s": 100.0 + seed, "infer_images_per_s": 900.0, "params": 1000, "macs": 5000,
                 "input_size": 32, "peak_memory_mb": 10.0, "device": "cpu", "amp": "fp32",
                 "run_dir": f"runs/{model}/seed{seed}"}, **kw)


def test_diff_protocols_names_the_changed_fields():
    old = {"train": {"epochs": 10, "lr": 0.1, "betas": [0.9, 0.99]}, "data": {"dataset": "cifar10"}}
    new = {"train": {"epochs": 2, "lr": 0.1, "betas": (0.9, 0.99)}, "data": {"dataset": "cifar10"}}
    assert diff_protocols(old, new) == ["train.epochs: 10 -> 2"]
    assert diff_protocols(old, old) == []
    # restricting to some keys ignores the others
    assert diff_protocols(old, {"train": old["train"], "data": {"dataset": "digits"}}, keys=["train"]) == []


def test_settings_added_to_the_training_config_later_do_not_change_an_old_protocol():
    from lenet2vit.engine.config import TrainConfig

    default = TrainConfig().label_smoothing
    old = {"train": {"epochs": 10}}  # written before label_smoothing existed
    assert diff_protocols(old, {"train": {"epochs": 10, "label_smoothing": default}}) == []
    assert diff_protocols(old, {"train": {"epochs": 10, "label_smoothing": default + 0.1}}) == [
        f"train.label_smoothing: {default!r} -> {default + 0.1!r}"]


def test_a_run_written_before_the_streaming_path_resumes_as_a_memory_run():
    old = {"dataset": {"name": "cifar10", "train": 45000}}  # no dataset.mode yet: decoded in memory
    assert diff_protocols(old, {"dataset": {"name": "cifar10", "train": 45000, "mode": "memory"}}) == []
    assert diff_protocols(old, {"dataset": {"name": "cifar10", "train": 45000, "mode": "stream"}}) == [
        "dataset.mode: 'memory' -> 'stream'"]


def test_a_run_written_before_the_data_roles_were_recorded_resumes():
    # dataset.roles describes which folder played which role; it never defines the protocol,
    # whether it is missing (older runs), added, or worded differently.
    old = {"dataset": {"name": "cifar10", "train": 45000}}
    new = {"dataset": {"name": "cifar10", "train": 45000,
                       "roles": {"train": "train/", "val": "10% held out of train/", "test": "test/"}}}
    assert diff_protocols(old, new) == []
    assert diff_protocols(new, {"dataset": {**new["dataset"], "roles": {"train": "a/"}}}) == []
    assert diff_protocols(old, {"dataset": {**new["dataset"], "train": 40000}}) == ["dataset.train: 45000 -> 40000"]


def test_aggregate_is_mean_and_sample_std_sorted_by_accuracy():
    rows = [_row("a", 0, 0.5, 10.0), _row("a", 1, 0.7, 14.0), _row("a", 2, 0.6, 11.0), _row("b", 0, 0.9, 3.0)]
    agg = aggregate(rows)
    assert [a["model"] for a in agg] == ["b", "a"]
    a = agg[1]
    assert a["n_seeds"] == 3 and a["seeds"] == [0, 1, 2]
    assert a["test_top1_mean"] == pytest.approx(statistics.mean([0.5, 0.7, 0.6]))
    assert a["test_top1_std"] == pytest.approx(statistics.stdev([0.5, 0.7, 0.6]))  # ddof=1
    assert a["train_seconds_std"] == pytest.approx(statistics.stdev([10.0, 14.0, 11.0]))
    assert math.isnan(agg[0]["test_top1_std"])  # one seed: no std
    table = markdown_table(agg)
    assert table.index("| b ") < table.index("| a ")
    assert "± " in table and "ddof=1" in table


def test_store_rewrites_all_files_and_replaces_a_rerun_row(tmp_path):
    store = ResultStore(tmp_path)
    store.add(_row("a", 0, 0.5, 1.0))
    store.add(_row("b", 0, 0.6, 1.0))
    store.add(_row("a", 0, 0.55, 1.0))  # the same job again replaces its row
    rows = store.rows()
    assert len(rows) == 2 and store.done() == {("a", 0), ("b", 0)}
    assert [r["test_top1"] for r in rows if r["model"] == "a"] == [0.55]
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header == ROW_FIELDS
    agg_header = (tmp_path / "results_agg.csv").read_text().splitlines()[0].split(",")
    assert {"model", "n_seeds", "test_top1_mean", "test_top1_std", "macs", "params"} <= set(agg_header)
    assert (tmp_path / "table.md").read_text().startswith("| model |")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_unreadable_results_is_a_clear_error(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(CompareError, match="delete it and rerun"):
        ResultStore(tmp_path).rows()


def test_jobs_are_seed_major_and_shards_cover_each_job_once():
    jobs = jobs_for(["a", "b", "c"], [0, 1])
    assert jobs[:3] == [("a", 0), ("b", 0), ("c", 0)]
    for n in (1, 2, 4, 7):
        shards = [jobs_for(["a", "b", "c"], [0, 1], (i, n)) for i in range(n)]
        flat = [j for s in shards for j in s]
        assert sorted(flat) == sorted(jobs) and len(flat) == len(set(flat))


@pytest.mark.parametrize("text,expected", [("0/2", (0, 2)), (" 3 / 4 ", (3, 4))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("bad", ["2/2", "1", "a/b", "0/0", "-1/3"])
def test_parse_shard_refuses(bad):
    with pytest.raises(CompareError, match="shard"):
        parse_shard(bad)


def test_parse_seeds():
    assert parse_seeds(3) == [0, 1, 2]
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("0,5,9") == [0, 5, 9]
    assert parse_seeds(None, default=2) == [0, 1]
    for bad in ("0,0", "x", 0, [-1]):
        with pytest.raises(CompareError):
            parse_seeds(bad)


def test_studies_and_unknown_preset():
    assert resolve_study("seed-paper").models == ("alexnet", "vgg16", "googlenet", "resnet18")
    assert resolve_study("degradation").models == ("plain20", "plain56", "resnet20", "resnet56")
    assert resolve_study("fast").train_preset == "fast"
    from lenet2vit.engine.config import PRESETS
    from lenet2vit.experiment import STUDIES
    from lenet2vit.registry import model_info

    for study in STUDIES.values():  # every study names registered models and an existing preset
        assert study.train_preset in PRESETS, study.name
        for m in study.models:
            model_info(m)
    with pytest.raises(CompareError, match="quick"):
        resolve_study("quik")


def test_find_pretrained_matches_torchvision_names(tmp_path):
    for name in ("resnet18-f37072fd.pth", "alexnet-owt-7be5be79.pth", "vgg16_bn-6c64b313.pth", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    found = find_pretrained(["resnet18_cifar", "alexnet"], tmp_path)
    assert found["resnet18_cifar"].name == "resnet18-f37072fd.pth"
    assert found["alexnet"].name == "alexnet-owt-7be5be79.pth"
    with pytest.raises(CompareError, match="no weights for vgg16"):  # vgg16_bn is another model
        find_pretrained(["vgg16"], tmp_path)
    with pytest.raises(CompareError, match="no such folder"):
        find_pretrained(["alexnet"], tmp_path / "missing")
