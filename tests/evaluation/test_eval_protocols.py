"""Forensic and diagnostic protocols on hand-made cohorts, checked against brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, ndcg_score

from radsearch.cohort import Cohort
from radsearch.errors import ConfigError, DataError
from radsearch.evaluation import evaluate_diagnostic, evaluate_forensic, years_apart


def _cohort(rows: list[tuple]) -> Cohort:
    columns = ["subject", "time", "view"]
    table = pd.DataFrame(rows, columns=columns)
    table.insert(0, "image", [f"img{i}.png" for i in range(len(table))])
    return Cohort(table)


# subject, time (years), view
HAND_ROWS = [
    ("A", 50.0, "PA"), ("A", 50.4, "PA"), ("A", 51.0, "PA"), ("A", 53.5, "AP"),
    ("B", 60.2, "PA"), ("B", 61.1, "PA"), ("B", 62.3, "PA"),
    ("C", 70.0, "PA"), ("C", 71.0, "AP"),
    ("D", 40.0, "PA"),
    ("E", 30.0, "AP"), ("E", 31.0, "PA"), ("E", 31.5, "PA"),
    ("F", 20.0, "PA"), ("F", 20.0 + 11.9999999, "PA"),  # days/365.25 rounding: still 12 years
]


def _one_hot(cohort: Cohort) -> np.ndarray:
    codes = cohort.subject_codes()
    return np.eye(codes.max() + 1)[codes] + 0.01  # every subject found first


def test_years_apart_floor_from_the_first_image():
    years = years_apart(_cohort(HAND_ROWS))
    assert list(years) == [0, 0, 1, 3, 0, 0, 2, 0, 1, 0, 0, 1, 1, 0, 12]


def test_gallery_and_query_counts_per_year():
    cohort = _cohort(HAND_ROWS)
    result = evaluate_forensic(_one_hot(cohort), cohort, year_bands=["1-2"], at_least=2)
    assert result.n_gallery == 8  # A×2, B×2, C, D, E, F at 0 years apart
    counts = {g: v["n_queries"] for g, v in result.groups.items()}
    assert counts == {"1": 4, "2": 1, "3": 1, "12": 1, "1-2": 5, ">=2": 3, "all": 7}
    assert result.n_skipped_queries == 0
    assert result.groups["all"]["mAP"] == pytest.approx(1.0)
    assert result.groups["all"]["CMC@1"] == pytest.approx(1.0)
    assert list(result.groups)[-1] == "all"
    assert set(result.to_dict()) >= {"protocol", "n_gallery", "n_skipped_queries", "groups"}


def test_view_restriction_keeps_years_of_the_whole_record():
    cohort = _cohort(HAND_ROWS)
    result = evaluate_forensic(_one_hot(cohort), cohort, view="PA")
    # E's first image is AP: its PA images stay 1 year apart and have no PA gallery image
    assert result.n_gallery == 7
    assert result.groups["1"]["n_queries"] == 1 and result.groups["1"]["n_skipped"] == 2
    assert result.n_skipped_queries == 2
    assert "3" not in result.groups  # A's year-3 image is AP
    with pytest.raises(DataError, match="LAT"):
        evaluate_forensic(_one_hot(cohort), cohort, view="LAT")


def _reference_forensic(emb: np.ndarray, cohort: Cohort, leave_one_out: bool):
    """Per-query AP by brute force: explicit gallery per query, scikit-learn AP."""
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    s = x @ x.T
    subj, years = cohort.subjects, years_apart(cohort)
    views = cohort.table["view"].to_numpy()
    out = {}
    for i in range(len(cohort)):
        if leave_one_out:
            keep = ~((subj == subj[i]) & (years == years[i]) & (views == views[i]))
        else:
            if years[i] == 0:
                continue
            keep = years == 0
        relevant = subj[keep] == subj[i]
        out[i] = average_precision_score(relevant, s[i, keep]) if relevant.any() else np.nan
    return out


@pytest.mark.parametrize("leave_one_out", [False, True])
def test_forensic_matches_brute_force(leave_one_out):
    rng = np.random.default_rng(0)
    rows = [(f"S{s}", 40 + s % 7 + year + 0.1 * rng.random(), view)
            for s in range(30) for year in range(rng.integers(1, 4))
            for view in ("PA", "AP")[: rng.integers(1, 3)]]
    cohort = _cohort(rows)
    emb = rng.normal(size=(len(cohort), 6))
    result = evaluate_forensic(emb, cohort, leave_one_out=leave_one_out)
    reference = _reference_forensic(emb, cohort, leave_one_out)
    rows_ = result.query_rows
    np.testing.assert_allclose(result.per_query.values["mAP"],
                               [reference[r] for r in rows_], rtol=1e-6, equal_nan=True)
    assert result.n_skipped_queries == sum(np.isnan(v) for v in reference.values())
    assert result.n_gallery == (len(cohort) if leave_one_out
                                else int((years_apart(cohort) == 0).sum()))
    # "all" pools queries (weighted by year sizes), it is not the mean of the years
    years = [g for g in result.groups if g.isdigit()]
    pooled = sum(result.groups[g]["mAP"] * result.groups[g]["n_queries"] for g in years) / sum(
        result.groups[g]["n_queries"] for g in years)
    assert result.groups["all"]["mAP"] == pytest.approx(pooled)
    assert ("0" in result.groups) == leave_one_out


def test_leave_one_out_ignores_same_year_same_view_images():
    # two knees at baseline (same subject, year, view) and one at year 1
    cohort = _cohort([("A", 0.0, "PA"), ("A", 0.0, "PA"), ("A", 1.0, "PA"), ("B", 0.0, "PA"),
                      ("B", 1.0, "AP")])
    rng = np.random.default_rng(1)
    result = evaluate_forensic(rng.normal(size=(5, 4)), cohort, leave_one_out=True)
    assert list(result.per_query.n_relevant) == [1, 1, 2, 1, 1]
    assert result.n_skipped_queries == 0


def test_fold_ensemble_averages_cosine_similarities():
    rng = np.random.default_rng(2)
    rows = [(f"S{s}", 50 + y, "PA") for s in range(25) for y in range(3)]
    cohort = _cohort(rows)
    models = [rng.normal(size=(len(cohort), 5)) for _ in range(3)]
    result = evaluate_forensic(models, cohort)
    mean_sim = np.mean([(m / np.linalg.norm(m, axis=1, keepdims=True)) @
                        (m / np.linalg.norm(m, axis=1, keepdims=True)).T for m in models], axis=0)
    years, subj = years_apart(cohort), cohort.subjects
    gallery = years == 0
    expected = [average_precision_score(subj[gallery] == subj[i], mean_sim[i, gallery])
                for i in result.query_rows]
    np.testing.assert_allclose(result.per_query.values["mAP"], expected, rtol=1e-6)
    assert "3 models" in result.settings["similarity"]


def test_forensic_refuses_bad_embeddings():
    cohort = _cohort(HAND_ROWS)
    emb = _one_hot(cohort)
    with pytest.raises(DataError, match="14 rows but the cohort has 15"):
        evaluate_forensic(emb[:-1], cohort)
    emb[3, 1] = np.nan
    with pytest.raises(DataError, match="row 3"):
        evaluate_forensic(emb, cohort)
    no_view = Cohort(cohort.table.drop(columns=["view"]))
    with pytest.raises(ConfigError, match="view"):
        evaluate_forensic(_one_hot(cohort), no_view, view="PA")
    with pytest.raises(ConfigError, match="band"):
        evaluate_forensic(_one_hot(cohort), cohort, year_bands=["4to5"])


# ------------------------------------------------------------------------------ diagnostic
def _label_cohort(rng: np.random.Generator, n: int = 120) -> Cohort:
    classes = ["Edema", "Effusion", "Fracture", "No Finding"]
    labels = []
    for _ in range(n):
        k = rng.integers(1, 3)
        labels.append("|".join(sorted(rng.choice(classes, size=k, replace=False))))
    table = pd.DataFrame({"image": [f"i{i}.png" for i in range(n)],
                          "subject": [f"p{i // 2}" for i in range(n)],
                          "time": np.zeros(n), "labels": labels,
                          "split": np.where(np.arange(n) % 3 == 0, "test", "train")})
    return Cohort(table)


def test_diagnostic_matches_brute_force():
    rng = np.random.default_rng(3)
    cohort = _label_cohort(rng)
    emb = rng.normal(size=(len(cohort), 8))
    logits = rng.normal(size=(len(cohort), 4))
    result = evaluate_diagnostic(emb, cohort, logits=logits, ndcg_ks=(5,))
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    matrix, classes = cohort.label_matrix()
    q = np.flatnonzero(cohort.table["split"] == "test")
    db = np.flatnonzero(cohort.table["split"] == "train")
    s = x[q] @ x[db].T
    shared = (matrix[q].astype(int) @ matrix[db].T.astype(int))
    ap_any = [average_precision_score(shared[i] > 0, s[i]) for i in range(len(q))]
    assert result.groups["all"]["mAP"] == pytest.approx(np.mean(ap_any))
    union = matrix[q].sum(1)[:, None] + matrix[db].sum(1)[None, :] - shared
    jaccard = shared / union
    assert result.groups["all"]["nDCG@5"] == pytest.approx(
        np.mean([ndcg_score(jaccard[i:i + 1], s[i:i + 1], k=5) for i in range(len(q))]))
    for c, name in enumerate(classes):  # class-conditional rows over queries carrying c
        rows = np.flatnonzero(matrix[q, c])
        expected = np.mean([average_precision_score(matrix[db, c], s[i]) for i in rows])
        assert result.groups[name]["mAP"] == pytest.approx(expected)
        assert result.groups[name]["n_queries"] == len(rows)
    top1 = logits[q].argmax(1)
    assert result.groups["all"]["Acc@1"] == pytest.approx(matrix[q, top1].mean())
    assert result.n_gallery == len(db)


def test_diagnostic_exact_set_relevance_and_same_split_self_exclusion():
    rng = np.random.default_rng(4)
    cohort = _label_cohort(rng, 60)
    emb = rng.normal(size=(60, 5))
    result = evaluate_diagnostic(emb, cohort, database="train", queries="train",
                                 relevance="exact")
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    rows = np.flatnonzero(cohort.table["split"] == "train")
    sets = cohort.table["labels"].to_numpy()[rows]
    aps = []
    for i, r in enumerate(rows):
        keep = np.arange(len(rows)) != i
        relevant = sets[keep] == sets[i]
        if relevant.any():
            aps.append(average_precision_score(relevant, (x[rows] @ x[r])[keep]))
    assert result.groups["all"]["mAP"] == pytest.approx(np.mean(aps))
    assert result.groups["all"]["n_queries"] == len(aps)
    assert result.n_skipped_queries == len(rows) - len(aps)


def test_diagnostic_refuses_missing_columns_and_bad_options():
    rng = np.random.default_rng(5)
    cohort = _label_cohort(rng, 30)
    emb = rng.normal(size=(30, 4))
    with pytest.raises(ConfigError, match="relevance"):
        evaluate_diagnostic(emb, cohort, relevance="class")
    with pytest.raises(ConfigError, match="split"):
        evaluate_diagnostic(emb, Cohort(cohort.table.drop(columns=["split"])))
    with pytest.raises(DataError, match="'val'"):
        evaluate_diagnostic(emb, cohort, queries="val")


def test_no_relevance_mode_is_offered_that_does_not_do_what_it_says():
    # issue 8: relevance="jaccard" gave exactly the numbers of "any" (binary overlap > 0); graded
    # Jaccard relevance lives in nDCG@k only, so the option is refused with that pointer
    rng = np.random.default_rng(6)
    cohort = _label_cohort(rng, 30)
    emb = rng.normal(size=(30, 4))
    with pytest.raises(ConfigError, match=r"'jaccard'.*nDCG"):
        evaluate_diagnostic(emb, cohort, relevance="jaccard")
    any_ = evaluate_diagnostic(emb, cohort, relevance="any").groups["all"]
    exact = evaluate_diagnostic(emb, cohort, relevance="exact").groups["all"]
    assert any_["mAP"] != exact["mAP"]


def test_forensic_split_option_equals_evaluating_the_subset():
    # issue 8: split filtering lived only in the CLI
    rng = np.random.default_rng(11)
    rows = [{"image": f"{s}_{y}.png", "subject": f"S{s}", "time": float(y),
             "split": "test" if s % 2 else "train"} for s in range(12) for y in range(3)]
    cohort = Cohort(pd.DataFrame(rows))
    emb = rng.normal(size=(len(rows), 6))
    mask = (cohort.table["split"] == "test").to_numpy()
    expected = evaluate_forensic(emb[mask], cohort.subset(mask))
    got = evaluate_forensic(emb, cohort, split="test")
    assert got.groups == expected.groups
    assert got.settings["split"] == "test"
    assert list(got.query_rows) == list(np.flatnonzero(mask)[expected.query_rows])
    with pytest.raises(DataError, match="split 'val' has no rows"):
        evaluate_forensic(emb, cohort, split="val")
