"""The one exception base every package raises for problems a user can fix.

It lives in the foundation package because acquisition, registration and training all build
on hardware profiles; the CLI prints any :class:`ScopeError` as one red line (no traceback
unless ``--debug``) and exits non-zero.
"""


class ScopeError(Exception):
    """A problem with the user's input, files or hardware, explained in one line."""

    exit_code = 1
