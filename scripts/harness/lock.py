"""One writer at a time per results directory: ``with RunLock.for_dir(results / gpu, argv): ...``.

The lock is a file beside the directory, ``<parent>/.lock-<name>``, created with
``O_CREAT | O_EXCL`` (so exactly one of two racing runs gets it) and holding the holder's pid,
host, start time, command and a random token. A second run is refused with ``LockHeld``, whose
message names the holder. A lock whose pid is dead on this host (a run killed by SIGKILL or a
crash) is stale: the next run takes it over and says so. A lock of another host is never taken
over (its pid means nothing here); the message says which file to remove.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path


class LockHeld(Exception):
    """Another run holds the lock; the message names it and what to do."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except (OverflowError, ValueError):
        return False
    return True


def lock_path(directory: Path) -> Path:
    directory = Path(directory)
    return directory.parent / f".lock-{directory.name}"


class RunLock:
    """The lock of one results directory; a context manager (released on exit, even on ^C)."""

    def __init__(self, path: Path, command: list[str] | None = None,
                 notice=lambda line: print(line, file=sys.stderr, flush=True)):
        self.path = Path(path)
        self.command = [str(c) for c in (command if command is not None else sys.argv)]
        self.notice = notice
        self.token = secrets.token_hex(8)
        self.held = False

    @classmethod
    def for_dir(cls, directory: Path, command: list[str] | None = None, **kw) -> RunLock:
        return cls(lock_path(directory), command, **kw)

    def holder(self) -> dict | None:
        """What the lock file says (None: no lock; {} : unreadable)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "command": self.command, "token": self.token}, sort_keys=True)
        for _ in range(3):  # the second and third try follow a stale lock's removal
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_or_refuse()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(body + "\n")
            self.held = True
            return self
        raise LockHeld(f"{self.path}: could not be taken (other runs keep racing for it)")

    def _take_over_or_refuse(self) -> None:
        info = self.holder()
        if info is None:
            return  # released meanwhile: try again
        pid, host = info.get("pid"), info.get("host")
        who = (f"pid {pid} on {host} since {info.get('started')}: "
               f"{' '.join(map(str, info.get('command') or [])) or '?'}")
        if not info:
            raise LockHeld(f"{self.path} exists but is unreadable; if no run is active, "
                           "remove it and try again")
        if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
            # Move it aside first: of two runs finding the same stale lock, one wins the rename.
            aside = self.path.with_name(f"{self.path.name}.stale-{self.token}")
            try:
                os.replace(self.path, aside)
            except FileNotFoundError:
                return
            try:
                moved = json.loads(aside.read_text())
            except (OSError, json.JSONDecodeError):
                moved = {}
            if not isinstance(moved, dict) or moved.get("token") != info.get("token"):
                os.replace(aside, self.path)  # not the stale one we judged: put it back
                return
            aside.unlink(missing_ok=True)
            self.notice(f"note: took over the stale lock {self.path} of {who} "
                        "(that process is gone)")
            return
        raise LockHeld(f"results in use: {self.path} is held by {who}; wait for that run to "
                       f"finish (or, if it is gone, remove {self.path})")

    def release(self) -> None:
        """Remove the lock file if it is still ours."""
        if not self.held:
            return
        self.held = False
        info = self.holder()
        if info and info.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
