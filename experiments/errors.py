"""User errors: one clear line on stderr and exit code 2, never a traceback."""


class UserError(Exception):
    """Something the user can fix: a bad name, option, file or run directory."""
