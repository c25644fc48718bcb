"""Regenerate the table of registered models in README.md from the registry.

    python scripts/model_table.py          # rewrite the table in README.md
    python scripts/model_table.py --check  # exit 1 if README.md is out of date

The table sits between the markers ``<!-- models:start -->`` and ``<!-- models:end -->``.
MACs are counted at each model's default input size on the meta device (no compute).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lenet2vit.profile import model_macs
from lenet2vit.registry import list_models, model_info

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- models:start -->", "<!-- models:end -->"


def _num(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} G"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    return f"{n / 1e3:.1f} K"


def model_table() -> str:
    """The Markdown table of every registered model (CIFAR forms included)."""
    lines = [
        "| model | family | year | params | MACs | default input | reference for the count |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name in list_models():
        info = model_info(name)
        macs = model_macs(name)
        lines.append(
            f"| `{name}` | {info.family} | {info.year} | {info.ref_params:,} | {_num(macs)} | "
            f"{info.input_size}x{info.input_size}x{info.in_chans} | {info.ref_source} "
            f"({info.ref_num_classes} classes) |"
        )
    return "\n".join(lines)


def render(readme: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the markers {START} ... {END}")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{model_table()}\n{END}{tail}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if README.md is out of date")
    args = ap.parse_args()
    text = README.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print("README.md model table is out of date: run python scripts/model_table.py", file=sys.stderr)
            return 1
        print("README.md model table is up to date")
        return 0
    README.write_text(new)
    print(f"wrote {len(list_models())} models to {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
