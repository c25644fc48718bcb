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
