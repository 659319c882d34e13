"""Files written so that a stop at any moment leaves the old file or the new one, never half of one."""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_MARK = ".tmp-"  # in the names of files being written; leftovers after a kill are safe to delete


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; once the block has written it, it replaces `path`.

        with replacing("table.csv") as temporary:
            frame.to_csv(temporary)

    The temporary file is in the same folder (so the final `os.replace` is atomic) and
    keeps the suffix (some writers choose the format from it). If the block fails, it
    is deleted and `path` is left as it was. An `OSError` (a missing folder, a full disk)
    names `path` and its folder, never the temporary name the user did not choose.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"cannot write {path}: the folder {path.parent} does not exist; "
                                "create it first (`os.makedirs(folder, exist_ok=True)`) or pass another path",
                                str(path))
    temporary = path.with_name(f".{path.stem}{TEMPORARY_MARK}{secrets.token_hex(4)}{path.suffix}")
    try:
        yield temporary
        with open(temporary, "rb+") as written:  # on disk before the rename, not only in a cache
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _naming(error, path) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _naming(error: OSError, path: Path) -> OSError:
    """`error` as the same kind of OSError, its message naming `path` and what to do, not the temporary file."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        advice = (f"; {path} is left as it was. Free space on the disk holding {path.parent} "
                  "(or write elsewhere) and run again")
    elif error.errno == errno.ENOENT:
        advice = f"; was the folder {path.parent} deleted or moved while writing?"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = f"; the folder {path.parent} cannot be written to here"
    else:
        advice = f"; {path} is left as it was"
    named = OSError(error.errno, f"cannot write {path}: {reason}{advice}", str(path))
    return named  # OSError(errno, ...) picks the subclass: FileNotFoundError, PermissionError...


def write_text(path: str | os.PathLike, text: str) -> None:
    """`Path(path).write_text(text)`, atomically."""
    with replacing(path) as temporary:
        temporary.write_text(text)


def shown(path: Path) -> str:
    """`path` relative to the working directory where it can be: outputs stay machine-neutral."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive, on Windows
        return str(path)


def make_folder(path: Path, described: str, fix: str) -> Path:
    """Create the folder `path` if missing; raise a ValueError that starts with `described`, ends with `fix`.

    `described` names the setting the path came from ("`run_dir` runs/a"); a path that
    is an existing file or cannot be created (a parent is a file, no permission) is refused.
    """
    if path.exists() and not path.is_dir():
        raise ValueError(f"{described} is an existing file; {fix} (it is created if missing).")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{described} cannot be created as a folder ({error}); {fix}.") from error
    return path
