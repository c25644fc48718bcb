"""Raw results in, docs/results.md out: every figure of that page is generated here.

    python scripts/results.py collect RUN_OR_STUDY results/EXPERIMENT/NAME   # copy a finished run's raw files
    python scripts/results.py doc                                          # rewrite docs/results.md (+ README)

``collect`` copies what a result is made of (config.json, results.json, log.jsonl, a study's
protocol.json, and ``eval-*.json`` written by ``lenet2vit eval --json``), never weights. ``doc``
reads ``results/`` and writes every table of ``docs/results.md``; each row names the command,
the commit and the machine it comes from, and flags timings taken while other processes kept
the machine busy (``other_load`` of the run's epochs, see ``lenet2vit.runtime``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
DOC = ROOT / "docs" / "results.md"
IMAGES = ROOT / "docs" / "images"
# The figures of docs/results.md (PNG under docs/images/, linked from the page).
FAST_FIGURE, MILESTONE_FIGURE = "results-fast.png", "results-milestone.png"
README = ROOT / "README.md"
MAIN_JOB = ("<!-- main-job: written by `python scripts/results.py doc` from results/main-job -->", "<!-- /main-job -->")
MILESTONE_README = ("<!-- cifar10: written by `python scripts/results.py doc` from results/milestone and results/fast -->",
                    "<!-- /cifar10 -->")
RAW = ("config.json", "results.json", "log.jsonl", "protocol.json")
sys.path.insert(0, str(ROOT / "src"))
from lenet2vit.engine.config import TrainConfig, get_preset  # noqa: E402
from lenet2vit.engine.run_folder import NOT_PROTOCOL, build_model  # noqa: E402
from lenet2vit.experiment.plots import model_colors, training_curves  # noqa: E402
from lenet2vit.runtime import LOADED_CPUS  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# The comparison study this project reproduces: ImageNet-pretrained torchvision models, 10 epochs.
SEED_STUDY = {"alexnet": 70.40, "vgg16": 70.66, "googlenet": 82.46, "resnet18": 79.14}
# The milestone table (CIFAR forms, 10 epochs, our best recipe each): the test top-1 % each must
# reach (None: no target, run as time allows), and whether the form has batch normalisation.
MILESTONES = {"lenet5": (None, False), "alexnet_cifar": (80.0, False), "vgg16_bn_cifar": (90.0, True),
              "vgg16_cifar": (90.0, False), "googlenet_cifar": (91.0, True), "resnet18_cifar": (93.0, True),
              "mobilenet_v2_cifar": (None, True), "efficientnet_b0_cifar": (None, True), "vit_ti_16_cifar": (None, False),
              "r18_vit_ti_cifar": (None, True)}
# The four models the targets name; the rest of MILESTONES is listed when run.
MILESTONE_CORE = ("alexnet_cifar", "vgg16_bn_cifar", "googlenet_cifar", "resnet18_cifar")
# The `fast` preset's target (a fraction): CIFAR ResNet-18's milestone.
FAST_TARGET = MILESTONES["resnet18_cifar"][0] / 100
# The proxy search's baseline run: `fast` as it stood while the search ran, each other run one change to it.
PROXY_BASE = "r20-base"


# ----------------------------------------------------------------------------- collect


def collect(src: Path, dest: Path) -> list[Path]:
    """Copy the raw result files of a run folder or a study folder (and its runs) to ``dest``."""
    if not src.is_dir():
        raise SystemExit(f"error: {src} is not a run or study folder")
    copied = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_file() and (path.name in RAW or (path.name.startswith("eval-") and path.suffix == ".json")):
            if any(part.startswith(".") for part in rel.parts):
                continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / rel)
            copied.append(dest / rel)
    if not any(p.name == "results.json" for p in copied):
        raise SystemExit(f"error: {src} holds no results.json yet; collect it once it has finished")
    return copied


# ----------------------------------------------------------------------------- reading


def _json(path: Path):
    return json.loads(path.read_text())


def runs_under(folder: Path) -> list[Path]:
    """Every finished run folder (config.json + results.json with a test figure) under ``folder``."""
    return sorted(p.parent for p in folder.rglob("results.json")
                  if (p.parent / "config.json").exists() and "test_top1" in _json(p))


def loaded(res: dict) -> bool:
    return any((h.get("other_load") or 0) > LOADED_CPUS for h in res.get("history", []))


def precision(res: dict) -> str:
    """The precision a run trained in, as its results.json names it."""
    return {"bfloat16": "bf16 autocast", "float16": "fp16 autocast"}.get(res.get("amp"), res.get("amp") or "?")


def cpu_name(env: dict) -> str:
    """The CPU a run's environment names, with its vector capability where recorded."""
    return (env.get("cpu") or env.get("processor") or "?") + (f" ({env['cpu_capability']})" if env.get("cpu_capability") else "")


