"""What the network's input is made of: crop, resize, normalisation — decided once per run.

``data.normalize=auto`` uses the mean and standard deviation of the training split's grey levels,
so a cohort of another body part or exposure is not normalised with knee constants. The resolved
values are saved as the run's ``preprocessing.json``; embedding and evaluation read them back, so
every later use of the model sees its training-time input statistics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from radsearch.cohort import Cohort
from radsearch.io import write_json

AUTO_SAMPLE = 512   # images read for normalize=auto when they are not held in memory


@dataclass(frozen=True)
class Preprocessing:
    preset: str
    image_size: int
    resize: int
    mean: float
    std: float

    def transform(self, train: bool):
        """The per-image torchvision pipeline (file-based loading, ``embed_run``)."""
        from radsearch.data import build_transforms

        return build_transforms(self.preset, train=train, image_size=self.image_size,
                                resize=self.resize, mean=self.mean, std=self.std)

    def batch_augment(self, train: bool):
        """The same pipeline on uint8 batches held in memory."""
        from radsearch.data.batches import BatchAugment

        return BatchAugment(self.image_size, self.mean, self.std, train=train)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_preprocessing(config, train: Cohort, memory=None) -> Preprocessing:
    """The run's preprocessing; ``memory`` (MemoryImages of ``train``) avoids re-reading files."""
    from radsearch.data import PRESETS

    d = config.data
    mean, std = PRESETS[d.preset].mean, PRESETS[d.preset].std
    if d.normalize == "auto":
        if memory is not None:
            mean, std = memory.mean_std()
        else:
            mean, std = _file_stats(train, d.resize)
    return Preprocessing(d.preset, d.image_size, d.resize, float(mean), float(std))


def _file_stats(cohort: Cohort, resize: int) -> tuple[float, float]:
    from radsearch.data.cache import resize_unit_image
    from radsearch.images import read_image

    paths = cohort.image_paths()
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(paths), size=min(AUTO_SAMPLE, len(paths)), replace=False)
    values = np.stack([resize_unit_image(read_image(paths[i]), resize) for i in sorted(chosen)])
    return float(values.mean()), float(values.std())


def save_preprocessing(path, pre: Preprocessing) -> None:
    write_json(path, pre.to_dict())


def load_preprocessing(run_dir, config) -> Preprocessing:
    """From the run's preprocessing.json; runs written before it existed used the preset."""
    from radsearch.data import PRESETS
    from radsearch.training.rundir import RunDir

    saved = RunDir(run_dir).read_json("preprocessing")
    if saved:
        return Preprocessing(**saved)
    d = config.data
    return Preprocessing(d.preset, d.image_size, d.resize, PRESETS[d.preset].mean,
                         PRESETS[d.preset].std)
