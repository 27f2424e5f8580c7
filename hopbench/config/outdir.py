"""The results folder (``--out``): checked before anything starts, locked while a
command writes into it, and written atomically.

- ``check_out_dir``: the folder can be created and written, and has room
  (``MIN_FREE_BYTES``); otherwise a ConfigError naming the flag and the fix.
- ``OutLock``: an exclusive ``flock`` on ``.hopbench.lock`` in the folder, so a second
  command into the same folder is refused with the first one's pid instead of the two
  overwriting each other's results. The file is removed when the lock is released.
- ``atomic_write_text`` / ``atomic_writer``: a file is replaced whole or not at all; a
  write that fails (a full disk) leaves the old file and no temporary file behind, and
  raises OutputError naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from hopbench.errors import ConfigError, OutputError

# Room a command asks for before it starts: one run writes about 0.3 MB (results,
# report, logs); a suite or a long soak writes a few MB more.
MIN_FREE_BYTES = 16 * 1024 * 1024
LOCK_NAME = ".hopbench.lock"


def why(exc: OSError) -> str:
    """An OSError in words: 'No space left on device', not '[Errno 28] ...: path'."""
    return exc.strerror or str(exc)


def check_out_dir(path: Path, flag: str = "--out") -> None:
    """The folder exists (created if need be), is a folder, can be written and has room.
    A folder created here is removed again when it cannot be used."""
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{flag} {path}: a file, not a folder; pass another {flag}") from None
    except OSError as exc:
        raise ConfigError(
            f"{flag} {path}: cannot create the folder ({why(exc)}); pass another {flag}"
        ) from None
    try:
        _check_writable(path, flag)
    except ConfigError:
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def _check_writable(path: Path, flag: str) -> None:
    fix = f"free some space, or pass another {flag}"
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".hopbench-probe-")
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        hint = fix if exc.errno == errno.ENOSPC else f"pass another {flag}"
        raise ConfigError(f"{flag} {path}: cannot write there ({why(exc)}); {hint}") from None
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        raise ConfigError(
            f"{flag} {path}: only {free / 2**20:.1f} MiB free; hopbench asks for at least "
            f"{MIN_FREE_BYTES // 2**20} MiB (results, report, logs) before it starts; {fix}"
        )


class OutLock:
    """Held while one command writes into a results folder; a second is refused."""

    def __init__(self, out_dir: Path, flag: str = "--out") -> None:
        self.path = out_dir / LOCK_NAME
        self.flag = flag
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                folder = self.path.parent
                raise ConfigError(
                    f"{self.flag} {folder}: another hopbench (pid {holder}) is writing its "
                    f"results there; wait for it to finish, or pass another {self.flag}"
                ) from None
            # The holder before us may have removed the file after we opened it: then
            # we locked a file nobody else will see; take the one on disk instead.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still locked: the next command makes its own
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def atomic_writer(path: Path, newline: str | None = None) -> Iterator[IO[str]]:
    """A text file opened for writing that replaces ``path`` only once it is whole."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {why(exc)}") from exc
    try:
        with open(fd, "w", encoding="utf-8", newline=newline) as out:
            yield out
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide results from the user's group
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {why(exc)}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_writer(path) as out:
        out.write(text)
