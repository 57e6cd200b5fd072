"""Command line: `llmkernels <command>` or `python -m llmkernels <command>`."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="llmkernels", description="Fused transformer kernels.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="what was built and which backend each op would use")
    commands.add_parser("demo", help="run every op on every present backend and compare")
    args = parser.parse_args(argv)
    if args.command == "info":
        import llmkernels

        llmkernels.info()
    elif args.command == "demo":
        from llmkernels import tour

        tour.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
