"""Seed aggregation against scipy, and the paper-shaped tables in Markdown / CSV / JSON."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import sem

from radsearch.errors import ConfigError, DataError
from radsearch.evaluation import (RetrievalResult, aggregate_seeds, diagnostic_table,
                                  forensic_table, per_class_table, write_tables)


def _forensic(values: dict[str, float], settings=None) -> RetrievalResult:
    groups = {g: {"n_queries": 10, "mAP": v, "mAP@R": v / 2, "CMC@1": v / 3}
              for g, v in values.items()}
    return RetrievalResult("forensic", groups, 100, 0,
                           settings or {"protocol": "forensic", "relevance": "same subject"})


def test_aggregate_seeds_mean_and_standard_error():
    seeds = [0.91, 0.95, 0.97, 0.90, 0.93]
    results = [_forensic({"1": v, "12": v - 0.1, "all": v - 0.05}) for v in seeds]
    agg = aggregate_seeds(results)
    cell = agg.groups["all"]["mAP"]
    assert cell.n == 5
    assert cell.mean == pytest.approx(np.mean(seeds) - 0.05)
    assert cell.se == pytest.approx(sem(seeds))
    assert list(agg.groups) == ["1", "12", "all"]  # years in numeric order, "all" last
    single = aggregate_seeds(results[:1]).groups["1"]["mAP"]
    assert single.n == 1 and np.isnan(single.se)
    # dictionaries from `radsearch evaluate --json` aggregate the same way
    assert aggregate_seeds([r.to_dict() for r in results]).groups["all"]["mAP"] == cell
    with pytest.raises(DataError):
        aggregate_seeds([])


def test_forensic_table_shape_like_supplement_table_4():
    methods = {"AdaTriplet-AM": [_forensic({"1": 0.97, "2": 0.95, "all": 0.96}),
                                 _forensic({"1": 0.99, "2": 0.93, "all": 0.98})],
               "Triplet": [_forensic({"1": 0.9, "all": 0.9})]}
    table = forensic_table(methods)
    assert table.header == ["Metric", "Method", "1", "2", "All"]
    assert table.rows[0] == ["mAP", "AdaTriplet-AM", "98.0 ± 1.0", "94.0 ± 1.0", "97.0 ± 1.0"]
    assert table.rows[1] == ["mAP", "Triplet", "90.0", "—", "90.0"]
    assert [r[0] for r in table.rows] == ["mAP"] * 2 + ["mAP@R"] * 2 + ["CMC@1"] * 2
    md = table.markdown()
    assert "protocol: forensic" in md.splitlines()[0]
    assert "| mAP | AdaTriplet-AM | 98.0 ± 1.0 | 94.0 ± 1.0 | 97.0 ± 1.0 |" in md
    frame = pd.read_csv(io.StringIO(table.csv()))
    assert list(frame.columns[:5]) == ["Metric", "Method", "1", "2", "All"]
    assert set(frame["protocol"]) == {"forensic"}


def test_tables_written_as_markdown_csv_json(tmp_path):
    diag = RetrievalResult("diagnostic",
                           {"Edema": {"n_queries": 3, "mAP": 0.5},
                            "all": {"n_queries": 9, "mAP": 0.6, "mAP@1": 0.7, "Acc@1": 0.4}},
                           50, 1, {"protocol": "diagnostic", "relevance": "any",
                                   "normalisation": "dscmr"})
    s2 = diagnostic_table({"Image-MMDL": [diag]}, metrics=("mAP@1", "mAP", "Acc@1"))
    assert [r[0] for r in s2.rows] == ["mAP@1", "mAP@all", "Acc@1"]
    assert s2.rows[1][1] == "0.600"
    s3 = per_class_table({"Image-MMDL": [diag, diag]})
    assert [r[0] for r in s3.rows] == ["Edema", "All samples"]
    assert "normalisation: dscmr" in s3.markdown()
    paths = write_tables(s3, tmp_path / "s3")
    assert sorted(p.name for p in paths) == ["s3.csv", "s3.json", "s3.md"]
    data = json.loads((tmp_path / "s3.json").read_text())
    assert data["settings"]["relevance"] == "any"
    assert {c["group"] for c in data["cells"]} == {"Edema", "all"}
    with pytest.raises(ConfigError):
        s3.write(tmp_path / "s3.xlsx")
