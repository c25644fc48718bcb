"""The results store of a study: its protocol, one row per (model, seed), and the tables.

A study folder holds::

    protocol.json      what every model shared (data fingerprint, split, training config),
                       the study's models and seeds, and the environment it ran in
    results.json       {"rows": [...one per (model, seed), with per-epoch curves...],
                        "aggregate": [...one per model: mean and sample std over seeds...]}
    results.csv        the rows without the curves
    results_agg.csv    the aggregate
    table.md           the aggregate as a Markdown table, best mean test top-1 first
    runs/<model>/seed<k>/   the run folders written by ``engine.train_run``

Every file is rewritten whole and atomically after each finished row (under a file lock, so
two shards may share a folder), so a crash at any point leaves a consistent study that the
same command resumes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from lenet2vit.engine.checkpoint import atomic_write_json, atomic_write_text
from lenet2vit.errors import UserError

__all__ = [
    "CompareError",
    "ResultStore",
    "ROW_FIELDS",
    "METRICS",
    "aggregate",
    "read_protocol",
    "write_protocol",
    "markdown_table",
    "STD_NOTE",
]

STD_NOTE = "± is the sample standard deviation over seeds (ddof=1); a single seed has none"

# One row per (model, seed), in results.csv column order.
ROW_FIELDS = [
    "model", "variant", "seed",
    "test_top1", "test_top5", "test_top1_err", "test_top5_err", "test_loss",
    "best_val_top1", "best_epoch", "epochs",
    "train_seconds", "seconds_per_epoch", "train_images_per_s", "infer_images_per_s",
    "params", "macs", "input_size", "peak_memory_mb", "device", "amp", "run_dir",
]
# The numeric row fields that get a mean and a std over seeds.
METRICS = [
    "test_top1", "test_top5", "test_top1_err", "test_top5_err", "test_loss",
    "best_val_top1", "best_epoch",
    "train_seconds", "seconds_per_epoch", "train_images_per_s", "infer_images_per_s", "peak_memory_mb",
]
# Fields that are the same for every seed of a model (taken from its first row).
CONSTANTS = ["variant", "params", "macs", "input_size", "epochs"]


class CompareError(UserError, ValueError):
    """A study that cannot run or be reported as asked; the message says what to do."""


# ----------------------------------------------------------------------------- protocol


def read_protocol(out: str | Path) -> dict | None:
    """The parsed ``protocol.json`` of a study folder, or ``None`` when it has none."""
    path = Path(out) / "protocol.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CompareError(f"{path} is not valid JSON ({e}); restore it or start the study in another --out") from None


def write_protocol(out: str | Path, doc: dict) -> None:
    """Atomically write ``protocol.json`` into a study folder."""
    atomic_write_json(Path(out) / "protocol.json", doc)


# ----------------------------------------------------------------------------- aggregation


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def aggregate(rows: list[dict]) -> list[dict]:
    """One dict per model: ``<metric>_mean`` and ``<metric>_std`` over its seeds.

    The std is the sample standard deviation (``ddof=1``), ``nan`` for a single seed. Models
    are sorted by mean test top-1, best first.
    """
    by_model: dict[str, list[dict]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    agg = []
    for model, rs in by_model.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        a = {"model": model, "n_seeds": len(rs), "seeds": [r["seed"] for r in rs]}
        for k in CONSTANTS:
            a[k] = rs[0].get(k)
        for m in METRICS:
            vals = np.array([_num(r.get(m)) for r in rs], dtype=float)
            a[f"{m}_mean"] = float(vals.mean())
            a[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
        devices = sorted({str(r.get("device")) for r in rs})
        a["device"] = ",".join(devices)
        agg.append(a)
    agg.sort(key=lambda a: -a["test_top1_mean"] if math.isfinite(a["test_top1_mean"]) else math.inf)
    return agg


AGG_FIELDS = ["model", "variant", "n_seeds", "seeds", "params", "macs", "input_size", "epochs", "device"] + [
    f"{m}_{s}" for m in METRICS for s in ("mean", "std")
]


# ----------------------------------------------------------------------------- formatting


def fmt_count(n) -> str:
    """12345678 -> '12.3M' (params, MACs)."""
    n = _num(n)
    if not math.isfinite(n):
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def fmt_pm(mean, std, scale: float = 1.0, digits: int = 2) -> str:
    """'93.12 +- 0.21' (no std part when it is undefined)."""
    mean, std = _num(mean) * scale, _num(std) * scale
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"


# Columns of table.md and of the report's table: (header, function of an aggregate row).
TABLE_COLUMNS = [
    ("model", lambda a: a["model"] if a["model"] == a.get("variant") else f"{a['model']} ({a.get('variant')})"),
    ("seeds", lambda a: str(a["n_seeds"])),
    ("test top-1 %", lambda a: fmt_pm(a["test_top1_mean"], a["test_top1_std"], 100)),
    ("test top-5 %", lambda a: fmt_pm(a["test_top5_mean"], a["test_top5_std"], 100)),
    ("top-1 err %", lambda a: fmt_pm(a["test_top1_err_mean"], a["test_top1_err_std"], 100)),
    ("best val top-1 %", lambda a: fmt_pm(a["best_val_top1_mean"], a["best_val_top1_std"], 100)),
    ("best epoch", lambda a: fmt_pm(a["best_epoch_mean"], a["best_epoch_std"], 1, 1)),
    ("params", lambda a: fmt_count(a.get("params"))),
    ("MACs", lambda a: fmt_count(a.get("macs"))),
    ("train s", lambda a: fmt_pm(a["train_seconds_mean"], a["train_seconds_std"], 1, 1)),
    ("s / epoch", lambda a: fmt_pm(a["seconds_per_epoch_mean"], a["seconds_per_epoch_std"], 1, 2)),
    ("train img/s", lambda a: fmt_pm(a["train_images_per_s_mean"], a["train_images_per_s_std"], 1, 0)),
    ("infer img/s", lambda a: fmt_pm(a["infer_images_per_s_mean"], a["infer_images_per_s_std"], 1, 0)),
    ("peak MiB", lambda a: fmt_pm(a["peak_memory_mb_mean"], a["peak_memory_mb_std"], 1, 0)),
]


def markdown_table(agg: list[dict]) -> str:
    """The aggregate as a Markdown table (rows in the given order), with the std note below."""
    head = [h for h, _ in TABLE_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for a in agg:
        lines.append("| " + " | ".join(f(a) for _, f in TABLE_COLUMNS) + " |")
    return "\n".join(lines) + f"\n\n{STD_NOTE}.\n"


def _csv(rows: list[dict], fields: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (" ".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})
    return buf.getvalue()


# ----------------------------------------------------------------------------- the store


def _clean(v):
    # JSON has no NaN: write null (a single seed's std).
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class ResultStore:
    """The rows of one study folder, read and rewritten atomically as a whole."""

    def __init__(self, out: str | Path):
        self.out = Path(out)

    @property
    def results_path(self) -> Path:
        return self.out / "results.json"

    def rows(self) -> list[dict]:
        """Every stored row (with its per-epoch ``history``), in the order they finished."""
        if not self.results_path.exists():
            return []
        try:
            return json.loads(self.results_path.read_text())["rows"]
        except (json.JSONDecodeError, KeyError) as e:
            raise CompareError(
                f"{self.results_path} is unreadable ({e}); delete it and rerun the study to rebuild it "
                "(finished runs are kept in runs/ and are not retrained)"
            ) from None

    def done(self) -> set[tuple[str, int]]:
        """The (model, seed) pairs that already have a row."""
        return {(r["model"], int(r["seed"])) for r in self.rows()}

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the folder (shards sharing it take turns writing)."""
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / ".lock", "a") as f:
            try:
                import fcntl

                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            except (ImportError, OSError):  # no flock (Windows, some network file systems)
                pass
            yield

    def add(self, row: dict) -> list[dict]:
        """Store a finished row (replacing an older one for the same model and seed)."""
        with self.locked():
            rows = [r for r in self.rows() if (r["model"], int(r["seed"])) != (row["model"], int(row["seed"]))]
            rows.append(row)
            self.write(rows)
        return rows

    def write(self, rows: list[dict]) -> list[dict]:
        """Rewrite results.json, results.csv, results_agg.csv and table.md from ``rows``."""
        agg = aggregate(rows)
        doc = {
            "std": STD_NOTE,
            "rows": [{k: _clean(v) for k, v in r.items()} for r in rows],
            "aggregate": [{k: _clean(v) for k, v in a.items()} for a in agg],
        }
        atomic_write_json(self.results_path, doc)
        atomic_write_text(self.out / "results.csv", _csv(rows, ROW_FIELDS))
        atomic_write_text(self.out / "results_agg.csv", _csv(agg, AGG_FIELDS))
        atomic_write_text(self.out / "table.md", markdown_table(agg))
        return agg


def relative_to(path: str | os.PathLike, base: str | os.PathLike) -> str:
    """``path`` relative to ``base`` (with ``..`` where needed), as a POSIX string."""
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()
