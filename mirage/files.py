"""Writing files so that nothing is lost: atomic replacement with the mode a user expects.

Every writer of the library (µGraph files, search checkpoints, cache entries, reports) goes
through ``atomic_write_text``: a reader sees the old file or the new one, never half of either,
and a crash or power loss between the two leaves the old one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mirage.errors import OutputError


def _umask() -> int:
    # os.umask can only be read by setting it; set it back at once (single-threaded callers
    # never notice, and a thread creating a file in between gets the same value back).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The mode the final file gets: the mode of the file it replaces, else 0666 less the
    umask (what ``open(path, "w")`` would give), never mkstemp's private 0600."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is; not every platform can open a
    # directory (Windows), where this step is skipped.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, fsync, rename.

    The parent directory is created if missing. The result keeps the mode of the file it
    replaces (or honours the umask for a new one). A failure raises ``OutputError`` naming the
    file, and leaves any old file untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(f"is a directory: {path}")
        mode = _mode_for(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """``atomic_write_bytes`` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))
