"""Reference rows: what a trained model must beat, on exactly its test protocol.

* chance — random embeddings (mean over ``CHANCE_DRAWS`` draws): the score of a random ranking;
* raw pixels — the network's input itself (crop, normalisation, mirroring) as the vector, cosine
  similarity: what no learning at all gives;
* untrained network — the same architecture with random weights (seed ``train.seed``), evaluated
  like the trained one: the bar that training must clear (a random CNN is already a decent
  texture descriptor).

``radsearch train`` writes them as the run's ``references.json``; ``compare`` and the demo report
read them from there, so every table carries them beside the trained rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from radsearch.cohort import Cohort

CHANCE = "chance (random ranking)"
PIXELS = "raw pixels"
UNTRAINED = "untrained network"
LABELS = (CHANCE, PIXELS, UNTRAINED)
CHANCE_DRAWS = 5


class RawPixels(torch.nn.Module):
    """The raw-pixels reference: the network input itself (cropped, normalised) as the vector."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.flatten(images.float(), 1)


def reference_results(config, test: Cohort, embed_model: Callable[[torch.nn.Module], np.ndarray],
                      pixels: Callable[[], np.ndarray]) -> dict[str, dict]:
    """label → result dict (``RetrievalResult.to_dict()`` form) on the forensic test protocol."""
    from radsearch.evaluation import evaluate_forensic
    from radsearch.models import create_model

    out: dict[str, dict] = {}
    rng = np.random.default_rng(config.train.seed)
    draws = [evaluate_forensic(rng.standard_normal((len(test), 64)).astype(np.float32), test)
             for _ in range(CHANCE_DRAWS)]
    chance = draws[0].to_dict()
    chance["groups"] = {g: {m: float(np.mean([d.groups[g][m] for d in draws])) for m in metrics}
                        for g, metrics in draws[0].groups.items()}
    out[CHANCE] = chance
    out[PIXELS] = evaluate_forensic(pixels(), test).to_dict()
    torch.manual_seed(config.train.seed)
    model = create_model(config.model.name, embedding_dim=config.model.embedding_dim,
                         weights="none", first_conv=config.model.first_conv).eval()
    out[UNTRAINED] = evaluate_forensic(embed_model(model), test).to_dict()
    return out
