"""The ``ternfpga`` command line: one console script, one module per subcommand in host/commands/."""
from __future__ import annotations

import argparse
import importlib
import sys

from ternfpga.quant.errors import TernError

# subcommand name -> module in ternfpga.host.commands (each defines register(subparsers, name) -> parser
# whose defaults carry run=callable(args) -> int)
COMMANDS = {
    "quantize": "quantize",
    "inspect": "inspect",
    "eval": "evaluate",
    "generate": "generate",
    "synth": "synth",
    "rtl": "rtl",
    "estimate": "estimate",
    "build": "build",
    "board": "board",
    "train": "train",
    "corpus": "corpus",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (plus exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ternfpga", description="Ternary-weight LLM toolchain for the AMD Kria KV260.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name, module in COMMANDS.items():
        importlib.import_module(f"ternfpga.host.commands.{module}").register(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except TernError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except OSError as e:  # disk full, a file too large, an unreadable path met mid-way
        where = f" '{e.filename}'" if e.filename else ""
        print(f"error: input/output failed{where}: {e.strerror or e}; check the path, its permissions and the "
              f"free disk space", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
