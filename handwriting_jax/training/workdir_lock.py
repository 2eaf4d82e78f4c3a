"""One training run per workdir: an exclusive lock on WORKDIR/run.lock for as long as a run writes there.

A second run on the same workdir (or the same command started twice by accident) is refused at once with one line
naming the process that holds it, instead of both running and one's checkpoints silently replacing the other's.
The lock is the operating system's (`fcntl.flock`): it is released when the run ends in any way, `kill -9` and a
crashed machine included, so a lock left by a dead run never blocks the next one (its file stays behind then, with a
note of who held it; a run that ends normally removes it). Only process 0 of a multi-process run takes it.
"""

import contextlib
import datetime
import fcntl
import os
import socket
import sys

from handwriting_jax.errors import UserError

LOCK_FILE = "run.lock"


class WorkdirInUseError(UserError, RuntimeError):
  """Another live run holds the workdir's lock."""


class WorkdirLock:
  """The workdir's lock as a context manager: `with WorkdirLock(workdir): train...`."""

  def __init__(self, workdir: str):
    self.path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
    self._fd: int | None = None

  def acquire(self) -> None:
    """Take the lock, or raise WorkdirInUseError naming its holder (its pid, host, start time and command)."""
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "a process that has not said who it is"
        os.close(fd)
        raise WorkdirInUseError(
          f"{os.path.dirname(self.path)} is in use by another training run ({holder}); wait for it to end, stop "
          "it, or give this run another --workdir"
        ) from None
      with contextlib.suppress(FileNotFoundError):
        if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
          break  # the file locked is still the one at the path (a finishing run removes its file)
      os.close(fd)
    note = (
      f"pid {os.getpid()} on {socket.gethostname()}, since {datetime.datetime.now().isoformat(timespec='seconds')}: "
      + " ".join(sys.argv)
    )
    os.ftruncate(fd, 0)
    os.write(fd, note.encode("utf-8"))
    self._fd = fd

  def release(self) -> None:
    """Remove the lock file and let the lock go; a no-op when it is not held."""
    if self._fd is not None:
      with contextlib.suppress(OSError):  # a read-only or vanished file: the lock still goes with the descriptor
        os.unlink(self.path)
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> "WorkdirLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
