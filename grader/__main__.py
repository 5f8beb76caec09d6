"""Command line: `python -m grader autograde ASSIGNMENT [--workers N] [--scheduler ADDRESS] [--course DIR]`.

Exit status 0 when every submission reached an outcome (graded, timeout, crashed,
limit-exceeded, malformed), 1 otherwise, 2 for a usage error or an assignment that is not
converted to the probe/check convention.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grader import convention, coordinator, report, sandbox


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m grader", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    auto = commands.add_parser("autograde", help="grade submitted/<student>/<assignment>/ in sandboxes")
    auto.add_argument("assignment")
    auto.add_argument("--course", type=Path, default=Path.cwd(), help="the course folder (default: here)")
    auto.add_argument("--workers", type=int, help="local worker processes (default: one per free pair of cores)")
    auto.add_argument("--scheduler", help="an existing dask scheduler, e.g. tcp://host:8786")
    auto.add_argument("--timeout", type=float, default=sandbox.Limits.wall_s,
                      help="seconds per submission, all cells together (default %(default)s)")
    auto.add_argument("--cell-timeout", type=float, default=sandbox.Limits.cell_s,
                      help="seconds per cell (default %(default)s)")
    auto.add_argument("--memory-mib", type=int, default=sandbox.Limits.memory_bytes >> 20,
                      help="memory per submission where a cgroup is available (default %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    limits = sandbox.Limits(wall_s=args.timeout, cell_s=args.cell_timeout,
                            cpu_s=int(max(args.timeout, 1) * 2), memory_bytes=args.memory_mib << 20)
    try:
        summary = coordinator.autograde(args.course, args.assignment, args.workers, args.scheduler,
                                        limits, log=lambda line: print(line, flush=True))
    except (convention.NotConverted, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary_text(summary), flush=True)
    return 0 if summary.complete else 1


if __name__ == "__main__":
    sys.exit(main())
