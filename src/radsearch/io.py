"""Atomic file output: write to a temporary file beside the target, fsync it, then rename.

A crash or Ctrl-C therefore never leaves a half-written manifest, checkpoint, table or image, and a
power cut after the rename never leaves an empty one (the data reach the disk before the name
does). A temporary records its writer's process id: the next write to the same target removes
the temporaries of writers that died (kill -9 mid-checkpoint), so they do not pile up. A full,
read-only or otherwise unwritable folder becomes one :class:`OutputError` line naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from radsearch.errors import OutputError

# errors of the disk or the folder, not of the program: the user can act on them
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                         errno.EFBIG})
# creating the folder and publishing the file can also meet a path that is not a folder
FOLDER_ERRNOS = DISK_ERRNOS | {errno.ENOTDIR, errno.EEXIST, errno.ENOENT, errno.EISDIR}
LEGACY_TEMP_AGE_S = 3600.0  # temporaries without a pid (older versions): stale after an hour


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path``.

    Whatever writes the temporary (by path: ``torch.save``, ``to_parquet``, Pillow), its data
    are fsynced before the rename, and the folder after it.
    """
    target = Path(path)
    with output_errors(target, FOLDER_ERRNOS):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=target.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with output_errors(target):  # the caller's own write: a full disk, a quota
            yield tmp_path
        with output_errors(target, FOLDER_ERRNOS):
            _fsync_file(tmp_path)
            # mkstemp creates 0600 files; published outputs get the usual permissions instead
            os.chmod(tmp_path, _published_mode(target))
            os.replace(tmp_path, target)
            fsync_folder(target.parent)
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink()


@contextlib.contextmanager
def output_errors(target: str | os.PathLike,
                  errnos: frozenset[int] = DISK_ERRNOS) -> Iterator[None]:
    """Turn an OSError of a full / read-only / unwritable destination into one OutputError line."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in errnos:
            raise
        raise OutputError(describe_output_error(target, exc)) from exc


def describe_output_error(target: str | os.PathLike, exc: OSError) -> str:
    """``cannot write TARGET: reason (plain words); what to do.`` on one line."""
    reason = exc.strerror or str(exc)
    plain = _PLAIN_REASONS.get(exc.errno)
    if plain:
        reason = f"{reason} ({plain})"
    advice = {errno.ENOSPC: "free space there or choose another output folder",
              errno.EDQUOT: "free space there or choose another output folder",
              errno.EFBIG: "choose another output folder"}.get(
        exc.errno, "check that the folder exists and is writable, or choose another output folder")
    return f"cannot write {os.fspath(target)}: {reason}; {advice}."


_PLAIN_REASONS = {errno.EROFS: "the folder is read-only", errno.ENOSPC: "the disk is full",
                  errno.EDQUOT: "the disk quota is full", errno.EACCES: "the folder is not writable",
                  errno.EPERM: "the folder is not writable"}


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of interrupted atomic writes to ``path``; return what was removed.

    A temporary ``.NAME.PID.XXXX.tmp`` is stale when process PID no longer exists (the engine can
    call this for each checkpoint name when it resumes); one without a pid when it is older than
    an hour. Temporaries of live writers and of other targets are left alone.
    """
    target = Path(path)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:(\d+)\.)?[^.]+\.tmp$")
    removed = []
    try:
        candidates = list(target.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for candidate in candidates:
        match = pattern.match(candidate.name)
        if match is None:
            continue
        try:
            if match.group(1) is not None:
                stale = not _alive(int(match.group(1)))
            else:
                stale = now - candidate.stat().st_mtime > LEGACY_TEMP_AGE_S
            if stale:
                candidate.unlink()
                removed.append(candidate)
        except OSError:  # removed meanwhile, or not ours to remove
            continue
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists but belongs to someone else (or cannot be asked): keep its file
    return True


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); folders cannot be opened on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the data are already synced
    finally:
        os.close(fd)


def _published_mode(target: Path) -> int:
    """The replaced file's mode, or 0666 minus the umask for a new file."""
    if target.exists():
        return target.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open`` that only publishes the file once the ``with`` block finished without error."""
    if "r" in mode or "a" in mode:
        raise ValueError("atomic_open is for writing whole files ('w' or 'wb')")
    with atomic_path(path) as tmp:
        with output_errors(path), open(tmp, mode, **kwargs) as handle:
            yield handle


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write a text file (UTF-8)."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write JSON with a trailing newline."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars / arrays and paths appear in results; keep JSON plain.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
