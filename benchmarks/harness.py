"""What the benchmark scripts share: their output line, the machine they ran on, budgets, errors.

Every script prints one labelled figure a line (:func:`figure`), names the machine and warns
when other work was running (:func:`describe_machine`), takes its budget from ``--smoke`` or
the full one (:func:`apply_budget`) and turns user errors into one ``error:`` line
(:func:`script_main`). The scripts import it as a sibling module.
"""

from __future__ import annotations

import torch



def figure(label: str, value: float, unit: str, extra: str = "") -> None:
    """Print one labelled figure on its own line (the benchmarks' output format)."""
    print(f"{label:<66} {value:>12.2f} {unit}{('  ' + extra) if extra else ''}", flush=True)


def machine(device: torch.device) -> dict:
    """What figures were measured on: versions, CPU model, cores and how busy the machine was."""
    import os

    from lenet2vit.runtime import environment

    env = environment(device)  # with the CPU model and count (lenet2vit.runtime.provenance)
    env.update(load_average=list(os.getloadavg()) if hasattr(os, "getloadavg") else None)
    return env


def machine_line(env: dict) -> str:
    """One line naming the machine of :func:`machine`."""
    gpu = f", GPU {env['gpu']}" if env.get("gpu") else ""
    return (f"{env['cpu']} ({env['logical_cpus']} logical CPUs, torch threads {env['cpu_threads']}){gpu}; "
            f"torch {env['torch']}, torchvision {env['torchvision']}")


def describe_machine(env: dict) -> None:
    """Print the machine line, and a warning when other work makes the figures unreliable."""
    print(f"machine: {machine_line(env)}")
    load = env.get("load_average")
    if load and env["logical_cpus"] and load[0] > 0.5 * env["logical_cpus"]:
        print(f"warning: load average {load[0]:.1f} on {env['logical_cpus']} CPUs - other work is running, "
              "so these figures are not meaningful; rerun on a quiet machine")


def apply_budget(parser, args, full: dict, smoke: dict, positive: tuple[str, ...] = ()) -> None:
    """Fill the budget flags left unset from ``full`` (or ``smoke`` with ``--smoke``).

    Each name in ``positive`` must then be a number >= 1 (or unset); otherwise ``parser``
    exits with one line naming the flag.
    """
    for k, v in (smoke if args.smoke else full).items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    for name in positive:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive number, got {value}")


def script_main(run, args, *user_errors: type[BaseException]) -> int:
    """Run a benchmark script's ``run(args) -> dict``; one ``error:`` line for user errors.

    The figures are written atomically to ``args.out`` as JSON when it is set.
    """
    import sys

    from lenet2vit.engine.checkpoint import atomic_write_json
    from lenet2vit.errors import UserError

    try:
        result = run(args)
    except (UserError, *user_errors) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")
    return 0
