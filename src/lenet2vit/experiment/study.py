"""A controlled comparison: many models, one protocol, several seeds.

Every model is trained with the same data (loaded once), the same train/val/test split, the
same training configuration and the same seeds; only the model differs. Each (model, seed)
is one ``engine.train_run`` into ``out/runs/<model>/seed<k>/``; its figures become one row of
the study's results store as soon as it finishes, so an interrupted study is resumed by
running the same command again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from lenet2vit.data import describe_data_dir
from lenet2vit.engine.checkpoint import FolderLock, save_weights
from lenet2vit.engine.config import PRESETS, TrainConfig, get_preset
from lenet2vit.engine.analysis import most_confident
from lenet2vit.engine.run import SPLIT_SEED, prepare_data, train_run
from lenet2vit.engine.run_folder import NOT_PROTOCOL, diff_protocols
from lenet2vit.experiment.store import (
    STD_NOTE,
    CompareError,
    ResultStore,
    read_protocol,
    relative_to,
    write_protocol,
)
from lenet2vit.registry import CIFAR_SUFFIX, model_info
from lenet2vit.runtime import LoadMeter, environment, git_state, resolve_device
from lenet2vit.weights import is_published

__all__ = ["Study", "STUDIES", "compare", "resolve_study", "parse_shard", "parse_seeds", "jobs_for", "find_pretrained"]


@dataclass(frozen=True)
class Study:
    """A named study: which training preset, which models, which data set and how many seeds.

    ``train_presets`` lists engine presets in order of preference; the first one that exists
    is used (so a study can name a preset another part of the library adds later).
    """

    name: str
    train_presets: tuple[str, ...]
    models: tuple[str, ...]
    dataset: str
    seeds: int
    description: str

    @property
    def train_preset(self) -> str:
        for p in self.train_presets:
            if p in PRESETS:
                return p
        return self.train_presets[-1]


STUDIES: dict[str, Study] = {
    "seed-paper": Study(
        "seed-paper", ("seed-paper",), ("alexnet", "vgg16", "googlenet", "resnet18"), "cifar10", 3,
        "the comparison study this project reproduces: Adam 1e-3, 10 epochs, no augmentation",
    ),
    "fast": Study(
        "fast", ("fast",),
        ("lenet5", "alexnet", "vgg16", "googlenet", "resnet18", "mobilenet_v2", "efficientnet_b0", "vit_ti_16"),
        "cifar10", 1, "the milestones from LeNet-5 to ViT with our fast CIFAR recipe",
    ),
    # The main job (`lenet2vit compare` with no arguments): one model of every family, in its small
    # form, on the bundled digits, in a few minutes on a CPU.
    "quick": Study(
        "quick", ("quick",),
        ("lenet5", "alexnet_cifar", "vgg11_bn_cifar", "googlenet_cifar", "resnet20", "mobilenet_v2_cifar",
         "efficientnet_b0_cifar", "vit_ti_16_cifar", "r18_vit_ti_cifar"), "digits", 1,
        "the main job: one model of every family from LeNet-5 to the ResNet+ViT hybrid, in its small form, "
        "on the bundled digits, in minutes on a CPU",
    ),
    "degradation": Study(
        "degradation", ("degradation", "resnet-paper-cifar", "fast"), ("plain20", "plain56", "resnet20", "resnet56"), "cifar10", 1,
        "the ResNet paper's degradation experiment (Fig. 6): deeper plain nets train worse, residual ones better",
    ),
}

# Training-config fields that do not change what is learned: left out of the compared protocol.
# A study runs many seeds under one protocol; the speed-only settings do not count either.
STUDY_NOT_PROTOCOL = NOT_PROTOCOL | {"seed"}
SAMPLES_PER_KIND = 8  # right and wrong test predictions kept per run for the report


# ----------------------------------------------------------------------------- arguments


def resolve_study(preset: str) -> Study:
    """The :class:`Study` named ``preset``, or an ad-hoc one for a plain training preset."""
    if preset in STUDIES:
        return STUDIES[preset]
    if preset in PRESETS:
        return Study(preset, (preset,), (), "cifar10", 1, f"the {preset} training preset")
    names = list(STUDIES) + [p for p in PRESETS if p not in STUDIES]
    raise CompareError(f"unknown preset {preset!r}; choose one of: {', '.join(names)}")


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"1/4"`` -> ``(1, 4)``: run the jobs whose index modulo 4 is 1."""
    if shard is None:
        return None
    if isinstance(shard, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not m:
            raise CompareError(f"--shard {shard!r} is not of the form i/n (e.g. 0/4 ... 3/4)")
        shard = (int(m.group(1)), int(m.group(2)))
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise CompareError(f"--shard {i}/{n}: need 0 <= i < n, e.g. 0/{max(n, 2)} ... {max(n, 2) - 1}/{max(n, 2)}")
    return i, n


def parse_seeds(seeds: int | str | Sequence[int] | None, default: int = 1) -> list[int]:
    """``3`` -> ``[0, 1, 2]``; ``"0,5,9"`` or ``[0, 5, 9]`` -> those seeds."""
    if seeds is None:
        seeds = default
    if isinstance(seeds, str):
        try:
            seeds = [int(s) for s in seeds.split(",") if s.strip()] if "," in seeds else int(seeds)
        except ValueError:
            raise CompareError(f"--seeds {seeds!r}: give a count (3 means seeds 0,1,2) or a list like 0,5,9") from None
    if isinstance(seeds, int):
        if seeds < 1:
            raise CompareError(f"--seeds must be at least 1, got {seeds}")
        return list(range(seeds))
    out = [int(s) for s in seeds]
    if not out or any(s < 0 for s in out) or len(set(out)) != len(out):
        raise CompareError(f"seeds {out} must be distinct whole numbers >= 0")
    return out


def _parse_models(models: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    models = list(dict.fromkeys(models or default))  # drop repeats, keep order
    for m in models:
        model_info(m)  # an unknown name fails now, before any data is read
    return models


def jobs_for(models: Sequence[str], seeds: Sequence[int], shard: tuple[int, int] | None = None) -> list[tuple[str, int]]:
    """The (model, seed) jobs of a study in their fixed order, seed-major, then this shard's share.

    Seed-major order means an interrupted study already compares every model on the first seed.
    """
    jobs = [(m, s) for s in seeds for m in models]
    if shard is None:
        return jobs
    i, n = shard
    return [j for k, j in enumerate(jobs) if k % n == i]


def find_pretrained(models: Sequence[str], directory: str | Path) -> dict[str, Path]:
    """Map each model to its weight file in ``directory`` (torchvision names: ``resnet18-f37072fd.pth``).

    A file matches a model when its name up to the first ``-`` (or its stem) equals the model
    name without ``_cifar``. Every model must have exactly one file.
    """
    d = Path(directory)
    if not d.is_dir():
        raise CompareError(f"--pretrained-dir {d}: no such folder; put the torchvision .pth files in one folder")
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix in (".pth", ".pt", ".safetensors", ".bin"))
    found, missing = {}, []
    for m in models:
        base = m[: -len(CIFAR_SUFFIX)] if m.endswith(CIFAR_SUFFIX) else m
        hits = [p for p in files if p.stem.split("-", 1)[0] == base]
        if len(hits) > 1:
            raise CompareError(f"--pretrained-dir {d}: several files for {m} ({', '.join(p.name for p in hits)}); keep one")
        if not hits:
            missing.append(m)
        else:
            found[m] = hits[0]
    if missing:
        raise CompareError(
            f"--pretrained-dir {d} has no weights for {', '.join(missing)} (expected e.g. {missing[0]}-<hash>.pth); "
            "add them or leave those models out: every model of a study starts the same way"
        )
    return found


# ----------------------------------------------------------------------------- protocol


def data_fingerprint(data) -> str:
    """A hash of the train, val and test images and labels: equal data, equal fingerprint."""
    h = hashlib.blake2b(digest_size=12)
    for arr in data:
        for t in (arr.images, arr.labels):
            h.update(t.detach().cpu().contiguous().numpy())
        h.update(json.dumps(list(arr.classes)).encode())
    return h.hexdigest()


def _train_protocol(cfg: TrainConfig) -> dict:
    return {k: v for k, v in cfg.to_dict().items() if k not in STUDY_NOT_PROTOCOL}


def _protocol(cfg: TrainConfig, dataset: str, data, form: str, input_size: int | None, pretrained: bool) -> dict:
    train, val, test = data
    return {
        "train": _train_protocol(cfg),
        "data": {
            "dataset": dataset,
            "classes": list(train.classes),
            "image_size": train.image_size,
            "channels": train.channels,
            "sizes": {"train": len(train), "val": len(val), "test": len(test)},
            "split_seed": SPLIT_SEED,
            "fingerprint": data_fingerprint(data),
        },
        "form": form,
        "input_size": input_size or "auto",
        "pretrained": pretrained,
    }


def _refuse_changed(out: Path, old: dict | None, new: dict, keys=None) -> None:
    if old is None:
        return
    diffs = diff_protocols(old["protocol"], new, keys)
    if diffs:
        more = f" and {len(diffs) - 5} more" if len(diffs) > 5 else ""
        raise CompareError(
            f"{out} holds a study with another protocol ({'; '.join(diffs[:5])}{more}); "
            "rerun with the original settings to resume it, or pass another --out"
        )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _update_protocol(store: ResultStore, protocol: dict, study: dict, env: dict) -> None:
    with store.locked():
        old = read_protocol(store.out)
        _refuse_changed(store.out, old, protocol)
        doc = {"protocol": protocol, "study": dict(study), "environments": [env], "created": _now(), "std": STD_NOTE}
        if old is not None:
            doc["created"] = old.get("created", doc["created"])
            s = old.get("study", {})
            doc["study"]["models"] = list(dict.fromkeys(s.get("models", []) + study["models"]))
            doc["study"]["seeds"] = sorted(set(s.get("seeds", [])) | set(study["seeds"]))
            envs = old.get("environments", [])
            doc["environments"] = envs + ([env] if env not in envs else [])
        doc["updated"] = _now()
        write_protocol(store.out, doc)


def _record_invocation(store: ResultStore, started: str, seconds: float, trained: list[tuple[str, int]],
                       other_load: float | None) -> None:
    """Append this process's wall time to ``protocol.json``'s ``invocations``: what a user waited for.

    From the start of the study (data loading included) to the report written; ``trained`` names
    the (model, seed) jobs this process ran, so a resumed study's time is not read as the whole.
    """
    with store.locked():
        doc = read_protocol(store.out) or {}
        doc.setdefault("invocations", []).append({
            "started": started, "finished": _now(), "wall_seconds": round(seconds, 3),
            "trained": [f"{m}/seed{s}" for m, s in trained], "other_load": other_load, **git_state(),
        })
        write_protocol(store.out, doc)


# ----------------------------------------------------------------------------- one job


def _reset_peak_rss() -> None:
    # Linux: make the process's peak RSS (what train_run reports on CPU) start afresh for
    # this job, so a model is not charged with the peak of the one before it.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def write_samples(run_dir: Path, test, k: int = SAMPLES_PER_KIND) -> None:
    """Keep the ``k`` most confident right and wrong test predictions of a run, with their images,
    for the report's gallery."""
    from safetensors.torch import load_file

    path = run_dir / "samples.safetensors"
    pred_path = run_dir / "test_predictions.safetensors"
    if path.exists() or not pred_path.exists():
        return
    p = load_file(str(pred_path))
    preds, targets, probs = p["predictions"].long(), p["targets"].long(), p["probabilities"].float()
    if len(preds) != len(test):
        return
    right, wrong = most_confident(targets, preds, probs, k)
    idx = torch.cat([right, wrong])
    save_weights(path, {
        "indices": idx,
        "images": test.images[idx.to(test.images.device)].cpu(),
        "targets": targets[idx],
        "predictions": preds[idx],
        "confidence": probs[idx, preds[idx]] if len(idx) else torch.empty(0),
    })


def _row(model: str, seed: int, res: dict, run_dir: Path, out: Path) -> dict:
    keep = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "epoch_seconds",
            "train_images_per_s")
    return {
        "model": model,
        "variant": res["model"],
        "seed": seed,
        "test_top1": res["test_top1"],
        "test_top5": res["test_top5"],
        "test_top1_err": 1.0 - res["test_top1"],
        "test_top5_err": 1.0 - res["test_top5"] if res["test_top5"] is not None else None,
        "test_loss": res["test_loss"],
        "best_val_top1": res["best_val_top1"],
        "best_epoch": res["best_epoch"],
        "epochs": res["epochs_done"],
        "train_seconds": res["train_seconds"],
        "seconds_per_epoch": res["seconds_per_epoch"],
        "train_images_per_s": res["train_images_per_s"],
        "infer_images_per_s": res["infer_images_per_s"],
        "params": res["params"],
        "macs": res["macs"],
        "input_size": res["input_size"],
        "peak_memory_mb": res.get("peak_memory_mb"),
        "device": res.get("device"),
        "amp": res.get("amp"),
        "run_dir": relative_to(run_dir, out),
        "finished": _now(),
        "history": [{k: h[k] for k in keep if k in h} for h in res.get("history", [])],
    }


