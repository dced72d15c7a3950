"""Atomic writes: nothing half-written on failure, usual permissions on success."""

import os
import stat

import pytest

from radsearch.io import atomic_open, write_json, write_text


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.csv"
    write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_new_files_follow_the_umask_and_replacements_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "out" / "result.json"
        write_json(target, {"a": 1})
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
        target.chmod(0o600)
        write_json(target, {"a": 2})
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert target.read_text() == '{\n  "a": 2\n}\n'
    finally:
        os.umask(old)


def test_atomic_open_refuses_read_and_append(tmp_path):
    with pytest.raises(ValueError):
        with atomic_open(tmp_path / "x", "a"):
            pass


# ------------------------------------------------------------------ issue 8, item 3: faults
import errno  # noqa: E402
import time  # noqa: E402

import radsearch.io as rio  # noqa: E402
from radsearch.errors import RadsearchError  # noqa: E402
from radsearch.io import atomic_path, remove_stale_temporaries  # noqa: E402


def test_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(rio.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(rio.os, "replace",
                        lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    with atomic_path(tmp_path / "model.pt") as tmp:
        tmp.write_bytes(b"weights")  # written by path (torch.save, to_parquet): no handle to sync
    assert events[:2] == ["fsync", "replace"]
    assert (tmp_path / "model.pt").read_bytes() == b"weights"


def test_temporaries_of_an_interrupted_write_are_removed_by_the_next_one(tmp_path):
    target = tmp_path / "last.pt"
    dead = tmp_path / f".last.pt.{_dead_pid()}.x1y2z3.tmp"  # kill -9 mid-checkpoint leaves this
    dead.write_bytes(b"\0" * 1000)
    legacy = tmp_path / ".last.pt.abc123.tmp"  # the naming before the writer's pid was recorded
    legacy.write_bytes(b"\0" * 1000)
    old = time.time() - 7200
    os.utime(legacy, (old, old))
    alive = tmp_path / f".last.pt.{os.getpid()}.q9w8e7.tmp"  # another write still in progress
    alive.write_bytes(b"\0")
    other = tmp_path / ".best.pt.abc123.tmp"  # another target's temporary: not ours to judge
    other.write_bytes(b"\0")
    os.utime(other, (old, old))
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["last.pt", alive.name, other.name])
    assert remove_stale_temporaries(tmp_path / "best.pt") == [other]


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_full_or_read_only_folders_are_one_clear_error(tmp_path, monkeypatch, code):
    target = tmp_path / "out" / "table.csv"
    write_text(target, "old\n")

    def full(path, text):
        raise OSError(code, os.strerror(code), str(path))

    with pytest.raises(RadsearchError) as info:
        with atomic_path(target) as tmp:
            full(tmp, "new")
    message = str(info.value)
    assert "\n" not in message and str(target) in message and os.strerror(code) in message
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]


def test_a_folder_that_cannot_be_created_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RadsearchError, match=r"cannot write .*file/sub/t.json"):
        write_json(blocker / "sub" / "t.json", {})
