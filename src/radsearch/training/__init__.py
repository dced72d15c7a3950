"""Training runs: config → engine (AutoMargin epoch hooks, validation, checkpoints, resume, DDP).

``train(config) -> run_dir``; ``load_config(path, overrides)``; embeddings of a finished run with
``radsearch.training.embed.embed_run``.
"""

from radsearch.training.config import Config, load_config
from radsearch.training.engine import TrainingDivergedError, train

__all__ = ["Config", "TrainingDivergedError", "load_config", "train"]
