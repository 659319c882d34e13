"""One writer per run folder: `RunLock`, the lock `vaekit.training.fit_resumable` holds for a whole call.

The lock is a file, `run.lock`, created with O_EXCL (so of two processes starting together
exactly one creates it) and holding the holder's pid, host name and start time as JSON. A
second process is refused with `RunFolderBusyError`, which names the folder and the holder.

A lock whose holder is gone is stale and is taken over: the holder was on this host
and its pid is no longer running (or now belongs to a process started after the lock
was written, a reused pid). A normal end, an exception or Ctrl-C (KeyboardInterrupt)
removes the lock in a `finally`; a SIGKILL or a crashed kernel leaves it, and the next
run finds it stale. A lock held on another host (a shared network folder) cannot be
checked from here: the error says to delete the file once that run is known to be over.

A process never refuses itself a folder it no longer holds. Each hold registers its token
in this process's memory while it lasts (`_live_tokens`), and a release forgets it even
where the file cannot be removed (the folder turned read-only, a quota is full, the mount
went away: a warning says so). A later call in the same process then finds a lock file
naming this process with a token no live hold of it has, and takes it over as soon as the
folder can be written again; another process still finds it held while this one runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sys
import threading
import time
import warnings
from pathlib import Path

LOCK_NAME = "run.lock"
# A lock file is written within microseconds of its creation; one still empty or
# unreadable after this long belongs to a process killed in between.
_UNWRITTEN_LOCK_AGE_S = 10.0
_READ_RETRIES = 20  # x 50 ms: the time a reader gives a just-created lock to get its contents

# The tokens of the holds this process has now (taken, not yet released). A lock file naming this
# process with any other token is left from a hold that ended without removing it: not a holder.
_live_tokens: set[str] = set()
_live_tokens_guard = threading.Lock()


class RunFolderBusyError(RuntimeError):
    """Another process is writing this run folder; a second writer would corrupt it."""



class RunLock:
    """Exclusive, process-wide hold on a run folder, released on exit (also on Ctrl-C).

        with RunLock(run_dir):
            ...  # read and write the folder's files

    Raises `RunFolderBusyError` on entry if another live process holds the folder.
    While held, `check()` confirms the lock file is still this holder's (a user may
    delete it by hand, and then another process may take the folder).
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.token = secrets.token_hex(8)  # tells this hold apart from any other, even of the same pid
        self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                  "started_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                  "command": " ".join(sys.argv)[:300], "token": self.token}
        with _live_tokens_guard:  # live from before its file exists, so no other call here takes it for stale
            _live_tokens.add(self.token)
        try:
            self._acquire(record)
        except BaseException:
            with _live_tokens_guard:
                _live_tokens.discard(self.token)
            raise

    def _acquire(self, record: dict) -> None:
        for _ in range(100):  # each round either takes the lock, refuses, or removes a stale one
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is not None and not _is_stale(holder, self.path):
                    raise RunFolderBusyError(_busy_message(self.run_dir, self.path, holder)) from None
                self._remove_stale(holder)
                continue
            except OSError as error:
                raise OSError(error.errno, f"cannot create the lock file {self.path} of run folder "
                              f"{self.run_dir}: {error.strerror}", str(self.path)) from error
            try:
                os.write(descriptor, (json.dumps(record) + "\n").encode())
                os.fsync(descriptor)
            except BaseException:
                os.close(descriptor)
                self.path.unlink(missing_ok=True)
                raise
            os.close(descriptor)
            self.held = True
            return
        raise RunFolderBusyError(f"could not take the lock {self.path} of run folder {self.run_dir}: other "
                                 "processes keep creating it. Is a script starting runs on this folder in a loop?")

    def release(self) -> None:
        """Remove the lock file if it is still this holder's; safe to call twice.

        The hold ends in this process's memory first, whatever happens to the file (a file that
        cannot be removed gets a warning; see the module's notes for what happens next).
        """
        if not self.held:
            return
        self.held = False
        with _live_tokens_guard:
            _live_tokens.discard(self.token)
        holder = _read_record(self.path)
        if holder is None or holder.get("token") != self.token:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError as error:  # never hides the error that ended the run, nor turns a finished run into a failure
            warnings.warn(f"could not remove the lock {self.path} of run folder {self.run_dir} "
                          f"({type(error).__name__}: {error}). This process no longer holds the folder: a later "
                          "call here takes it over once the folder can be written again; another process finds "
                          "it in use until this one ends, then takes it over.", RuntimeWarning, stacklevel=2)

    def check(self) -> None:
        """Raise `RunFolderBusyError` if the lock file is no longer this holder's."""
        holder = _read_record(self.path)
        if holder is not None and holder.get("token") == self.token:
            return
        who = "it was deleted" if holder is None else f"it now names {_describe(holder)}"
        raise RunFolderBusyError(
            f"the lock {self.path} of run folder {self.run_dir} is no longer this process's ({who}); "
            "nothing more is written to the folder, so another run there is not overwritten. "
            "Run again once no other process uses the folder.")

    def _read(self) -> dict | None:
        """The holder's record; None if the file is gone, or was never written (a holder killed right after creating it)."""
        for _ in range(_READ_RETRIES):
            holder = _read_record(self.path)
            if holder is not None:
                return holder
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return None
            if age > _UNWRITTEN_LOCK_AGE_S:
                return None
            time.sleep(0.05)
        return {"pid": None, "host": None, "started_utc": "moments ago (its record is not written yet)"}

    def _remove_stale(self, stale: dict | None) -> None:
        """Delete the stale lock, unless another process replaced it meanwhile.

        Two processes can find the same stale lock; the first deletes it and creates its
        own. Removal happens under a second, short-lived O_EXCL file, and only if the lock
        still holds the record found stale, so the second never deletes the first's new lock.
        """
        guard = self.path.with_name(LOCK_NAME + ".removing")
        try:
            descriptor = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - guard.stat().st_mtime > _UNWRITTEN_LOCK_AGE_S:  # its remover was killed
                    guard.unlink(missing_ok=True)
            time.sleep(0.01)
            return
        except OSError as error:  # a read-only folder: the old lock cannot be replaced yet
            raise OSError(error.errno, f"cannot replace the lock file {self.path} of run folder {self.run_dir}, "
                          f"left by {_describe(stale) if stale else 'a process that has ended'}: "
                          f"{error.strerror}. Make the folder writable again and run again.",
                          str(self.path)) from error
        try:
            current = _read_record(self.path)
            if stale is None:  # never written: still so, and still old (not a lock created a moment ago)
                with contextlib.suppress(FileNotFoundError):
                    if current is None and time.time() - self.path.stat().st_mtime > _UNWRITTEN_LOCK_AGE_S:
                        self.path.unlink()
            elif current == stale:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(descriptor)
            guard.unlink(missing_ok=True)


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _is_stale(holder: dict, path: Path) -> bool:
    """True if the holder is known to be gone: it ran on this host and its process has ended."""
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return False  # not written yet, or on another machine: cannot tell, so it counts as held
    if pid == os.getpid():  # this process: held only by a hold it still has (its release may have failed)
        with _live_tokens_guard:
            return holder.get("token") not in _live_tokens
    started = _process_start_time(pid)
    if started is not None:
        # A pid reused by a process that started after the lock was written is not the holder
        # (after a reboot, or in a container whose processes get the same small pids each time).
        return started > float(holder.get("started", 0.0)) + 1.0
    return not _pid_running(pid)


