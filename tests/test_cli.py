"""The command line: listing, summaries, and one clear line for every user error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lenet2vit.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_every_model_with_facts(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    assert "resnet18" in out and "11,689,512" in out and "2015" in out and "resnet18_cifar" in out
    code, out, _ = run(capsys, "list", "resnet*", "--all")
    assert "resnet18_cifar " in out and "lenet5" not in out


def test_summary_prints_layer_table_with_shapes_params_macs(capsys):
    code, out, _ = run(capsys, "summary", "resnet18", "--input-size", "32", "--num-classes", "10")
    assert code == 0
    assert "layer4" in out and "1x512x1x1" in out  # ImageNet stem shrinks 32px to 1x1 at layer4
    assert "11,181,642" in out  # resnet18 at 10 classes


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "resnet19", "--dataset", "digits"], "Did you mean"),
        (["summary", "vgg17"], "Did you mean"),
        (["train", "lenet5", "--preset", "fsat", "--dataset", "digits"], "Did you mean: fast"),
        (["eval", "/nonexistent/run"], "no such run"),
        (["train", "lenet5", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar"),
        (["bench", "alexnet", "--input-size", "32", "--iters", "1"], "alexnet cannot take 32px inputs; it takes 63px"),
        (["summary", "lenet5", "--input-size", "64"], "it takes only 32px"),
        (["summary", "vit_b_32", "--input-size", "240"], "not divisible by the patch size 32"),
        (["train", "alexnet", "--dataset", "digits", "--form", "imagenet", "--input-size", "32", "--epochs", "1"],
         "alexnet cannot take 32px inputs"),
        (["train", "vgg11", "--dataset", "digits", "--epochs", "1", "--zero-init-residual"],
         "applies to residual networks"),
        (["train", "resnet20", "--dataset", "digits", "--no-flip", "--alternate-flip"], "needs flip=True"),
    ],
)
def test_user_errors_are_one_clear_line(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and needle in err and "Traceback" not in err


@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--batch-size", "-4"), ("--lr", "-1"), ("--epochs", "two")])
def test_bad_numbers_in_flags_are_rejected(capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        main(["train", "lenet5", flag, value])
    assert e.value.code == 2
    assert flag in capsys.readouterr().err


def test_console_script_runs_without_traceback_for_user_errors():
    p = subprocess.run([sys.executable, "-m", "lenet2vit", "summary", "resnt18"], capture_output=True, text=True)
    assert p.returncode == 2 and "resnet18" in p.stderr and "Traceback" not in p.stderr


def test_train_and_eval_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "train", "lenet5", "--dataset", "digits", "--preset", "quick", "--epochs", "1",
                          "--out", str(out), "--no-progress", "--device", "cpu")
    assert code == 0 and "lenet5" in stdout and "test: top-1" in stdout
    code, stdout, _ = run(capsys, "eval", str(out), "--no-progress")
    assert code == 0 and "top-1" in stdout and "top-5" in stdout
    trained = json.loads((out / "results.json").read_text())
    code, stdout, _ = run(capsys, "eval", str(out), "--no-progress", "--json")
    same = json.loads(stdout)
    assert same["n"] == json.loads((out / "config.json").read_text())["dataset"]["test"]  # quick's subset, as trained
    # bf16 kernels may round a borderline image the other way in another process: allow two images
    assert same["top1"] == pytest.approx(trained["test_top1"], abs=2 / same["n"]) and same["tta"] == trained["tta"]
    code, stdout, _ = run(capsys, "eval", str(out), "--no-progress", "--json", "--amp", "fp32", "--tta", "flip")
    other = json.loads(stdout)
    assert code == 0 and other["amp"] == "fp32" and other["tta"] == "flip" and other["n"] == same["n"]
    assert other["loss"] != pytest.approx(same["loss"], abs=1e-6)  # mirrored views change the averaged softmax
    code, stdout, _ = run(capsys, "eval", str(out), "--no-progress", "--json", "--split", "val", "--tta", "none")
    val = json.loads(stdout)
    assert code == 0 and val["split"] == "val" and val["n"] == json.loads((out / "config.json").read_text())["dataset"]["val"]


def test_recipe_flags_reach_the_protocol():
    from lenet2vit.cli import build_parser
    from lenet2vit.cli.flags import config_from_args

    no_drop = build_parser().parse_args(["train", "vgg16_bn", "--dropout", "0"])
    assert config_from_args(no_drop).dropout == 0.0 and config_from_args(build_parser().parse_args(["train", "vgg16"])).dropout is None
    args = build_parser().parse_args(["train", "resnet18", "--alternate-flip", "--zero-init-residual", "--tta", "translate"])
    cfg = config_from_args(args)
    assert cfg.alternate_flip and cfg.zero_init_residual and cfg.tta == "translate"
    plain = config_from_args(build_parser().parse_args(["train", "resnet18"]))
    assert not plain.alternate_flip and not plain.zero_init_residual and plain.tta == "translate"


@pytest.mark.parametrize("model", ["googlenet", "resnet18"])
def test_bench_train_at_32px_counts_its_macs_without_a_batchnorm_error(capsys, model):
    code, out, err = run(capsys, "bench", model, "--mode", "train", "--input-size", "32", "--batch-size", "2",
                         "--iters", "1", "--warmup", "1")
    assert code == 0, err
    assert f"{model:<20} train" in out and "Traceback" not in err


def test_lenet5_on_a_folder_of_mixed_size_photos_trains_at_its_only_size(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 10)):
        for c in ("a", "b"):
            d = tmp_path / "photos" / split / c
            d.mkdir(parents=True)
            for i in range(n):
                h, w = int(rng.integers(40, 120)), int(rng.integers(40, 120))
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(d / f"{i}.jpg")
    (tmp_path / "photos" / "train" / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    code, out, err = run(capsys, "train", "lenet5", "--dataset", "folder", "--data-dir", str(tmp_path / "photos"),
                         "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress", "--device", "cpu")
    assert code == 0, err
    assert "it/s" not in err and "img/s" not in err  # --no-progress silences the reading and decoding bars too
    assert "input: 32px, the largest input lenet5 takes" in out
    warned = [line for line in err.splitlines() if "broken.jpg" in line]  # one clean line, no Python source
    assert len(warned) == 1 and warned[0].startswith("warning: skipped 1 unreadable") and "UserWarning" not in err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["input_size"] == 32
    assert config["dataset"]["roles"] == {"train": "train/", "val": "10% held out of train/", "test": "test/"}
    assert "data: train 72 images from train/, val 8 images from 10% held out of train/, test 20 images from test/" in out
    # two classes: a top-5 would always be 100%, so none is reported
    assert "top-5" not in out and json.loads((tmp_path / "run" / "results.json").read_text())["test_top5"] is None
    code, out, _ = run(capsys, "eval", str(tmp_path / "run"), "--no-progress")
    assert code == 0 and "top-1" in out and "top-5" not in out


def test_every_error_class_of_the_library_is_a_user_error():
    """The CLI turns exactly UserError into one line; an error class outside it would show a traceback."""
    import importlib
    import inspect
    import pkgutil

    import lenet2vit
    from lenet2vit.errors import UserError

    found = {}
    for info in pkgutil.walk_packages(lenet2vit.__path__, "lenet2vit."):
        if info.name.endswith(("serving.app", "__main__")):
            continue  # needs the optional web stack; its errors are ServingError
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == mod.__name__ \
                    and not name.startswith("_"):
                found[f"{mod.__name__}.{name}"] = obj
    assert len(found) >= 12, sorted(found)
    outside = sorted(n for n, c in found.items() if not issubclass(c, UserError))
    assert not outside, f"not UserError: {outside}"


def test_every_protocol_field_is_a_flag_of_train_and_compare():
    """The train flags are made from TrainConfig's fields: each one is settable, and documented."""
    from dataclasses import fields

    from lenet2vit.cli import build_parser
    from lenet2vit.cli.flags import HELP, config_from_args
    from lenet2vit.engine import TrainConfig

    parser = build_parser()
    names = [f.name for f in fields(TrainConfig)]
    assert set(names) <= set(HELP), sorted(set(names) - set(HELP))
    cli = {"optimizer": "adamw", "lr": "0.05", "nesterov": None, "betas": "0.8,0.99", "milestones": "3,6",
           "milestone_unit": "step", "scale_jitter": "1.1,1.3", "limit": "100", "compile": None, "form": "cifar",
           "mean": "0.4,0.5,0.6", "epochs": "3", "aux_weight": "0.5", "zero_init_residual": None}
    for command in ("train", "compare"):
        argv = [command] + (["resnet18"] if command == "train" else ["--preset", "fast"])
        for name, value in cli.items():
            argv += [f"--{name.replace('_', '-')}"] + ([value] if value is not None else [])
        cfg = config_from_args(parser.parse_args(argv))
        assert (cfg.optimizer, cfg.lr, cfg.nesterov, cfg.betas, cfg.milestones, cfg.milestone_unit) == \
            ("adamw", 0.05, True, (0.8, 0.99), (3, 6), "step")
        assert (cfg.scale_jitter, cfg.limit, cfg.compile, cfg.form, cfg.mean, cfg.epochs, cfg.aux_weight) == \
            ((1.1, 1.3), 100, True, "cifar", (0.4, 0.5, 0.6), 3, 0.5)
    off = config_from_args(parser.parse_args(["train", "resnet18", "--no-nesterov", "--no-flip"]))
    assert off.nesterov is False and off.flip is False and off == get_fast().replace(nesterov=False, flip=False)


def get_fast():
    from lenet2vit.engine import get_preset

    return get_preset("fast")
