"""The ``lenet2vit`` command: a thin layer that parses flags and calls the library.

One module per group of commands (``models``: list, summary; ``train``: train, eval;
``compare``: compare, report; ``bench``; ``explain``; ``serve``: predict, export, serve), each
with an ``add_parsers(sub)``; the flags they share are in :mod:`lenet2vit.cli.flags`. Every
sub-command is one function call a user could make from Python. A user error
(:class:`~lenet2vit.errors.UserError`: unknown names, bad paths, mismatched checkpoints,
invalid numbers) prints one line starting with ``error:`` and exits with status 2; tracebacks
are kept for bugs.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from lenet2vit.cli import bench, compare, explain, models, serve, train
from lenet2vit.errors import UserError

__all__ = ["main", "build_parser"]

COMMAND_GROUPS = (models, train, compare, bench, explain, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lenet2vit",
        description="The milestone image classifiers from LeNet-5 to ViT: train, compare, explain.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    shown = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        return args.func(args) or 0
    except UserError as e:  # every user error: one line that says what to do
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        warnings.showwarning = shown


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings reach a user as one ``warning:`` line, without Python's category and source line."""
    print(f"warning: {message}", file=file or sys.stderr)
