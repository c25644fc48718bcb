"""The report of a study: tables, figures and one self-contained ``report.html``.

``build_report`` reads only what a study stored (``protocol.json``, ``results.json`` and the
run folders' ``test_predictions.safetensors`` / ``samples.safetensors``), so it can be rerun
at any time, on another machine, or over several study folders at once (shards of one
study, merged after checking that they share one protocol). Every image in report.html is a
base64 data URI, so the single file still works when moved or mailed.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lenet2vit.engine.analysis import class_report
from lenet2vit.engine.run_folder import diff_protocols
from lenet2vit.experiment import plots
from lenet2vit.experiment.store import (
    ROW_FIELDS,
    STD_NOTE,
    TABLE_COLUMNS,
    CompareError,
    ResultStore,
    fmt_count,
    read_protocol,
    relative_to,
    write_protocol,
)

__all__ = ["build_report", "load_study"]


# ----------------------------------------------------------------------------- reading studies


def load_study(out_dirs: str | Path | Sequence[str | Path], *, log: Callable[[str], None] = print) -> tuple[dict, list[dict]]:
    """The shared protocol document and all rows of one or several study folders.

    Rows carry an extra ``_run_path`` (absolute run folder). Folders with a different protocol
    than the first are refused with :class:`CompareError`; a (model, seed) present in several
    folders is taken from the first.
    """
    dirs = [Path(out_dirs)] if isinstance(out_dirs, (str, Path)) else [Path(d) for d in out_dirs]
    if not dirs:
        raise CompareError("no study folder given; pass the --out folder of `lenet2vit compare`")
    docs = []
    for d in dirs:
        doc = read_protocol(d)
        if doc is None:
            raise CompareError(f"{d}: not a study folder (no protocol.json); pass the --out folder of `lenet2vit compare`")
        docs.append(doc)
    first = docs[0]
    for d, doc in zip(dirs[1:], docs[1:]):
        diffs = diff_protocols(first["protocol"], doc["protocol"])
        if diffs:
            raise CompareError(
                f"{d} was run with another protocol than {dirs[0]} ({'; '.join(diffs[:4])}); "
                "only studies of one protocol can be merged - report them separately"
            )
    rows, seen = [], {}
    for d in dirs:
        for r in ResultStore(d).rows():
            key = (r["model"], int(r["seed"]))
            if key in seen:
                log(f"note: {r['model']} seed {r['seed']} is in {seen[key]} and {d}; keeping the one from {seen[key]}")
                continue
            seen[key] = d
            rows.append(dict(r, _run_path=str((d / r["run_dir"]).resolve())))
    merged = json.loads(json.dumps(first))
    if len(dirs) > 1:
        s = merged.setdefault("study", {})
        envs = list(first.get("environments", []))
        for doc in docs[1:]:
            o = doc.get("study", {})
            s["models"] = list(dict.fromkeys(s.get("models", []) + o.get("models", [])))
            s["seeds"] = sorted(set(s.get("seeds", [])) | set(o.get("seeds", [])))
            envs += [e for e in doc.get("environments", []) if e not in envs]
        merged["environments"] = envs
        merged["merged_from"] = [str(d) for d in dirs]
    return merged, rows


# ----------------------------------------------------------------------------- building


def _stem(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model)


def _confusion(rows: list[dict], k: int) -> tuple[np.ndarray, int]:
    """Counts pooled over the given runs' test predictions, and how many runs had them."""
    from safetensors.torch import load_file

    m, n = np.zeros((k, k), dtype=np.int64), 0
    for r in rows:
        path = Path(r["_run_path"]) / "test_predictions.safetensors"
        if not path.exists():
            continue
        p = load_file(str(path))
        t, y = p["targets"].long().numpy(), p["predictions"].long().numpy()
        m += np.bincount(t * k + y, minlength=k * k).reshape(k, k)
        n += 1
    return m, n


def _samples(row: dict) -> dict | None:
    from safetensors.torch import load_file

    path = Path(row["_run_path"]) / "samples.safetensors"
    return load_file(str(path)) if path.exists() else None


