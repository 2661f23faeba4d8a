"""What every subcommand shares: the Command record, the usage-error type and the parser class.

A subcommand is a module in ``igkit.cli`` that defines ``COMMAND = Command(...)``; its name is
listed in ``igkit.cli.COMMAND_MODULES``. ``configure`` adds its arguments to its subparser and
``run`` does the work and returns the exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "Command", "Parser", "UsageError"]

#: Exit codes: success; some inputs failed during the run; the user's mistake (nothing done).
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake of the user's: printed as one ``igkit: error: ...`` line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are UsageErrors, so they print as one line (no usage)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        where = f" (see 'igkit {command} --help')" if command else " (see 'igkit --help')"
        raise UsageError(f"{message}{where}")


@dataclass(frozen=True)
class Command:
    """One subcommand.

    Attributes:
        name: What the user types, e.g. "explain".
        help: One line for ``igkit --help``.
        description: The paragraph at the top of ``igkit NAME --help``.
        configure: Adds the command's arguments to its parser.
        run: Does the work for the parsed arguments; returns the exit code. Raises UsageError
            for the user's mistakes.
    """

    name: str
    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
