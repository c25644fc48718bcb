"""docs/results.md is what scripts/results.py makes of the committed raw results, to the byte."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("results_script", ROOT / "scripts" / "results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_run(folder: Path, train: dict, model: str = "resnet20", **results) -> Path:
    """A run folder with what results.py reads of it: config.json, and results.json where ``results`` are given."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model": model, "num_classes": 10, "in_chans": 3, "train": train}))
    if results:
        (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_results_doc_is_generated_from_the_committed_raw_results():
    assert (ROOT / "docs" / "results.md").read_text() == _script().render(), \
        "docs/results.md is stale: run `python scripts/results.py doc`"


def test_every_committed_result_names_its_command_commit_and_machine():
    mod = _script()
    runs = mod.runs_under(ROOT / "results")
    assert runs, "no raw results are committed"
    for run in runs:
        env = json.loads((run / "config.json").read_text())["environment"]
        assert env["command"] and env["git_commit"] and env["cpu"], run
        history = json.loads((run / "results.json").read_text())["history"]
        assert all("other_load" in h for h in history), run  # the machine's load during each epoch


def test_each_rows_machine_names_the_precision_it_trained_in():
    mod = _script()
    cfg = {"environment": {"cpu": "AMD EPYC", "cpu_capability": "AVX2", "cpu_threads": 2, "torch": "2.9"}}
    assert mod.machine(cfg, {"amp": "fp32"}) == "AMD EPYC (AVX2), 2 threads, fp32, torch 2.9"
    assert ", bf16 autocast," in mod.machine(cfg, {"amp": "bfloat16"})
    assert ", ?," in mod.machine(cfg, {})  # a result that did not record it says so


def test_collect_copies_results_and_never_weights(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "results.json", "log.jsonl", "eval-tta-none.json"):
        (run / name).write_text(json.dumps({"test_top1": 0.5}))
    for name in ("best.safetensors", "checkpoint.safetensors", "test_predictions.safetensors", ".run.lock"):
        (run / name).write_bytes(b"x")
    copied = _script().collect(run, tmp_path / "out")
    assert sorted(p.name for p in copied) == ["config.json", "eval-tta-none.json", "log.jsonl", "results.json"]
    assert not list((tmp_path / "out").glob("*.safetensors"))


def test_readme_main_job_sentence_is_generated_from_the_committed_study():
    mod = _script()
    readme = (ROOT / "README.md").read_text()
    assert readme == mod.render_readme(readme), "README.md's main-job sentence is stale: run `python scripts/results.py doc`"
    _, runs, inv = mod._main_job()
    assert len(inv["trained"]) == len(runs) == 9  # one model of every family, all trained by the timed invocation
    assert mod._minutes(inv["wall_seconds"]) in readme


def test_readme_milestone_table_is_the_docs_table_in_short():
    import re

    readme, doc = (ROOT / "README.md").read_text(), (ROOT / "docs" / "results.md").read_text()
    full = dict(re.findall(r"^\| `(\w+)` \| (?:yes|no) \|(?:[^|]*\|){4} ([\d.]+) \(", doc, flags=re.M))
    short = dict(re.findall(r"^\| `(\w+)` \| ([\d.]+) \| \d+", readme, flags=re.M))
    assert full and short == full  # every model of the milestone table, at the same test figure
    section = doc.split("## The milestone table")[1].split("\n## ")[0]
    trained_in = dict(re.findall(r"^- `(\w+)`: .*, \d+ threads?, ([^,]+), torch ", section, flags=re.M))
    precision = dict(re.findall(r"^\| `(\w+)` \| [\d.]+ \| [^|]+ \| ([^|]+?) \|$", readme, flags=re.M))
    assert precision == {m: trained_in[m] for m in full}  # each row's minutes name the precision they were taken in


def test_where_it_stands_gives_the_closest_recipe_over_its_seeds(tmp_path):
    mod = _script()
    preset = mod.fast_preset()

    def run(name, val, test, **train):
        return _fake_run(tmp_path / name, {**preset, **train}, best_val_top1=val, test_top1=test, tta="flip")

    a = run("a-s0", 0.905, 0.91, batch_size=128)
    b = run("a-s1", 0.901, 0.90, batch_size=128, seed=1)
    c = run("c-s0", 0.90, 0.95, lr=0.4)  # best on test, never on validation: not the one named
    assert mod._over_seeds(c, [a, b, c], preset) == ""  # one seed: nothing to average
    line = mod._over_seeds(a, [a, b, c], preset)
    assert "Over its 2 seeds" in line and "90.30 ± 0.28% validation" in line
    assert "90.50 ± 0.71% test top-1 (flip views), 2.50 points short on average." in line


def test_every_figure_the_page_links_is_drawn_from_the_results_and_committed():
    import re

    mod = _script()
    text = (ROOT / "docs" / "results.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(images/([^)]+)\)", text)
    figures = mod.figures()
    assert sorted(linked) == sorted(figures) == sorted([mod.FAST_FIGURE, mod.MILESTONE_FIGURE])
    for name in linked:
        assert (ROOT / "docs" / "images" / name).stat().st_size > 0, f"docs/images/{name}: run `python scripts/results.py doc`"
    # The fast figure has one line per recipe (the test views left out: they do not touch training) ...
    preset = mod.fast_preset()
    recipes = mod._recipes(mod.runs_under(mod.RESULTS / "fast"), preset, ignore=("tta",))
    val_axis = figures[mod.FAST_FIGURE].axes[0]
    assert [line.get_label() for line in val_axis.get_lines()] == list(recipes)
    # ... at the mean over its seeds of each epoch's validation accuracy.
    recipe, members = max(recipes.items(), key=lambda kv: len(kv[1]))
    line = next(ln for ln in val_axis.get_lines() if ln.get_label() == recipe)
    histories = [json.loads((r / "results.json").read_text())["history"] for r in members]
    expected = [100 * sum(h[i]["val_top1"] for h in histories) / len(histories) for i in range(len(histories[0]))]
    assert [round(y, 6) for y in line.get_ydata()] == [round(y, 6) for y in expected]
    # The milestone figure has one line per model in the table.
    models = re.findall(r"^\| `(\w+)` \| (?:yes|no) \|", text, flags=re.M)
    assert [ln.get_label() for ln in figures[mod.MILESTONE_FIGURE].axes[0].get_lines()] == models
    # A loss with GoogLeNet's auxiliary heads in it says so.
    title = figures[mod.MILESTONE_FIGURE].get_suptitle()
    assert ("googlenet_cifar's training loss adds its auxiliary heads' losses (x0.3 each)" in title) == (
        "googlenet_cifar" in models)


def test_a_runs_protocol_reads_later_fields_as_their_defaults_and_leaves_out_what_cannot_apply(tmp_path):
    mod = _script()
    preset = mod.fast_preset()

    def run(name, model, **train):
        later = {"whiten_stem", "plain_grad_clip"} - set(train)  # recorded before those fields
        return _fake_run(tmp_path / name, {k: v for k, v in {**preset, **train}.items() if k not in later}, model)

    resnet = mod.protocol(run("r", "resnet20"))
    assert resnet["whiten_stem"] is False and "plain_grad_clip" not in resnet  # off then; no clip rule with BN
    assert mod.changes(resnet, preset) == "whiten_stem False"
    alexnet = mod.protocol(run("a", "alexnet_cifar", grad_clip=2.0, plain_grad_clip=2.0))
    assert "whiten_stem" not in alexnet and alexnet["grad_clip"] is None  # no BatchNorm; the engine's own clip
    assert mod.changes(alexnet, preset) == "as the preset"
    unclipped = mod.protocol(run("u", "alexnet_cifar"))  # recorded before the clip rule: unclipped then
    assert mod.changes(unclipped, preset) == "plain_grad_clip 0.0"


def test_each_change_is_read_against_the_recipe_one_knob_away_nearer_the_preset(tmp_path):
    mod = _script()
    preset = mod.fast_preset()

    def run(name, val, **train):
        return _fake_run(tmp_path / name, {**preset, **train}, best_val_top1=val)

    runs = [run("p-s0", 0.90), run("p-s1", 0.92, seed=1),  # the preset, two seeds: 91.00 mean
            run("big", 0.905, batch_size=256, lr=0.2, tta="flip"),  # one knob (the views do not count)
            run("big-ls", 0.93, batch_size=256, lr=0.2, label_smoothing=0.2),  # one knob from "big", two from the preset
            run("far", 0.99, batch_size=64, lr=0.05, label_smoothing=0.0, crop_padding=2)]  # two knobs from all
    assert mod.knobs(mod.protocol(runs[3]), preset) == ["batch_size, lr", "label_smoothing"]
    text = "\n".join(mod.ledger_section(runs, preset))
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r[:4] for r in rows] == [
        ["| batch_size 256, lr 0.2", "batch_size 128, lr 0.1", "as the preset", "1 / 2"],
        ["| label_smoothing 0.2", "label_smoothing 0.1", "batch_size 256, lr 0.2", "1 / 1"]]
    assert rows[0][-1] == "-0.50 |" and rows[1][-1] == "+2.50 |"
    assert "crop_padding" not in text and "99.00" not in text  # no recipe one knob from it: nothing to read it against
    assert "standard deviation of 1.41 points" in text  # the preset's two seeds