def machine(cfg: dict, res: dict) -> str:
    env = cfg.get("environment") or res.get("environment") or {}  # as the run started
    cpu = cpu_name(env)
    threads = env.get("cpu_threads", "?")
    return f"{cpu}, {threads} thread{'' if threads == 1 else 's'}, {precision(res)}, torch {env.get('torch', '?')}"


def commit(cfg: dict, res: dict) -> str:
    env = cfg.get("environment") or res.get("environment") or {}  # the code the run started with
    c = env.get("git_commit") or "?"
    return c + (" (+ local changes)" if env.get("git_dirty") else "")


def changes(train: dict, preset: dict, ignore: tuple[str, ...] = (), same: str = "as the preset") -> str:
    """The protocol fields in which ``train`` differs from ``preset`` (speed-only ones left out), or ``same``.

    The precision is named where a run asked for one other than the preset's (``--amp fp32``):
    it changes the arithmetic, not only the speed.
    """
    diffs = [f"{k} {train[k]!r}".replace("'", "") for k in _differing(train, preset, ignore)]
    return ", ".join(diffs) or same


def _differing(train: dict, preset: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """The protocol fields, sorted, in which two protocols differ (speed-only ones and the seed left out)."""
    skip = NOT_PROTOCOL | {"seed", "channels_last", *ignore}  # a speed-only setting, and the seed a row names
    return [k for k in sorted(set(train) & set(preset)) if k not in skip and train[k] != preset[k]]


# Fields that move as one knob: the learning rate is scaled with the batch size.
KNOBS = (("batch_size", "lr"),)


def knobs(train: dict, other: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """The knobs in which two protocols differ: each field, except that a batch size and its lr count as one."""
    diff = _differing(train, other, ignore)
    joined = [", ".join(k for k in knob if k in diff) for knob in KNOBS if set(knob) & set(diff)]
    return joined + [k for k in diff if not any(k in knob for knob in KNOBS)]


def recorded(cfg: TrainConfig) -> dict:
    """A protocol as a run's config.json records it (JSON types: lists, not tuples)."""
    return json.loads(json.dumps(cfg.to_dict()))


def fast_preset() -> dict:
    """The `fast` preset's protocol as a run's config.json records it."""
    return recorded(get_preset("fast"))


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- sections


def fast_section() -> str:
    folder = RESULTS / "fast"
    runs = runs_under(folder) if folder.exists() else []
    out = ["## The `fast` recipe: CIFAR ResNet-18, 10 epochs",
           "",
           "Target: at least 93% test top-1 on the full 45k / 5k / 10k split. Recipes are compared on the",
           "validation split; the test split is evaluated once, at the end of each run, with the weights of",
           "the best validation epoch. `test, one view` re-evaluates those weights without test-time views",
           "(`lenet2vit eval RUN --tta none --json > RUN/eval-tta-none.json`).",
           ""]
    if not runs:
        return "\n".join(out + ["No run has finished yet.", ""])
    preset = fast_preset()
    rows, curves, provenance = [], [], []
    for run in runs:
        cfg, res = _json(run / "config.json"), _json(run / "results.json")
        one_view = run / "eval-tta-none.json"
        name = run.relative_to(folder).as_posix()
        minutes = res["train_seconds"] / 60
        rows.append([f"`{name}`", changes(protocol(run), preset), pct(res["best_val_top1"]),
                     pct(_json(one_view)["top1"]) if one_view.exists() else "-",
                     f"{pct(res['test_top1'])} ({res['tta']})", f"{minutes:.0f}" + (" (loaded)" if loaded(res) else ""),
                     f"{res['train_images_per_s']:.0f}"])
        curves.append([f"`{name}`", " ".join(f"{100 * h['val_top1']:.1f}" for h in res["history"])])
        command = (cfg.get("environment") or {}).get("command") or "?"
        provenance.append(f"- `{name}`: `{command}` at commit "
                          f"{commit(cfg, res)}; {machine(cfg, res)}")
    best = _best(runs)
    b = _json(best / "results.json")
    gap = FAST_TARGET - b["test_top1"]
    out += [f"**Where it stands:** the closest recipe so far, chosen on validation, is "
            f"`{best.relative_to(folder).as_posix()}`: {pct(b['best_val_top1'])}% validation, "
            f"{pct(b['test_top1'])}% test top-1 with {b['tta']} views"
            + (f", {100 * gap:.2f} points short of the target." if gap > 0 else ", at or above the target.")
            + _over_seeds(best, runs, preset), ""]
    out += [table(["run", "changes to the preset", "best val top-1 %", "test, one view %", "test top-1 % (views)",
                   "train minutes", "train img/s"], rows), "",
            "Validation top-1 (%) after each epoch:", "",
            table(["run", "epochs 1 ... 10"], curves), "",
            f"![validation top-1 and training loss per epoch of each recipe, mean over its seeds](images/{FAST_FIGURE})",
            ""]
    out += seeds_section(folder, runs, preset)
    out += ledger_section(runs, preset)
    out += views_section(folder, runs)
    out += ["Where each row comes from:", "", *provenance, ""]
    return "\n".join(out)


def _mean_std(values: list[float]) -> str:
    import statistics

    m = 100 * statistics.mean(values)
    return f"{m:.2f} ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else f"{m:.2f}"


def _recipes(runs: list[Path], preset: dict, ignore: tuple[str, ...] = ()) -> dict[str, list[Path]]:
    """The runs grouped by recipe: their changes to the preset, the seed (and ``ignore``) left out."""
    groups: dict[str, list[Path]] = {}
    for run in runs:
        groups.setdefault(changes(protocol(run), preset, ignore), []).append(run)
    return groups


def _over_seeds(best: Path, runs: list[Path], preset: dict) -> str:
    """The best run's recipe over all its seeds, where it ran with more than one."""
    members = _recipes(runs, preset)[changes(protocol(best), preset)]
    if len(members) < 2:
        return ""
    res = [_json(r / "results.json") for r in members]
    gap = FAST_TARGET - sum(r["test_top1"] for r in res) / len(res)
    return (f" Over its {len(members)} seeds the recipe reaches {_mean_std([r['best_val_top1'] for r in res])}% "
            f"validation and {_mean_std([r['test_top1'] for r in res])}% test top-1 ({res[0]['tta']} views), "
            + (f"{100 * gap:.2f} points short on average." if gap > 0 else "at or above the target on average."))


def seeds_section(folder: Path, runs: list[Path], preset: dict) -> list[str]:
    """Mean and standard deviation over the seeds of each recipe that ran with more than one."""
    rows = []
    for recipe, members in _recipes(runs, preset).items():
        if len(members) < 2:
            continue
        res = [_json(r / "results.json") for r in members]
        one = [_json(r / "eval-tta-none.json")["top1"] for r in members if (r / "eval-tta-none.json").exists()]
        rows.append([recipe, str(len(members)), _mean_std([r["best_val_top1"] for r in res]),
                     _mean_std([r["test_top1"] for r in res]) + f" ({res[0]['tta']})",
                     _mean_std(one) if len(one) == len(members) else "-"])
    if not rows:
        return []
    return ["Recipes run with several seeds (mean ± sample standard deviation over the seeds):", "",
            table(["changes to the preset", "seeds", "best val top-1 %", "test top-1 % (views)", "test, one view %"],
                  rows), ""]


def ledger_section(runs: list[Path], preset: dict) -> list[str]:
    """What each change bought on validation: every two recipes that differ in one knob, side by side.

    Of each pair, the recipe nearer the preset (fewer knobs changed; then more seeds) is the base and
    the other its change. The test views are left out: they do not touch validation.
    """
    import statistics

    groups = _recipes(runs, preset, ignore=("tta",))
    proto = {k: protocol(members[0]) for k, members in groups.items()}
    seeds = {k: [_json(r / "results.json")["best_val_top1"] for r in members] for k, members in groups.items()}
    val = {k: statistics.mean(v) for k, v in seeds.items()}
    near = {k: (len(knobs(proto[k], preset, ("tta",))), -len(groups[k]), k) for k in groups}
    pairs = [sorted((a, b), key=near.get) for i, a in enumerate(groups) for b in list(groups)[i + 1:]
             if len(knobs(proto[a], proto[b], ("tta",))) == 1]
    if not pairs:
        return []
    rows = [[changes(proto[var], proto[base], ("tta",)), changes(proto[base], proto[var], ("tta",)),
             base, f"{len(groups[var])} / {len(groups[base])}", pct(val[var]), pct(val[base]),
             f"{100 * (val[var] - val[base]):+.2f}"]
            for base, var in sorted(pairs, key=lambda p: (near[p[0]], val[p[0]] - val[p[1]]))]
    spread = [statistics.stdev(v) for v in seeds.values() if len(v) > 1]
    span = f"{100 * min(spread):.2f}" + (f" to {100 * max(spread):.2f}" if min(spread) != max(spread) else "") \
        if spread else ""
    note = (f" One recipe's seeds spread by a sample standard deviation of {span} points here: a difference of "
            "that size between single runs is not a finding." if spread else "")
    return ["What each change bought: every two recipes above that differ in one knob (a batch size and the lr "
            "scaled with it count as one), compared on validation, mean over each side's seeds." + note, "",
            table(["change", "instead of", "on the recipe", "seeds (change / recipe)", "best val top-1 % (change)",
                   "best val top-1 % (recipe)", "bought (val, points)"], rows), ""]


VIEWS = ("none", "flip", "translate")


def views_section(folder: Path, runs: list[Path]) -> list[str]:
    """The test-time views, compared on each run's validation split (``eval-val-tta-VIEWS.json``)."""
    rows = []
    for run in runs:
        files = [run / f"eval-val-tta-{v}.json" for v in VIEWS]
        if any(f.exists() for f in files):
            rows.append([f"`{run.relative_to(folder).as_posix()}`"] + [pct(_json(f)["top1"]) if f.exists() else "-"
                                                                     for f in files])
    if not rows:
        return []
    return ["Test-time views, compared on the validation split with the best epoch's weights "
            "(`lenet2vit eval RUN --split val --tta VIEWS --json > RUN/eval-val-tta-VIEWS.json`; none: the image,",
            "flip: and its mirror, translate: both also shifted one pixel up-left and down-right):", "",
            table(["run", *(f"val top-1 % ({v})" for v in VIEWS)], rows), ""]


def seed_section() -> str:
    folder = RESULTS / "seed-paper"
    out = ["## The comparison study, as faithfully as it can be run here",
           "",
           "The study this project reproduces fine-tuned torchvision's ImageNet-form AlexNet, VGG16, GoogLeNet",
           "and ResNet18 from ImageNet weights on CIFAR-10: ToTensor + Normalize(0.5, 0.5), Adam 1e-3,",
           "cross-entropy, 10 epochs. `--preset seed-paper` runs exactly that protocol on the same forms.",
           "What the study left unstated, and what we chose:",
           "",
           "- **Input size.** It names none, yet torchvision's AlexNet cannot take a 32x32 image (its last",
           "  max-pool meets a 1x1 map; it needs at least 63 px), so the study must have resized, at least for",
           "  AlexNet. We feed each model the data's own 32 px where it accepts it and otherwise the smallest",
           "  size it accepts (AlexNet: 63 px), and record the size; `--input-size 224` is the usual",
           "  fine-tuning size, for GPU users. At 32 px VGG16's five max-pools leave a 1x1 map, which its",
           "  adaptive pooling copies 49 times into the 7x7 its classifier (25,088 inputs) expects.",
           "- **Batch size, validation split, augmentation.** Unstated; we use batch 64, hold 5,000 training",
           "  images out for validation, and augment nothing.",
           "- **Weights.** No weight host is reachable from our machines, so our runs start **from scratch**;",
           "  with `--pretrained imagenet` the same command starts from torchvision's published weights.",
           ""]
    runs = runs_under(folder) if folder.exists() else []
    if not runs:
        return "\n".join(out + ["No run has finished yet.", ""])
    rows, provenance = [], []
    order = {m: i for i, m in enumerate(SEED_STUDY)}
    for run in sorted(runs, key=lambda r: order.get(_json(r / "config.json")["requested_model"], 99)):
        cfg, res = _json(run / "config.json"), _json(run / "results.json")
        m = cfg["requested_model"]
        rows.append([f"`{cfg['model']}`", f"{cfg['input_size']} px", pct(res["best_val_top1"]), pct(res["test_top1"]),
                     f"{SEED_STUDY.get(m, '-')}", "from scratch" if not cfg.get("pretrained") else cfg["pretrained"],
                     f"{res['train_seconds'] / 60:.0f}" + (" (loaded)" if loaded(res) else ""),
                     f"{res['train_images_per_s']:.0f}"])
        # The code each job started with: a resumed or later study trains on a newer commit.
        provenance.append(f"- `{m}`: `{(cfg.get('environment') or {}).get('command') or '?'}` at commit "
                          f"{commit(cfg, res)}; {machine(cfg, res)}")
    stuck = []  # runs that never left chance: the study's figure needed its ImageNet weights
    for run in runs:
        cfg, res = _json(run / "config.json"), _json(run / "results.json")
        chance = 1 / cfg["num_classes"]
        if max(h["val_top1"] for h in res["history"]) < chance + 0.01:
            stuck.append(f"`{cfg['model']}` never left chance: validation top-1 at most "
                         f"{pct(max(h['val_top1'] for h in res['history']))}% in all {len(res['history'])} epochs, "
                         f"the training loss ending at {res['history'][-1]['train_loss']:.4f} (ln {cfg['num_classes']} = "
                         f"{math.log(cfg['num_classes']):.4f}). Without normalisation and from random weights, "
                         "Adam at 1e-3 left it at chance here; the study started it from "
                         "ImageNet weights.")
    out += [table(["model", "input", "best val top-1 %", "test top-1 %", "the study's test %", "start",
                   "train minutes", "train img/s"], rows), "",
            *[f"- {line}" for line in stuck], *([""] if stuck else []),
            "Where each row comes from:", "", *provenance, ""]
    return "\n".join(out)


def proxy_section() -> str:
    """The cheap search: one change each to ``fast`` on a small proxy network, judged on validation."""
    folder = RESULTS / "fast-proxy"
    runs = runs_under(folder) if folder.exists() else []
    if not runs:
        return ""
    results = {r: _json(r / "results.json") for r in runs}
    base_run = folder / PROXY_BASE
    base_train = protocol(base_run) if base_run in results else fast_preset()
    base = results.get(base_run)

    def change(run: Path) -> str:  # the test views do not touch validation: left out here
        return changes(protocol(run), base_train, ignore=("tta",), same="the baseline")

    since = changes(fast_preset(), base_train, ignore=("tta",), same="")  # what the preset became after the search
    rows, curves, commands = [], [], []
    for run in sorted(runs, key=lambda r: -results[r]["best_val_top1"]):
        cfg, res = _json(run / "config.json"), results[run]
        name = run.relative_to(folder).as_posix()
        delta = f"{100 * (res['best_val_top1'] - base['best_val_top1']):+.2f}" if base else "-"
        rows.append([f"`{name}`", f"`{cfg['model']}`", change(run), pct(res["best_val_top1"]), delta,
                     f"{pct(res['test_top1'])} ({res['tta']})"])
        curves.append([f"`{name}`", " ".join(f"{100 * h['val_top1']:.1f}" for h in res["history"])])
        commands.append(f"- `{name}`: `{(cfg.get('environment') or {}).get('command') or '?'}` at commit "
                        f"{commit(cfg, res)}; {machine(cfg, res)}")
    # "auto" resolves per machine: say what the runs that did not choose it computed in.
    auto = sorted({results[r].get("amp") or "?" for r in runs if _json(r / "config.json")["train"]["amp"] == base_train["amp"]})
    precision_line = (f"Every run that names no precision trained in {' / '.join(auto)} autocast "
                      "(`auto` on these CPUs).")
    return "\n".join([
        "### The search on a proxy network",
        "",
        "Each change to `fast` first ran on the paper's ResNet-20 (0.27M parameters, a fraction of the",
        "CIFAR ResNet-18's compute) for the full 10 epochs on the full split; a change that gains on",
        "validation is then confirmed with ResNet-18. The test column is for the record, not for choosing.",
        "These timings were taken beside other work and are not reported.",
        precision_line,
        *([f"The baseline `{PROXY_BASE}` is `fast` as it stood during the search; the preset has since changed to "
           f"{since} (chosen with ResNet-18 above)."] if base and since else []),
        "",
        table(["run", "model", "change to the baseline", "best val top-1 %", "vs the baseline (val, points)",
               "test top-1 % (views)"], rows), "",
        "Validation top-1 (%) after each epoch:", "",
        table(["run", "epochs 1 ... 10"], curves), "",
        "Where each row comes from:", "", *commands, "",
    ])


def _bench_provenance(res: dict, script: str) -> str:
    env = res.get("machine") or {}
    load = env.get("load_average") or [None]
    busy = f", load average {load[0]:.1f} at the start" if load[0] is not None else ""
    command = env.get("command") or script
    command = command if command.startswith("benchmarks/") else "benchmarks/" + command
    return (f"`python {command}` at commit {commit({'environment': env}, {})}; "
            f"{env.get('cpu', '?')}, {env.get('logical_cpus', '?')} logical CPUs{busy}, torch {env.get('torch', '?')}")


def scale_section() -> str:
    """The streaming data path at scale: benchmarks/stream_memory.py and stream_torchrun.py."""
    memory, torchrun = RESULTS / "bench" / "stream_memory.json", RESULTS / "bench" / "stream_torchrun.json"
    if not memory.exists() and not torchrun.exists():
        return ""
    out = ["## Image folders larger than memory: the streaming path", "",
           "Synthetic ImageNet-shaped folders of JPEGs of a photo's size (500x375), made by the scripts",
           "themselves. The streamed figures should stay flat as the folder grows; the memory path's",
           "decoded set grows with it.", ""]
    if memory.exists():
        res = _json(memory)
        st = res["settings"]
        rows = []
        for n, row in sorted(res["folders"].items(), key=lambda kv: int(kv[0])):
            s = row["stream"]
            rows.append([f"{int(n):,}", f"{s['images'] / s['seconds']:.0f}", f"{s['peak_rss_mb']:.0f}",
                         f"{s['worker_peak_rss_mb']:.0f}", f"{row['memory_path_need_mb']:,.0f}",
                         f"{row['memory']['peak_rss_mb']:,.0f}" if "memory" in row else "-"])
        ref = res["reference"]
        out += [f"**One epoch of the loader alone** (`StreamLoader`, crop {st['crop']} + flip, batch {st['batch']}, "
                f"{st['workers']} decoding workers; the training process takes one thread):", "",
                table(["JPEGs in the folder", "stream img/s", "stream peak RSS, MB", "largest worker's peak RSS, MB",
                       "memory path: decoded set, MB", "memory path: measured peak RSS, MB"], rows), "",
                f"Against torchvision's `ImageFolder` + `DataLoader` (the same crop, flip, workers and batch) on the "
                f"smallest folder, in the same run: {ref['images'] / ref['seconds']:.0f} img/s, so the stream path "
                f"runs at **{res['ratio_stream_over_reference']:.2f}x** the reference.", "",
                "Measured by " + _bench_provenance(res, "stream_memory.py") + ".", ""]
    if torchrun.exists():
        res = _json(torchrun)
        st = res["settings"]
        rows = []
        for n, row in sorted(res["folders"].items(), key=lambda kv: int(kv[0])):
            rows.append([f"{row['train_images'] + row['val_images']:,} + {int(n) // 10:,}", str(row["processes"]),
                         f"{row['peak_tree_pss_mb']:,.0f}", f"{row['peak_process_rss_mb']:,.0f}",
                         f"{row['memory_path_need_mb']:,.0f}", f"{row['train_images_per_s']:.1f}",
                         f"{row['wall_seconds']:.0f}"])
        out += [f"**Training with `torchrun` on {st['nproc']} CPU processes** over `train/` + `val/` folders of "
                f"JPEGs of every size and aspect up to {st['width']}x{st['height']}: `{st['model']}` at "
                f"{st['input_size']} px, {st['epochs']} epoch(s), batch {st['batch']} per process, {st['workers']} "
                f"decoding worker(s) each. Peak memory is sampled from `/proc` four times a second over the whole "
                f"process tree (PSS, so shared pages count once).", "",
                table(["images (train/ + val/)", "processes", "peak memory, all processes, MB",
                       "largest process's peak RSS, MB", "memory path: decoded sets, MB", "train img/s",
                       "wall seconds"], rows), "",
                "Measured by " + _bench_provenance(res, "stream_torchrun.py") + ".", ""]
    return "\n".join(out)


@functools.cache
def protocol(run: Path) -> dict:
    """A run's training protocol as it was asked for, in the fields that apply to its network.

    A field added to the protocol after the run holds its default there (each new field's default
    is the behaviour before it). Left out: the gradient clip the engine adds to a network without
    normalisation (``TrainConfig.fit_to_model``, which the run records as ``grad_clip``), the
    ``plain_grad_clip`` that sets it where the network has normalisation, and ``whiten_stem`` where
    it has no BatchNorm: there they change nothing.
    """
    cfg = _json(run / "config.json")
    train = {**recorded(TrainConfig()), **cfg["train"]}
    net = build_model(cfg["model"], cfg["num_classes"], cfg["in_chans"], cfg.get("model_kwargs") or {})
    probe = TrainConfig.from_dict({**train, "grad_clip": None, "plain_grad_clip": 1.0, "whiten_stem": True})
    fitted = probe.fit_to_model(net)[0]
    if fitted.grad_clip is None:
        train.pop("plain_grad_clip")
    elif train.get("grad_clip") == train["plain_grad_clip"]:
        train["grad_clip"] = None
    if not fitted.whiten_stem:
        train.pop("whiten_stem")
    return train


def _best(runs: list[Path]) -> Path:
    """The run with the best validation top-1 (the one a table's row is made of)."""
    return max(runs, key=lambda r: _json(r / "results.json")["best_val_top1"])


def _milestone_runs() -> dict[str, list[Path]]:
    """Per milestone model, every run of it at 10 epochs on the full split (results/milestone and fast)."""
    candidates: dict[str, list[Path]] = {}
    for folder in (RESULTS / "milestone", RESULTS / "fast"):
        for run in runs_under(folder) if folder.exists() else []:
            cfg = _json(run / "config.json")
            if cfg["model"] in MILESTONES and cfg["train"]["epochs"] == 10 and cfg["dataset"]["train"] == 45000:
                candidates.setdefault(cfg["model"], []).append(run)
    return candidates


def _table_runs() -> dict[str, Path]:
    """Per milestone model run so far, in table order, the run its row is made of."""
    candidates = _milestone_runs()
    return {m: _best(candidates[m]) for m in MILESTONES if m in candidates}


def milestone_section() -> str:
    """The milestones in their CIFAR forms, 10 epochs, the recipe chosen on validation for each."""
    out = ["## The milestone table: CIFAR forms at 10 epochs", "",
           "Each model in its CIFAR form, trained 10 epochs on the full 45k / 5k / 10k split with the recipe",
           "that reached the best validation accuracy among those tried for it (`fast` or a variant of it).",
           "The four seed models have a target; LeNet-5, MobileNet v2, EfficientNet-B0, ViT-Ti and the",
           "hybrid are listed as they are run. The ResNet-18 runs are those of the `fast` search above; the",
           "others are in `results/milestone/`.", ""]
    candidates = _milestone_runs()
    preset = fast_preset()
    rows, curves, provenance = [], [], []
    for model, (target, bn) in MILESTONES.items():
        if model not in candidates:
            continue
        best = _best(candidates[model])
        cfg, res = _json(best / "config.json"), _json(best / "results.json")
        test = 100 * res["test_top1"]
        rows.append([f"`{model}`", "yes" if bn else "no",
                     changes(protocol(best), preset), str(len(candidates[model])), pct(res["best_val_top1"]),
                     pct(_json(best / "eval-tta-none.json")["top1"]) if (best / "eval-tta-none.json").exists() else "-",
                     f"{test:.2f} ({res['tta']})", "-" if target is None else f"{target:.0f}",
                     "-" if target is None else "yes" if test >= target else f"no ({target - test:.2f} short)",
                     f"{res['train_seconds'] / 60:.0f}" + (" (loaded)" if loaded(res) else ""),
                     f"{res['train_images_per_s']:.0f}"])
        curves.append([f"`{model}`", " ".join(f"{100 * h['val_top1']:.1f}" for h in res["history"])])
        provenance.append(f"- `{model}`: `{(cfg.get('environment') or {}).get('command') or '?'}` at commit "
                          f"{commit(cfg, res)}; {machine(cfg, res)}")
    missing = [m for m in MILESTONE_CORE if m not in candidates]
    out += ["`test, one view` is the same weights without test-time views (`lenet2vit eval RUN --tta none --json",
            "> RUN/eval-tta-none.json`); the target is read against the test figure with the recipe's views.", "",
            table(["model", "batch norm", "recipe: changes to `fast`", "runs tried", "best val top-1 %",
                   "test, one view %", "test top-1 % (views)", "target %", "met", "train minutes", "train img/s"], rows), "",
            "Train minutes and img/s are each run's own machine and precision, named under \"Where each row comes",
            "from\" below: compare them only between rows on the same machine (`lenet2vit bench` measures models side by side).", "",
            "Validation top-1 (%) after each epoch, of the run in the table:", "",
            table(["model", "epochs 1 ... 10"], curves), "",
            f"![validation top-1 and training loss per epoch of each model's run in the table](images/{MILESTONE_FIGURE})",
            ""]
    tried = [[f"`{m}`", f"`{r.relative_to(RESULTS).as_posix()}`", changes(protocol(r), preset),
              pct(_json(r / "results.json")["best_val_top1"])]
             for m in MILESTONES for r in sorted(candidates.get(m, [])) if len(candidates[m]) > 1]
    if tried:
        out += ["Every recipe tried where a model ran more than once (the best validation figure makes its row):", "",
                table(["model", "run", "changes to `fast`", "best val top-1 %"], tried), ""]
    if missing:
        out += ["Not run at 10 epochs on the full split yet: " + ", ".join(f"`{m}`" for m in missing) + ".", ""]
    out += ["Where each row comes from:", "", *provenance, ""]
    return "\n".join(out)


def _main_job():
    """The main job's study folder: (protocol, its runs in job order, the invocation that trained them all)."""
    folder = RESULTS / "main-job"
    if not (folder / "protocol.json").exists():
        return None
    proto = _json(folder / "protocol.json")
    runs = [folder / "runs" / m / "seed0" for m in proto["study"]["models"]]
    whole = [i for i in proto.get("invocations", []) if len(i["trained"]) == len(runs)]
    return (proto, runs, whole[-1]) if whole and all((r / "results.json").exists() for r in runs) else None


def _minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def _main_job_machine(run: Path) -> str:
    cfg, res = _json(run / "config.json"), _json(run / "results.json")
    env = cfg.get("environment") or {}
    vector = f"{env['cpu_capability']}, " if env.get("cpu_capability") else ""
    return (f"{env.get('logical_cpus', '?')}-core {env.get('cpu') or '?'} ({vector}{res.get('amp') or 'float32'} autocast), "
            f"torch {env.get('torch', '?')}")


def main_job_readme() -> str:
    """The README's sentence on how long the main job takes, between the MAIN_JOB markers."""
    job = _main_job()
    if job is None:
        return "Its time has not been measured yet (`results/main-job`)."
    proto, runs, inv = job
    slow = max(runs, key=lambda r: _json(r / "results.json")["train_seconds"])
    slow_s = _json(slow / "results.json")["train_seconds"]
    return (f"It took {_minutes(inv['wall_seconds'])} on a {_main_job_machine(runs[0])}, "
            f"{_minutes(slow_s)} of it for the slowest, `{slow.parent.name}` "
            f"(every model's time: [docs/results.md](docs/results.md#the-main-job-one-model-of-every-family)).")


def main_job_section() -> str:
    out = ["## The main job: one model of every family", ""]
    job = _main_job()
    if job is None:
        return "\n".join(out + ["Not measured yet.", ""])
    proto, runs, inv = job
    rows = []
    for run in runs:
        res = _json(run / "results.json")
        rows.append([f"`{res['model']}`", pct(res["best_val_top1"]), pct(res["test_top1"]),
                     f"{res['train_seconds']:.1f}", f"{res['train_images_per_s']:.0f}"])
    data = proto["protocol"]["data"]
    env = (_json(runs[0] / "config.json").get("environment") or {})
    load = inv.get("other_load")
    out += [f"`{env.get('command', 'lenet2vit compare')}` with no arguments: preset `{proto['study']['train_preset']}`, "
            f"{data['sizes']['train']} training, {data['sizes']['val']} validation and {data['sizes']['test']} test "
            f"images of `{data['dataset']}` (scikit-learn's bundled digits, upscaled to {data['image_size']} px), "
            "one seed. These accuracies are on the digits, not CIFAR-10: the job shows that every family trains, "
            "not how well.", "",
            table(["model", "best val top-1 %", "test top-1 %", "train s", "train img/s"], rows), "",
            f"Wall time, from the start of the study to report.html written (protocol.json's `invocations`): "
            f"**{_minutes(inv['wall_seconds'])}**" + (" (loaded)" if load is not None and load > LOADED_CPUS else "")
            + f", at commit {inv.get('git_commit') or '?'}" + (" (+ local changes)" if inv.get("git_dirty") else "")
            + f"; {_main_job_machine(runs[0])}, other processes' load {load if load is not None else '?'} CPUs.", ""]
    return "\n".join(out)


def milestone_readme() -> str:
    """The README's short milestone table (test top-1 and training time of each row), between the MILESTONE_README markers."""
    rows, cpus = [], set()
    for model, best in _table_runs().items():
        cfg, res = _json(best / "config.json"), _json(best / "results.json")
        env = cfg.get("environment") or {}
        cpus.add(f"{env.get('logical_cpus', '?')}-core {cpu_name(env)}")
        rows.append([f"`{model}`", f"{100 * res['test_top1']:.2f}",
                     f"{res['train_seconds'] / 60:.0f}" + (" (loaded)" if loaded(res) else ""), precision(res)])
    if not rows:
        return "Not measured yet (`results/milestone`)."
    return "\n".join([
        "Each milestone in its CIFAR form, trained 10 epochs on the original CIFAR-10 (45k train, 5k validation, "
        f"10k test) on a {' / '.join(sorted(cpus))} CPU with the recipe chosen on validation (`fast` or a variant); "
        "test top-1 with the recipe's test-time views. Every run, curve, command and target: "
        "[docs/results.md](docs/results.md#the-milestone-table-cifar-forms-at-10-epochs)."
        + (" A time marked \"(loaded)\" was taken beside other work." if any("loaded" in r[2] for r in rows) else "")
        + (" Minutes compare only between rows on the same CPU and precision." if len(cpus) > 1 or len({r[3] for r in rows}) > 1 else ""),
        "", table(["model", "test top-1 %", "train minutes", "precision"], rows)])


def render_readme(text: str) -> str:
    """``text`` (the README) with the main job's sentence and the milestone table regenerated between their markers."""
    for (start, end), body in ((MAIN_JOB, main_job_readme), (MILESTONE_README, milestone_readme)):
        i, j = text.find(start), text.find(end)
        if i < 0 or j < i:
            raise SystemExit(f"error: README.md lacks the markers {start} ... {end}")
        text = text[: i + len(start)] + "\n" + body() + "\n" + text[j:]
    return text


def render() -> str:
    """The text of docs/results.md, from results/."""
    head = ["# Measured results", "",
            "Generated by `python scripts/results.py doc` from the raw results in `results/` (each run's",
            "`config.json`, `results.json` and per-epoch `log.jsonl`; weights are never committed). Every",
            "CIFAR-10 accuracy is on the original pixels (the lossless PNG copy). A timing marked",
            f"\"(loaded)\" was taken while other processes kept more than {LOADED_CPUS} of a CPU busy during",
            "at least one epoch; its accuracy is unaffected, its speed is not comparable.", ""]
    return "\n".join(head + [fast_section(), proxy_section(), seed_section(), milestone_section(), main_job_section(),
                         scale_section()]).rstrip() + "\n"


def figures() -> dict[str, Figure]:
    """The page's figures by file name: the curves of the `fast` search, each recipe's mean and std
    over its seeds, and those of each milestone model's run in the table."""
    out = {}
    fast = runs_under(RESULTS / "fast") if (RESULTS / "fast").exists() else []
    if fast:
        preset = fast_preset()
        recipes = _recipes(fast, preset, ignore=("tta",))  # the test views do not touch training
        rows = [{"model": recipe, "history": _json(r / "results.json")["history"]}
                for recipe, members in recipes.items() for r in members]
        out[FAST_FIGURE] = training_curves(rows, model_colors(list(recipes)))
    best = _table_runs()
    if best:
        models = list(best)
        rows = [{"model": m, "history": _json(best[m] / "results.json")["history"]} for m in models]
        out[MILESTONE_FIGURE] = training_curves(rows, model_colors(models))
        title = "training curves of each model's run in the milestone table"
        for m in models:  # a training loss that also counts auxiliary classifiers is not the others' loss
            cfg = _json(best[m] / "config.json")
            if cfg["model_kwargs"].get("aux_logits") and cfg["train"].get("aux_weight"):
                title += f"\n{m}'s training loss adds its auxiliary heads' losses (x{cfg['train']['aux_weight']:g} each)"
        out[MILESTONE_FIGURE].suptitle(title, fontsize=10)
    return out


def write_doc() -> str:
    text = render()
    DOC.write_text(text)
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name, fig in figures().items():
        fig.savefig(IMAGES / name, dpi=110, bbox_inches="tight")
    README.write_text(render_readme(README.read_text()))
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="copy a finished run's or study's raw result files into results/")
    c.add_argument("src", type=Path)
    c.add_argument("dest", type=Path)
    sub.add_parser("doc", help="rewrite docs/results.md (and the README's main-job sentence) from results/")
    args = p.parse_args(argv)
    if args.cmd == "collect":
        for path in collect(args.src, args.dest):
            print(f"copied {path}")
    else:
        write_doc()
        print(f"wrote {DOC} and the main job's sentence in {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