def _pid_running(pid: int) -> bool:
    if os.name == "nt":
        return _windows_pid_running(pid)
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _process_start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), from /proc; None where unknown or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    if fields[0] in ("Z", "X"):  # a zombie has ended; only its exit status waits to be collected
        return float("inf")
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _windows_pid_running(pid: int) -> bool:
    import ctypes

    process_query_limited_information, still_active, access_denied = 0x1000, 259, 5
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
    if not handle:
        return ctypes.get_last_error() == access_denied  # exists, but not ours to open
    try:
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return code.value == still_active
    finally:
        kernel32.CloseHandle(handle)


def _describe(holder: dict) -> str:
    if holder.get("pid") is None:
        return f"a process that started {holder.get('started_utc', 'moments ago')}"
    text = f"process {holder['pid']} on host {holder.get('host')!r}, started {holder.get('started_utc', '?')}"
    if holder.get("command"):
        text += f" ({holder['command']})"
    return text


def _busy_message(run_dir: Path, path: Path, holder: dict) -> str:
    message = (f"run folder {run_dir} is in use by {_describe(holder)}: one run folder takes one writer at a "
               "time. Wait for that run to finish (or stop it), or pass another `run_dir`.")
    if holder.get("host") not in (None, socket.gethostname()):
        message += (f" Its host cannot be checked from here; if that run is known to be over, delete {path}.")
    elif holder.get("pid") == os.getpid():
        message += " (That process is this one: another call still has the folder open.)"
    return message
