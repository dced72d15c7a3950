"""Console and log output of the CLI never wrap or pad when it is not a terminal (pipes, files, CI).

Rich sizes non-terminal output to $COLUMNS (else 80 columns); a log line or a table title longer
than that used to be broken over lines and padded with spaces, so whether a message could be found
in the output depended on the length of the temporary path and the terminal width.
"""

from __future__ import annotations

import logging

import pytest

from radsearch.cli.main import main

WIDTHS = [None, "20", "60", "200"]
NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
              "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
NIH_ROW = "00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143"


def _set_columns(monkeypatch, columns: str | None) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)


@pytest.mark.parametrize("columns", WIDTHS)
def test_adapter_warnings_are_one_unpadded_line_at_any_width(tmp_path, capsys, monkeypatch,
                                                              columns):
    _set_columns(monkeypatch, columns)
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "nih"
    deep.mkdir(parents=True)
    entry = deep / "Data_Entry_2017_v2020.csv"
    entry.write_text(NIH_HEADER + "\n" + NIH_ROW + "\n")
    test_list = deep / "test_list.txt"
    test_list.write_text("00000001_000.png\n00000009_000.png\n")  # the second is unknown
    out = deep / "manifest-with-a-long-name.csv"
    assert main(["cohort", "from-nih", "--data-entry", str(entry), "--test-list", str(test_list),
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if "listed image(s)" in line]
    assert len(warning) == 1
    assert f"{test_list}: 1 listed image(s) are not in the data entry file" in warning[0]
    for line in captured.err.splitlines() + captured.out.splitlines():
        assert line == line.rstrip(), f"padded line: {line!r}"
    assert any(f"wrote {out}" in line for line in captured.out.splitlines())


@pytest.mark.parametrize("columns", WIDTHS)
def test_error_and_table_titles_stay_on_one_line(tmp_path, capsys, monkeypatch, columns):
    _set_columns(monkeypatch, columns)
    folder = tmp_path / ("another-long-folder-name-" * 4)
    folder.mkdir()
    missing = folder / "no-such-manifest.csv"
    assert main(["cohort", "info", str(missing)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(missing) in err
    manifest = folder / "manifest.csv"
    manifest.write_text("image,subject,time\na.png,S1,0\nb.png,S1,1\n")
    assert main(["cohort", "info", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert any(str(manifest) in line for line in out.splitlines())
    for text in ("subjects with ≥ 2 images", "min 2, median 2, max 2", "longest span per subject"):
        assert any(text in line for line in out.splitlines()), f"{text!r} was wrapped:\n{out}"
    for line in out.splitlines():
        assert line == line.rstrip(), f"padded line: {line!r}"


def test_log_handler_keeps_multi_line_messages_on_one_line(capsys):
    from radsearch.cli.console import log_handler

    logger = logging.getLogger("radsearch.test-console")
    handler = log_handler()
    logger.addHandler(handler)
    try:
        logger.warning("first part\nsecond part")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert err.splitlines() == ["warning: first part second part"]
