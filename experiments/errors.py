"""User errors: one clear line on stderr and exit code 2, never a traceback."""

import errno


class UserError(Exception):
    """Something the user can fix: a bad name, option, file or run directory."""


# OS errors that are the user's to fix: a full disk, a path that can't be written or doesn't exist
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT,
                         errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST, errno.ELOOP, errno.EFBIG})
