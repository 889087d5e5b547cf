"""One way to fail: every "your input is wrong" error is a :class:`UserError`.

Entry points run through :func:`entry_point`: a UserError is printed as ``error: ...`` on
stderr and the script exits with status 1; any other exception is a bug in this repo and
keeps its traceback. Subclasses say which input was wrong (a weight file, an annotation
file, a config value); some also derive from the built-in type code elsewhere expects
(``ValueError``, ``FileNotFoundError``) so that callers catching those keep working.
"""

import functools
import sys

from . import runtime


class UserError(Exception):
    """Bad input from the user: a file, a folder, a setting. The message says what to do."""


class ConfigError(UserError, ValueError):
    """A config number, field or value that cannot be used."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the run needs is not there (or holds nothing usable)."""


def entry_point(main):
    """Decorate a script's ``main(argv=None) -> int``: a UserError becomes its message on
    stderr and the return value 1; other exceptions propagate with their traceback. The
    process-wide settings made at start-up (tools.runtime.startup_notes) are printed first."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        while runtime.startup_notes:  # once per process, however many mains it runs
            print(f"note: {runtime.startup_notes.pop(0)}")
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1

    return run
