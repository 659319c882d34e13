"""What keeps a run folder sound: one writer at a time, damaged files named, the model that made it.

**The lock.** `fit_resumable` holds `RunLock(run_dir)` for the whole call. The lock is a file,
`run.lock`, created with O_EXCL (so of two processes starting together exactly one
creates it) and holding the holder's pid, host name and start time as JSON. A second
process is refused with `RunFolderBusyError`, which names the folder and the holder.

A lock whose holder is gone is stale and is taken over: the holder was on this host
and its pid is no longer running (or now belongs to a process started after the lock
was written, a reused pid). A normal end, an exception or Ctrl-C (KeyboardInterrupt)
removes the lock in a `finally`; a SIGKILL or a crashed kernel leaves it, and the next
run finds it stale. A lock held on another host (a shared network folder) cannot be
checked from here: the error says to delete the file once that run is known to be over.

**Damaged files.** A run file that cannot be read back (cut short, emptied, a byte
changed) raises `DamagedRunFileError`, which names the file and the ways out, instead
of the reader's own `BadZipFile` or `JSONDecodeError`.

**The model.** A checkpoint records `model_record(model)`, the model's own config with
Keras' automatic layer names replaced by their order, so that the same architecture
built twice (`dense_3` one time, `dense_17` the next) gives the same record and a
different one (another beta, another size) does not; `model_differences` lists where.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import sys
import time
from pathlib import Path

LOCK_NAME = "run.lock"
# A lock file is written within microseconds of its creation; one still empty or
# unreadable after this long belongs to a process killed in between.
_UNWRITTEN_LOCK_AGE_S = 10.0
_READ_RETRIES = 20  # x 50 ms: the time a reader gives a just-created lock to get its contents


class RunFolderBusyError(RuntimeError):
    """Another process is writing this run folder; a second writer would corrupt it."""


class DamagedRunFileError(ValueError):
    """A run folder's file cannot be read back: cut short, emptied or altered."""


def damaged(path: Path, error: BaseException, way_out: str) -> DamagedRunFileError:
    """The error for a run file that failed to read with `error`; `way_out` says what the user can do."""
    return DamagedRunFileError(f"{path} is damaged and cannot be read ({type(error).__name__}: {error}); "
                               f"it was cut short, emptied or altered after it was written. {way_out}")


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# Keys of a layer's config that do not change what the model computes or which weights fit it: seeds, and
# where Keras keeps a class (moved between Keras versions; the class name itself is compared).
_IGNORED_KEYS = frozenset({"seed", "module", "registered_name"})


def model_record(model) -> dict | None:
    """The model's config with automatic layer names replaced by "<layer k>", as JSON data; None if it has none."""
    try:
        config = json.loads(json.dumps(model.get_config(), default=repr))
    except Exception:  # a subclassed model without get_config: nothing to compare
        return None
    if isinstance(config, dict):
        config.pop("name", None)  # the model's own name: Keras numbers unnamed ones ("functional_3"); not its shape
    names: dict[str, str] = {}

    def collect(value):
        if isinstance(value, dict):
            inner = value.get("config")
            if "class_name" in value and isinstance(inner, dict) and isinstance(inner.get("name"), str):
                names.setdefault(inner["name"], f"<layer {len(names)}>")
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    def rename(value):
        if isinstance(value, dict):
            return {key: rename(item) for key, item in value.items() if key not in _IGNORED_KEYS}
        if isinstance(value, list):
            return [rename(item) for item in value]
        if not isinstance(value, str):
            return value
        return _ADDRESS.sub("", names.get(value, value))  # repr()s of objects differ by address only

    collect(config)
    for fixed in ("encoder", "decoder"):  # names vaekit gives itself: kept, they are part of the contract
        names.pop(fixed, None)
    return rename(config)


def model_differences(saved, given, where: str = "", limit: int = 6) -> list[str]:
    """Where two `model_record`s differ, as "path: saved X, given Y" lines (keys only one has are skipped:
    a newer Keras may add options with their defaults)."""
    if isinstance(saved, (dict, list)) != isinstance(given, (dict, list)) or (
            isinstance(saved, dict) != isinstance(given, dict)):
        return []  # one value written in two formats (a Keras upgrade changed how it saves it): not comparable
    if isinstance(saved, dict) and isinstance(given, dict):
        found = []
        for key in [key for key in saved if key in given]:  # in the saved order, so messages read the same each time
            found += model_differences(saved[key], given[key], f"{where}.{key}" if where else str(key), limit)
        return found[:limit]
    if isinstance(saved, list) and isinstance(given, list):
        if len(saved) != len(given):
            return [f"{where or 'model'}: {len(saved)} entries saved, {len(given)} given"]
        found = []
        for index, (a, b) in enumerate(zip(saved, given)):
            found += model_differences(a, b, f"{where}[{index}]", limit)
        return found[:limit]
    if saved != given and not (_is_number(saved) and _is_number(given) and float(saved) == float(given)):
        return [f"{where or 'model'}: saved {saved!r}, given {given!r}"]
    return []


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
        """Remove the lock file if it is still this holder's; safe to call twice."""
        if not self.held:
            return
        self.held = False
        holder = _read_record(self.path)
        if holder is not None and holder.get("token") == self.token:
            self.path.unlink(missing_ok=True)

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
    started = _process_start_time(pid)
    if started is not None:
        # A pid reused by a process that started after the lock was written is not the holder
        # (after a reboot, or in a container whose processes get the same small pids each time).
        return started > float(holder.get("started", 0.0)) + 1.0
    return pid != os.getpid() and not _pid_running(pid)


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
