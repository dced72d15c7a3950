"""Retrieval evaluation: exact metrics at full scale, the forensic and diagnostic protocols, tables.

Typical use::

    from radsearch.evaluation import evaluate_forensic
    result = evaluate_forensic(embeddings, cohort)          # embeddings[i] ↔ cohort row i
    result.groups["all"]["mAP"], result.to_dict()
"""

from radsearch.evaluation.metrics import (NORMALISATIONS, PerQueryMetrics, classification_accuracy,
                                          encode_identities, identity_retrieval, query_metrics,
                                          relevance_retrieval)
from radsearch.evaluation.protocols import (DiagnosticResult, ForensicResult, RetrievalResult,
                                            evaluate_diagnostic, evaluate_forensic, years_apart)
from radsearch.evaluation.ranking import RelevantRanks
from radsearch.evaluation.report import (MeanSE, SeedAggregate, Table, aggregate_seeds,
                                         diagnostic_table, forensic_table, per_class_table,
                                         result_table, write_tables)

__all__ = [
    "NORMALISATIONS", "DiagnosticResult", "ForensicResult", "MeanSE", "PerQueryMetrics",
    "RelevantRanks", "RetrievalResult", "SeedAggregate", "Table", "aggregate_seeds",
    "classification_accuracy", "diagnostic_table", "encode_identities", "evaluate_diagnostic",
    "evaluate_forensic", "forensic_table", "identity_retrieval", "per_class_table",
    "query_metrics", "relevance_retrieval", "result_table", "write_tables", "years_apart",
]
