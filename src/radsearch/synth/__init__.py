"""Synthetic longitudinal radiograph cohorts (knee and chest phantoms) for demos and tests."""

from radsearch.synth.common import SynthCohort
from radsearch.synth.knee import KNEE_KNOBS, generate_knee

__all__ = ["KNEE_KNOBS", "SynthCohort", "generate_knee"]
