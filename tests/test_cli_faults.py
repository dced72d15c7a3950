"""Every command that writes gives one clear line and exit code 2 on a full or read-only folder.

A full disk is simulated by making the write raise OSError(ENOSPC). A read-only folder is made
with chmod; tests usually run as root in CI, and root writes through a 0555 folder, so as root the
folder's temporary-file creation is also made to fail with EROFS, as a read-only mount does.
"""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pandas as pd
import pytest

import radsearch.io as rio
from radsearch.cli.main import main


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _make_read_only(folder, monkeypatch) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    if os.geteuid() == 0 or os.access(folder, os.W_OK):  # root ignores the mode bits
        real = rio.tempfile.mkstemp

        def read_only_mount(*args, dir=None, **kwargs):
            if dir is not None and str(dir).startswith(str(folder)):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
            return real(*args, dir=dir, **kwargs)
        monkeypatch.setattr(rio.tempfile, "mkstemp", read_only_mount)


def _one_clear_line(capsys, *needles: str) -> None:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("error:")
    for needle in needles:
        assert needle in lines[0], lines[0]


def _table(tmp_path):
    table = tmp_path / "export.csv"
    table.write_text("file,patient,age\na.png,P1,60\nb.png,P1,62\n")
    return table


def test_from_table_on_a_full_disk(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pd.DataFrame, "to_csv", _no_space)
    out = tmp_path / "out" / "m.csv"
    assert main(["cohort", "from-table", str(_table(tmp_path)), "--image", "file", "--subject",
                 "patient", "--time", "age", "--out", str(out)]) == 2
    _one_clear_line(capsys, str(out), "No space left on device")
    assert list(out.parent.iterdir()) == []


def test_from_table_into_a_read_only_folder(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "ro"
    _make_read_only(folder, monkeypatch)
    try:
        assert main(["cohort", "from-table", str(_table(tmp_path)), "--image", "file",
                     "--subject", "patient", "--time", "age", "--out", str(folder / "m.csv")]) == 2
        _one_clear_line(capsys, str(folder / "m.csv"))
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_synth_on_a_full_disk(tmp_path, capsys, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image.Image, "save", _no_space)
    out = tmp_path / "knees"
    assert main(["synth", "knee", "-n", "2", "-o", str(out), "--image-size", "32",
                 "--workers", "1"]) == 2
    _one_clear_line(capsys, str(out), "No space left on device")


def test_synth_into_a_read_only_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "knees"
    _make_read_only(out, monkeypatch)
    try:
        assert main(["synth", "knee", "-n", "2", "-o", str(out), "--image-size", "32",
                     "--workers", "1"]) == 2
        _one_clear_line(capsys, str(out))
    finally:
        out.chmod(0o755)


@pytest.fixture()
def embedded(tmp_path):
    rows = [{"image": f"{s}_{y}.png", "subject": f"S{s}", "time": float(y)}
            for s in range(6) for y in range(2)]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    emb = tmp_path / "emb.npy"
    np.save(emb, np.random.default_rng(0).normal(size=(len(rows), 4)).astype(np.float32))
    return manifest, emb


def test_evaluate_json_on_a_full_disk(tmp_path, capsys, monkeypatch, embedded):
    manifest, emb = embedded
    monkeypatch.setattr(rio.os, "fsync", _no_space)  # delayed allocation reports ENOSPC here
    out = tmp_path / "res" / "result.json"
    assert main(["evaluate", "-e", str(emb), "-c", str(manifest), "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: cannot write {out}: No space left on device (the disk is full); free space there "
        "or choose another output folder."]
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_evaluate_tables_into_a_read_only_folder(tmp_path, capsys, monkeypatch, embedded):
    manifest, emb = embedded
    folder = tmp_path / "ro"
    _make_read_only(folder, monkeypatch)
    try:
        assert main(["evaluate", "-e", str(emb), "-c", str(manifest), "--table",
                     str(folder / "tab")]) == 2
        assert "error: cannot write" in capsys.readouterr().err
    finally:
        folder.chmod(0o755)


def test_an_oserror_outside_radsearch_io_is_still_one_line(monkeypatch, capsys, tmp_path):
    # a library writing on its own (tensorboard, a decoder cache) fails the same clear way
    from radsearch.cli import cohort as cohort_cli

    def boom(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "events.out"))
    monkeypatch.setattr(cohort_cli.Cohort, "load", boom)
    assert main(["cohort", "info", str(tmp_path)]) == 2
    _one_clear_line(capsys, "events.out", "No space left on device")