# ----------------------------------------------------------------------------- the study


def compare(
    models: str | Sequence[str] | None = None,
    *,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    preset: str = "quick",
    seeds: int | str | Sequence[int] | None = None,
    out: str | Path | None = None,
    shard: str | tuple[int, int] | None = None,
    overrides: dict | None = None,
    form: str | None = None,
    input_size: int | None = None,
    pretrained_dir: str | Path | None = None,
    pretrained: str | None = None,
    download: bool = False,
    strict: bool = False,
    data=None,
    report: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
    on_row: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train every model under one protocol with every seed and store the results in ``out``.

    ``preset`` names a study (``quick``, ``fast``, ``seed-paper``, ``degradation``) that gives
    the training preset and the default models, data set and number of seeds, or a plain
    training preset. ``overrides`` changes single fields of the training config (not ``seed``:
    use ``seeds``, a count or a list). ``shard=(i, n)`` (or ``"i/n"``) runs only the jobs whose
    index in the fixed job order is ``i`` modulo ``n``. ``data`` may pass pre-loaded ``(train,
    val, test)`` arrays; otherwise the data is loaded once here. Finished (model, seed) rows are
    skipped and a cut-off run resumes from its checkpoint; a different protocol in the same
    ``out`` raises :class:`CompareError`. ``on_row`` is called with each new row. Returns all
    rows stored in ``out``; the report (tables, plots, report.html) is rebuilt at the end.
    """
    study = resolve_study(preset)
    models = _parse_models(models, study.models)
    if not models:
        raise CompareError(f"--preset {preset} has no default models; pass --models, e.g. --models lenet5,resnet20")
    seed_list = parse_seeds(seeds, study.seeds)
    shard = parse_shard(shard)
    overrides = dict(overrides or {})
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise CompareError(f"unknown training setting(s) {', '.join(unknown)}; choose from: {', '.join(sorted(known))}")
    if overrides.get("seed") is not None:
        raise CompareError("a study trains several seeds: pass seeds=3 (seeds 0,1,2) or seeds=[0, 5, 9], not seed")
    cfg = get_preset(study.train_preset).replace(**overrides).replace(form=form)
    dataset = dataset or (study.dataset if data is None else "custom")
    out = Path(out) if out is not None else Path("runs") / f"compare-{study.name}"
    if pretrained and pretrained_dir:
        raise CompareError("pass --pretrained imagenet or --pretrained-dir, not both")
    if pretrained and not is_published(pretrained):
        raise CompareError(f"--pretrained {pretrained!r}: a study takes imagenet or timm (published weights for "
                           "every model) or --pretrained-dir with one file per model")
    pretrained = ({m: pretrained for m in models} if pretrained
                  else find_pretrained(models, pretrained_dir) if pretrained_dir else {})
    if pretrained and cfg.form == "auto":
        cfg = cfg.replace(form="imagenet")  # published weights are for the paper's form

    # One process per study folder, or per shard of it: shards of one study may share the folder.
    name, what = (f".study-shard-{shard[0]}-of-{shard[1]}.lock", f"process running shard {shard[0]}/{shard[1]}") \
        if shard else (".study.lock", "study")
    with FolderLock(out, what, name):
        return _compare_locked(models, study, seed_list, shard, cfg, dataset, data_dir, out, pretrained, input_size,
                               download, strict, data, report, progress, log, on_row)


def _compare_locked(models, study, seed_list, shard, cfg, dataset, data_dir, out, pretrained, input_size, download,
                    strict, data, report, progress, log, on_row) -> list[dict]:
    store = ResultStore(out)
    started, t0, load = _now(), time.monotonic(), LoadMeter()
    # Refuse a changed training protocol before spending time on the data.
    early = {"train": _train_protocol(cfg), "form": cfg.form, "input_size": input_size or "auto",
             "pretrained": bool(pretrained), "data": {"dataset": dataset}}
    _refuse_changed(out, read_protocol(out), early, keys=["train", "form", "input_size", "pretrained", "data.dataset"])

    if data is None:
        log(f"loading {dataset} data{f' from {data_dir}' if data_dir else ''} (once for the whole study)")
        data = prepare_data(dataset, data_dir, cfg, download=download, strict=strict, progress=progress)
    train, val, test = data
    protocol = _protocol(cfg, dataset, data, cfg.form, input_size, bool(pretrained))
    study_doc = {
        "preset": study.name, "train_preset": study.train_preset, "models": models, "seeds": seed_list,
        "data_dir": describe_data_dir(data_dir),
        "pretrained": {m: Path(p).name for m, p in pretrained.items()},
    }
    device = resolve_device(cfg.device)
    _update_protocol(store, protocol, study_doc, environment(device))

    jobs = jobs_for(models, seed_list, shard)
    done = store.done()
    todo = [j for j in jobs if j not in done]
    log(f"study {study.name}: {len(models)} models x {len(seed_list)} seeds on {dataset} "
        f"({len(train)} train / {len(val)} val / {len(test)} test images), preset {study.train_preset}"
        + (f", shard {shard[0]}/{shard[1]}" if shard else "")
        + f": {len(jobs) - len(todo)} of {len(jobs)} jobs already done -> {out}")
    bar = tqdm(total=len(todo), desc=f"study {study.name}", unit="run", disable=not progress or not todo)
    if progress and log is print:
        log = tqdm.write  # lines above the study's bar, not through it
    for k, (model, seed) in enumerate(todo, 1):
        run_dir = out / "runs" / model / f"seed{seed}"
        log(f"[{k}/{len(todo)}] {model} seed {seed} -> {run_dir}")
        bar.set_postfix_str(f"{model} seed {seed}")
        _reset_peak_rss()
        res = train_run(
            model, out=run_dir, cfg=cfg.replace(seed=seed), dataset=dataset, data_dir=data_dir,
            input_size=input_size, pretrained=str(pretrained[model]) if model in pretrained else None,
            download=download, strict=strict, resume=True, progress=progress, data=data,
            log=lambda msg: log(f"  {msg}"), group=out.name,
        )
        if res.get("epochs_done", 0) < cfg.epochs or "test_top1" not in res:
            raise CompareError(f"{run_dir} stopped before its last epoch; rerun the same command to resume it")
        write_samples(run_dir, test)
        row = _row(model, seed, res, run_dir, out)
        store.add(row)
        bar.update(1)
        if on_row is not None:
            on_row(row)
    bar.close()
    rows = store.rows()
    where = f"results in {out}: results.csv, results_agg.csv, table.md"
    if report:
        from lenet2vit.experiment.report import build_report

        page = build_report([out], log=log)
        where += f", plots/; open {page} in a browser"
    _record_invocation(store, started, time.monotonic() - t0, todo, load.read())
    log(where)
    return rows
