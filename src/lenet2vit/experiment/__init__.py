"""Controlled comparisons of many models under one protocol, and their reports.

``compare`` trains every model with the same data, split, training preset and seeds and
stores one row per (model, seed) in a resumable results folder; ``build_report`` turns one or
several such folders into tables, figures and a self-contained report.html.
"""

from lenet2vit.experiment.store import CompareError, ResultStore, aggregate
from lenet2vit.experiment.study import STUDIES, Study, compare, jobs_for
from lenet2vit.experiment.report import build_report, load_study

__all__ = ["CompareError", "ResultStore", "aggregate", "STUDIES", "Study", "compare", "jobs_for", "build_report",
           "load_study"]
