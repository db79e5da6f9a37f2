"""Errors a user can cause (bad input, missing weights) carry a message the user can act on."""


class UserError(Exception):
    """A problem the user can fix; its message says what is wrong and what to do."""


class Cancelled(Exception):  # noqa: N818 (a state, not a failure)
    """The user asked to stop; nothing was written."""
