"""The ``igkit`` command line: ``igkit explain`` and ``igkit demo``.

Adding a subcommand: write a module ``igkit/cli/NAME.py`` that defines ``COMMAND = Command(...)``
(see :mod:`igkit.cli._base`) and add ``"NAME"`` to :data:`COMMAND_MODULES`. The modules are
imported when the parser is built; they import no deep-learning framework or matplotlib at
module level, so ``import igkit.cli`` and ``igkit --help`` stay fast.

Exit codes: 0 success, 1 some images failed during the run (the others' outputs are written),
2 a usage mistake (one ``igkit: error: ...`` line on stderr, nothing written).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from igkit.cli._base import EXIT_USAGE, Command, Parser, UsageError
from igkit.process import keep_freed_memory

__all__ = ["COMMAND_MODULES", "Command", "UsageError", "build_parser", "main"]

#: Subcommand modules under ``igkit.cli``, in the order ``igkit --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "explain", "demo", "explain_dataset", "summarize", "compare", "report", "evaluate"
)


def _commands() -> list[Command]:
    return [importlib.import_module(f"igkit.cli.{name}").COMMAND for name in COMMAND_MODULES]


def build_parser() -> Parser:
    """The top-level parser with one subparser per registered command."""
    import igkit

    parser = Parser(
        prog="igkit",
        description="Integrated Gradients for image classifiers, with completeness checked.",
    )
    parser.add_argument("--version", action="version", version=f"igkit {igkit.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in _commands():
        sub = subparsers.add_parser(
            command.name, help=command.help, description=command.description
        )
        command.configure(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Usage errors are printed as one line on stderr (exit code 2) rather than raised, and so is a
    disk that cannot take a command's files (full, read-only, no permission: every command
    writes each file atomically, so nothing partial is left); anything else that goes wrong is
    a bug and propagates with its traceback.
    """
    # TensorFlow's C++ start-up logging would bury the one-line messages; users can override.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # This process is igkit's: keep freed memory for the next batch (igkit.process).
    keep_freed_memory()
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
        if args.command is None:
            names = ", ".join(COMMAND_MODULES)
            raise UsageError(f"choose a command: {names} (see 'igkit --help')")
        return int(args._run(args))
    except UsageError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"igkit: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        from igkit.io.writers import DISK_ERRORS

        if exc.errno not in DISK_ERRORS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(
            f"igkit: error: cannot write{where}: {os.strerror(exc.errno or 0)}; free space or "
            "choose another --out (every file written so far is whole)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version exit through argparse
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        print("igkit: interrupted", file=sys.stderr)
        return 130
