"""Data pipeline: decoded images → transforms → Dataset → m-per-subject batches.

``build_transforms`` (supplement Table 1a, torchvision v2), ``CohortDataset`` (a Cohort as a torch
Dataset), ``MPerSubjectBatchSampler`` (P subjects × m images per batch), ``seed_worker`` /
``loader_generator`` (reproducible workers) and ``ImageCache`` (resized images on disk).
"""

from radsearch.data.cache import ImageCache, resize_unit_image
from radsearch.data.dataset import CohortDataset, to_unit_float
from radsearch.data.sampler import POLICIES, MPerSubjectBatchSampler, augment_only_pairs
from radsearch.data.seeding import loader_generator, seed_everything, seed_worker
from radsearch.data.transforms import (PRESETS, GaussianNoiseBlend, RandomGamma, XrayTransform,
                                       build_transforms)

__all__ = [
    "POLICIES", "PRESETS", "CohortDataset", "GaussianNoiseBlend", "ImageCache",
    "MPerSubjectBatchSampler", "RandomGamma", "XrayTransform", "augment_only_pairs",
    "build_transforms", "loader_generator", "resize_unit_image", "seed_everything", "seed_worker",
    "to_unit_float",
]
