"""Writing outputs so that no run loses or splices a user's files.

Every file this repo writes (drawn images, json, results, checkpoints, exported models,
``deploy.json``) goes through :func:`atomic_write`: the bytes go to a temporary file in the
destination's own folder, are flushed to disk, and the file is renamed onto its final name.
A rename within one folder is atomic, so a reader (or a second run writing the same name at
the same time) sees the old file or the new one, never a mixture, and a kill leaves at most
a ``.tmp-*`` file that :func:`remove_stale_temporaries` clears on the next start.

Running out of disk space or permission becomes an :class:`OutputError` naming the path, a
one-line message from the entry point instead of a traceback.
"""

import contextlib
import errno
import os
import tempfile

from .errors import UserError

TMP_PREFIX = ".tmp-"
# The repository's root: a config's default paths (weights, class lists, images) are
# relative to it, wherever the process runs from.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# os.umask can only be read by setting it; do that once, at import, before any thread runs.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class OutputError(UserError):
    """An output cannot be written: the folder is read-only, missing, or the disk is full."""


def describe_os_error(err, path):
    """One line for an OSError met while writing ``path``."""
    if err.errno == errno.ENOSPC:
        return f"no space left on the device while writing {path}; free some space and rerun"
    if err.errno == errno.EDQUOT:
        return f"disk quota exceeded while writing {path}"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path}: permission denied (read-only folder?)"
    return f"cannot write {path}: {err.strerror or err}"


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding=None):
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces
    ``path``, on any error it is removed and ``path`` is left as it was.

    ``mode`` is "wb" or "w" (text, ``encoding`` defaults to UTF-8)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes whole files; mode {mode!r} is not 'w' or 'wb'")
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=folder)
    except OSError as err:
        raise OutputError(describe_os_error(err, path)) from None
    try:
        if mode == "w":
            f = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="")
        else:
            f = os.fdopen(fd, "wb")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except OSError as err:
        _remove_quietly(tmp)
        raise OutputError(describe_os_error(err, path)) from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically; returns ``path``."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return path


def write_text(path, text):
    """Write ``text`` to ``path`` atomically as UTF-8; returns ``path``."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return path


def repo_path(path):
    """``path`` as given when it exists (or is absolute, or None); else the same relative
    path under the repository when that exists there; else ``path`` unchanged. So the
    config's defaults work from any working directory, and a user's own relative paths keep
    meaning what they mean in the shell."""
    if not path or os.path.isabs(path) or os.path.exists(path):
        return path
    inside = os.path.join(REPO, path)
    return inside if os.path.exists(inside) else path


def check_writable(folder, what="output folder"):
    """Create ``folder`` if needed and prove a file can be created in it, before any work
    whose results would otherwise be lost at the end."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
    except OSError as err:
        reason = describe_os_error(err, folder).replace(f"cannot write {folder}: ", "")
        raise OutputError(f"the {what} {folder} is not writable: {reason}") from None
    os.close(fd)
    os.remove(probe)
    return folder


def remove_stale_temporaries(folder, log=None):
    """Delete ``.tmp-*`` files left in ``folder`` by a run that was killed mid-write;
    returns how many bytes were freed. Only call this on a folder one run owns."""
    if not os.path.isdir(folder):
        return 0
    freed = 0
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(TMP_PREFIX) and os.path.isfile(path):
            freed += os.path.getsize(path)
            _remove_quietly(path)
            if log is not None:
                log(f"removed {path}, left by an interrupted write")
    return freed


def _remove_quietly(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)

