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
