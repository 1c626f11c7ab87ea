"""The one base class of every error the library raises on purpose.

A ``MirageError`` is a user's mistake or a refusal (a malformed file, an invalid graph, a
checkpoint that belongs to another search, a result that cannot be certified): its message is
one line that names what is wrong, and the command line prints it as ``error: <message>``
without a traceback. Any other exception escaping the library is a bug.

Each subclass also derives from the builtin its callers used to catch (``ValueError`` for bad
input, ``OSError`` for a file that cannot be written), so code written against those still works.
"""

from __future__ import annotations


class MirageError(Exception):
    """A deliberate, explained refusal; ``str(e)`` is the one-line message."""


class InputError(MirageError, ValueError):
    """An argument, a file or a setting the library cannot accept."""


class OutputError(MirageError, OSError):
    """A result could not be written, or writing it would lose data the user kept."""
