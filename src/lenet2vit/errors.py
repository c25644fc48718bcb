"""The one base class of user errors.

Every error a user can cause (an unknown name, a bad path, a corrupt image, a mismatched
checkpoint, a NaN loss, a busy run folder) derives from :class:`UserError`, and its message
says what to do. The command line prints such an error as one ``error:`` line and exits with
status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """Something the user asked for cannot be done as asked; the message says what to do instead."""
