"""Kept for imports written before the checks moved to :mod:`radsearch.validation`."""

from radsearch.validation import check_at_least, check_beta, check_choice, check_epsilon

__all__ = ["check_at_least", "check_beta", "check_choice", "check_epsilon"]
