"""Synthetic longitudinal radiograph cohorts (knee and chest phantoms) for demos and tests.

``generate_knee`` / ``generate_chest`` return a :class:`SynthCohort` (a Cohort plus, in memory
mode, the pixels); ``radsearch synth knee|chest`` writes PNGs and a manifest.
"""

from radsearch.synth.chest import CHEST_KNOBS, generate_chest
from radsearch.synth.common import SynthCohort
from radsearch.synth.knee import KNEE_KNOBS, generate_knee

__all__ = ["CHEST_KNOBS", "KNEE_KNOBS", "SynthCohort", "generate_chest", "generate_knee"]