def _protocol_schedule(proto: dict) -> tuple[np.ndarray | None, np.ndarray | None, int | None]:
    """(steps, lr at each step, steps per epoch) the study's protocol sets, as the engine computes
    them (``lr_factor``, with the batch fitted to the training set); no line for a plateau
    schedule, whose drops each run decides from its validation figures."""
    from lenet2vit.engine.config import TrainConfig
    from lenet2vit.engine.loop import lr_factor

    n_train = int(proto.get("data", {}).get("sizes", {}).get("train") or 0)
    try:
        cfg = TrainConfig.from_dict(proto["train"])
    except Exception:  # a protocol of another version: the points alone
        return None, None, None
    if n_train < 1:
        return None, None, None
    cfg, _ = cfg.fit_to_data(n_train)
    per_epoch = max(n_train // cfg.batch_size, 1)  # training drops the last partial batch
    if cfg.schedule == "plateau":
        return None, None, per_epoch
    steps = np.arange(cfg.epochs * per_epoch)
    return steps, np.array([cfg.lr * lr_factor(int(i), per_epoch, cfg) for i in steps]), per_epoch


def _explain_panel(rows_by_model: dict[str, dict], samples: dict | None, classes: list[str],
                   log: Callable[[str], None]) -> bytes | None:
    """PNG bytes of ``lenet2vit.explain.side_by_side_panel`` when that function exists."""
    if samples is None or not len(samples["indices"]):
        return None
    try:
        import lenet2vit.explain as explain

        panel = getattr(explain, "side_by_side_panel", None)
    except Exception:  # the explain package is optional
        return None
    if panel is None:
        return None
    t, p = samples["targets"], samples["predictions"]
    pick = (t == p).nonzero().flatten()[:2].tolist() + (t != p).nonzero().flatten()[:2].tolist()
    run_dirs = [r["_run_path"] for r in rows_by_model.values()]
    try:
        png = panel(run_dirs, samples["images"][pick], samples["targets"][pick].tolist(), classes)
    except Exception as e:  # a broken panel must not cost the whole report
        log(f"note: explanation panel skipped ({type(e).__name__}: {e})")
        return None
    return png if isinstance(png, (bytes, bytearray)) and png else None


def build_report(out_dirs: str | Path | Sequence[str | Path], out: str | Path | None = None, *,
                 log: Callable[[str], None] = print) -> Path:
    """(Re)build the tables, figures and ``report.html`` of one or several study folders.

    With one folder and no ``out`` everything is written into that folder. Several folders
    (e.g. the shards of one study) are merged into ``out`` - refused when their protocols
    differ - which then holds the merged protocol.json, results and report. Returns the path of
    report.html.
    """
    dirs = [Path(out_dirs)] if isinstance(out_dirs, (str, Path)) else [Path(d) for d in out_dirs]
    if out is None:
        if len(dirs) != 1:
            raise CompareError("several study folders: pass --out for the merged report")
        out = dirs[0]
    out = Path(out)
    doc, rows = load_study(dirs, log=log)
    out.mkdir(parents=True, exist_ok=True)
    if len(dirs) > 1 or out.resolve() != dirs[0].resolve():
        write_protocol(out, doc)
    stored = [{k: v for k, v in dict(r, run_dir=relative_to(r["_run_path"], out)).items() if k != "_run_path"}
              for r in rows]
    agg = ResultStore(out).write(stored)

    classes = list(doc["protocol"]["data"].get("classes", []))
    order = [a["model"] for a in agg]
    colors = plots.model_colors(order)
    pdir = out / "plots"
    figures: list[tuple[str, str, Path]] = []  # (section, caption, png path)
    if agg:
        dataset = doc["protocol"]["data"].get("dataset", "")
        for stem, key, xlabel, log_x, bubbles in plots.SCATTERS:
            title = f"{dataset}: test top-1 (mean ± std over seeds) vs {xlabel.split(' (')[0].split(';')[0]}"
            fig = plots.scatter_plot(agg, key, xlabel, log_x=log_x, bubbles=bubbles, colors=colors, title=title)
            figures.append(("tradeoffs", stem.replace("_", " "), plots.save(fig, pdir / stem)[0]))
        figures.append(("curves", "training curves", plots.save(plots.training_curves(rows, colors), pdir / "training_curves")[0]))
        depths = plots.degradation_pairs(order)
        if depths:
            figures.append(("degradation", "degradation (plain vs ResNet)",
                            plots.save(plots.degradation_plot(rows, depths), pdir / "degradation")[0]))
    by_model: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["seed"]):
        by_model.setdefault(r["model"], []).append(r)
    if rows:
        steps, lrs, per_epoch = _protocol_schedule(doc["protocol"])
        fig = plots.lr_schedule_plot(steps, lrs, rows, colors, per_epoch)
        figures.append(("schedule", "learning-rate schedule", plots.save(fig, pdir / "lr_schedule")[0]))
    reports: dict[str, tuple[dict, int]] = {}  # per model: precision, recall, F1 of the pooled seeds
    for m in order:
        if not classes:
            break
        mat, n = _confusion(by_model[m], len(classes))
        if n:
            title = f"{m}: test confusion, % of true class ({n} seed{'s' if n > 1 else ''} pooled)"
            figures.append(("confusion", m, plots.save(plots.confusion_plot(mat, classes, title), pdir / f"confusion_{_stem(m)}")[0]))
            reports[m] = (class_report(mat, classes), n)

    first_runs = {m: by_model[m][0] for m in order}  # lowest seed of each model
    samples = {m: _samples(r) for m, r in first_runs.items()}
    first_samples = next((s for s in samples.values() if s is not None), None)
    panel = _explain_panel(first_runs, first_samples, classes, log) if first_runs else None

    page = _html(doc, agg, rows, figures, samples, first_runs, classes, panel, reports)
    path = out / "report.html"
    from lenet2vit.engine.checkpoint import atomic_write_text

    atomic_write_text(path, page)
    log(f"report: {path} ({len(agg)} models, {len(rows)} runs)")
    return path


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1400px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.8em}
.meta{color:#555} .note{color:#666;font-size:.9em}
table{border-collapse:collapse;font-size:.82em;margin:8px 0} th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f4f4f4} td{white-space:nowrap} .scroll{overflow-x:auto} #protocol td{text-align:left;white-space:normal} td:first-child,th:first-child{text-align:left} tbody tr:nth-child(even){background:#fafafa}
.figs{display:flex;flex-wrap:wrap;gap:16px} figure{margin:0;flex:0 1 584px;max-width:100%} figure img{width:100%;border:1px solid #eee}
figure.wide{flex-basis:100%}
figcaption{font-size:.85em;color:#555;text-align:center}
.figs figure.conf{flex:0 0 360px}
.thumbs{display:flex;flex-wrap:wrap;gap:6px;margin:4px 0 10px} .thumb{text-align:center;font-size:.72em;width:84px}
.thumb img{width:64px;height:64px;image-rendering:pixelated;border:3px solid #2a2}
.thumb.wrong img{border-color:#d33} .kind{font-weight:600;margin-top:6px}
pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:.8em}
"""


def _e(v) -> str:
    return html.escape(str(v))


def _img(png: bytes | Path, alt: str, cls: str = "") -> str:
    data = png.read_bytes() if isinstance(png, Path) else bytes(png)
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img{f" class={chr(34)}{cls}{chr(34)}" if cls else ""} alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _thumb_png(img) -> bytes:
    """One uint8 (C, H, W) image as PNG, scaled up to at least 64 px with nearest neighbours."""
    from PIL import Image

    a = np.asarray(img)
    a = a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))
    im = Image.fromarray(np.ascontiguousarray(a))
    if im.width < 64:
        f = math.ceil(64 / im.width)
        im = im.resize((im.width * f, im.height * f), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.4g}"
    return str(v)


def _samples_html(samples: dict | None, classes: list[str]) -> str:
    if samples is None:
        return '<p class="note">no sample predictions stored for this run</p>'
    parts = []
    t, p, c = samples["targets"].tolist(), samples["predictions"].tolist(), samples["confidence"].float().tolist()
    idx = samples["indices"].tolist()
    name = lambda i: classes[i] if 0 <= i < len(classes) else str(i)
    for kind, right in (("most confident right", True), ("most confident wrong", False)):
        items = [k for k in range(len(idx)) if (t[k] == p[k]) == right]
        cells = []
        for k in items:
            cap = f"{_e(name(p[k]))} ({100 * c[k]:.0f}%)" + ("" if right else f"<br>true: {_e(name(t[k]))}")
            alt = f"test image {idx[k]}: predicted {name(p[k])}, true {name(t[k])}"
            cells.append(f'<div class="thumb{"" if right else " wrong"}">{_img(_thumb_png(samples["images"][k]), alt)}'
                         f"<div>{cap}</div></div>")
        body = "".join(cells) if cells else '<span class="note">none among the kept samples</span>'
        parts.append(f'<div class="kind">{kind} ({len(items)})</div><div class="thumbs">{body}</div>')
    return "".join(parts)


def _class_tables(reports: dict[str, tuple[dict, int]]) -> str:
    """One table per model: each class's precision, recall and F1 (the seeds' predictions pooled)."""
    parts = []
    for m, (rep, n) in reports.items():
        body = "".join(f"<tr><td>{_e(r['class'])}</td><td>{100 * r['precision']:.1f}</td><td>{100 * r['recall']:.1f}</td>"
                       f"<td>{100 * r['f1']:.1f}</td><td>{r['support']}</td></tr>" for r in rep["per_class"])
        mac = rep["macro"]
        body += (f"<tr class='macro'><td>macro mean</td><td>{100 * mac['precision']:.1f}</td><td>{100 * mac['recall']:.1f}</td>"
                 f"<td>{100 * mac['f1']:.1f}</td><td></td></tr>")
        parts.append(f"<div><div class='kind'>{_e(m)} <span class='note'>({n} seed{'s' if n > 1 else ''})</span></div>"
                     f"<table class='sortable per-class' data-model='{_e(m)}'><thead><tr><th>class</th><th>precision %</th>"
                     f"<th>recall %</th><th>F1 %</th><th>images</th></tr></thead><tbody>{body}</tbody></table></div>")
    return "<div class='figs'>" + "".join(parts) + "</div>"


# Click a header to sort its table (numbers by value: a cell's data-v, else its leading number).
_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(t=>{const heads=[...t.tHead.rows[0].cells];
heads.forEach((th,i)=>{th.style.cursor='pointer';th.title='click to sort';th.addEventListener('click',()=>{
const asc=th.dataset.order!=='asc';heads.forEach(h=>delete h.dataset.order);th.dataset.order=asc?'asc':'desc';
const key=r=>{const c=r.cells[i];const v=c.dataset.v!==undefined?c.dataset.v:c.textContent.trim();
const n=parseFloat(String(v).replace(/,/g,''));return isNaN(n)?String(v).toLowerCase():n;};
const body=t.tBodies[0];const keep=[...body.rows].filter(r=>r.classList.contains('macro'));
const rows=[...body.rows].filter(r=>!r.classList.contains('macro'));
rows.sort((a,b)=>{const x=key(a),y=key(b);const c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y));
return asc?c:-c;});rows.concat(keep).forEach(r=>body.appendChild(r));});});});
"""
RAW_SORT = {"params": "params", "MACs": "macs"}  # columns shown with units (11.17 M) sort by the raw number


def _html(doc: dict, agg: list[dict], rows: list[dict], figures, samples: dict, first_runs: dict,
          classes: list[str], panel: bytes | None, reports: dict | None = None) -> str:
    proto, study = doc["protocol"], doc.get("study", {})
    data = proto["data"]
    envs = doc.get("environments", [])
    devices = sorted({str(r.get("device")) for r in rows})
    title = f"lenet2vit comparison: {study.get('preset', 'study')} on {data.get('dataset', '?')}"
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
           f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_CSS}</style></head><body>"]
    out.append(f"<h1>{_e(title)}</h1>")
    sizes = data.get("sizes", {})
    out.append(
        f"<p class='meta'>{len(agg)} models, {len(rows)} runs, seeds {_e(study.get('seeds', []))}; "
        f"{_e(data.get('dataset'))}: {sizes.get('train', '?')} train / {sizes.get('val', '?')} val / "
        f"{sizes.get('test', '?')} test images, {len(classes)} classes, {data.get('image_size')} px; "
        f"training preset {_e(study.get('train_preset', '?'))}, {proto['train'].get('epochs')} epochs; "
        f"device {_e(', '.join(devices))}. Same data, split, preset, epochs, batch size and seeds for every "
        "model; the best epoch is chosen on the validation split and the test split is evaluated once.</p>"
    )

    # the table
    head = "".join(f"<th>{_e(h)}</th>" for h, _ in TABLE_COLUMNS)
    def cell(h, f, a) -> str:
        raw = a.get(RAW_SORT[h]) if h in RAW_SORT else None
        return f"<td data-v='{raw}'>{_e(f(a))}</td>" if raw is not None else f"<td>{_e(f(a))}</td>"

    body = "".join(
        f"<tr class='model-row' data-model='{_e(a['model'])}'>" + "".join(cell(h, f, a) for h, f in TABLE_COLUMNS) + "</tr>"
        for a in agg
    )
    out.append(f"<h2 id='results-title'>Results</h2><div class='scroll'><table id='results' class='sortable'><thead>"
               f"<tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
    out.append(f"<p class='note'>Sorted by mean test top-1; click a header to sort by it. {_e(STD_NOTE)}. Peak memory: CUDA max allocated on a "
               "GPU, peak resident set size of the process on a CPU (includes the data set held in memory).</p>")

    def fig_section(section: str, heading: str, cls: str = "") -> None:
        figs = [f for f in figures if f[0] == section]
        if figs:
            items = "".join(f"<figure class='{cls}'>{_img(p, cap)}<figcaption>{_e(cap)}</figcaption></figure>" for _, cap, p in figs)
            out.append(f"<h2>{_e(heading)}</h2><div class='figs'>{items}</div>")

    fig_section("tradeoffs", "Accuracy against cost")
    fig_section("curves", "Training curves", "wide")
    fig_section("degradation", "Degradation: plain networks against ResNets", "wide")
    fig_section("schedule", "Learning-rate schedule", "wide")
    fig_section("confusion", "Confusion matrices (test split)", "conf")
    if reports:
        out.append("<h2>Per-class precision, recall and F1 (test split)</h2><p class='note'>From each model's confusion "
                   "matrix, its seeds' predictions pooled; the macro mean weighs every class alike.</p>")
        out.append(_class_tables(reports))

    if first_runs:
        out.append("<h2>Most confident predictions</h2><p class='note'>Each model's lowest seed: the test images it "
                   "classified right and wrong with the highest probability; green: right, red: wrong; under each "
                   "image: the predicted class (the model's confidence).</p>")
        for m, r in first_runs.items():
            out.append(f"<h3>{_e(m)} <span class='note'>({_e(r.get('variant'))}, seed {r['seed']})</span></h3>")
            out.append(_samples_html(samples.get(m), classes))
    if panel:
        cols = ", ".join(f"{m} (seed {r['seed']})" for m, r in first_runs.items())
        out.append("<h2>Explanations side by side</h2><div class='figs'><figure class='wide'>"
                   f"{_img(bytes(panel), 'explanations of the same test images by each model')}"
                   f"<figcaption>columns after the image, left to right: {_e(cols)}</figcaption></figure></div>")

    # the protocol
    facts = [
        ("data set", data.get("dataset")), ("data fingerprint", data.get("fingerprint")),
        ("classes", ", ".join(classes[:20]) + (" ..." if len(classes) > 20 else "")),
        ("split (train / val / test)", f"{sizes.get('train')} / {sizes.get('val')} / {sizes.get('test')} (split seed {data.get('split_seed')})"),
        ("image size / model input", f"{data.get('image_size')} px / {proto.get('input_size')}"),
        ("model form", proto.get("form")), ("pretrained", proto.get("pretrained")),
        ("models", ", ".join(study.get("models", []))), ("seeds", study.get("seeds")),
    ] + [(f"train.{k}", v) for k, v in proto["train"].items()]
    rows_html = "".join(f"<tr><td>{_e(k)}</td><td>{_e(_fmt(v) if not isinstance(v, (list, tuple)) else v)}</td></tr>" for k, v in facts)
    out.append(f"<h2>Protocol</h2><table id='protocol'><tbody>{rows_html}</tbody></table>")
    env_keys = sorted({k for e in envs for k in e})
    if envs:
        ehead = "".join(f"<th>{_e(k)}</th>" for k in env_keys)
        ebody = "".join("<tr>" + "".join(f"<td>{_e(_fmt(e.get(k)))}</td>" for k in env_keys) + "</tr>" for e in envs)
        out.append(f"<h3>Environment</h3><table id='environment'><thead><tr>{ehead}</tr></thead><tbody>{ebody}</tbody></table>")
    out.append(f"<details><summary>protocol.json</summary><pre>{_e(json.dumps(doc, indent=2))}</pre></details>")

    # every run
    fields = [f for f in ROW_FIELDS if f != "run_dir"]
    rhead = "".join(f"<th>{_e(f)}</th>" for f in fields)
    rbody = "".join(
        "<tr class='run-row'>" + "".join(
            f"<td>{_e(fmt_count(r.get(f)) if f in ('params', 'macs') else _fmt(r.get(f)))}</td>" for f in fields) + "</tr>"
        for r in sorted(rows, key=lambda r: (r["model"], r["seed"]))
    )
    out.append(f"<h2>Every run</h2><div class='scroll'><table id='runs' class='sortable'><thead><tr>{rhead}</tr></thead>"
               f"<tbody>{rbody}</tbody></table></div>")
    out.append("<p class='note'>Made by <code>lenet2vit report</code> from results.json; rebuild it any time.</p>")
    out.append(f"<script>{_SORT_JS}</script></body></html>\n")
    return "\n".join(out)
