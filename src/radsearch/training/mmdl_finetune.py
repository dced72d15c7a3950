"""MMDL extension B: a ranking-loss stage that continues a trained MMDL run.

The stage loads the parent run's model (``stage.parent``), freezes the report branch and trains
the image branch on the parent's retrieval space (common space; backbone features for the D121
baseline; relaxed codes for ATH) with a ranking loss on multi-label relevance
(:mod:`radsearch.losses.ranking`) at the published stage hyper-parameters (Adam 5e-6, batch 64).
It is evaluated exactly like a main-stage run and writes the same ``results.json`` keys, so
``radsearch mmdl compare`` tabulates it next to its parent; ``settings.parent_run`` names the
parent and ``settings.parent_train_seconds`` its cost.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radsearch.cohort import Cohort
from radsearch.data.seeding import seed_everything
from radsearch.datasets.labels import CHEXPERT_LABELS
from radsearch.errors import ConfigError, DataError
from radsearch.evaluation import evaluate_diagnostic
from radsearch.losses.mmdl import label_bce, label_targets
from radsearch.losses.ranking import MultiLabelRankingLoss
from radsearch.training.embed import resolve_device
from radsearch.training.mmdl import (MMDLConfig, _batch_tensor, embed_all, label_states,
                                     load_mmdl_run, noisy_training_targets, read_results,
                                     retrieval_space, save_mmdl_run)
from radsearch.training.mmdl_images import training_images
from radsearch.training.rundir import RunDir


def resolve_parent(parent: str | None, out_dir: str | Path) -> Path:
    """The parent run folder: ``parent`` itself, or — inside a comparison folder
    ``OUT/<method>/seed<s>`` — the same seed's folder of the method named ``parent``."""
    if not parent:
        raise ConfigError("stage.parent is not set; give the trained run to continue "
                          "(stage.parent=RUN_FOLDER, or a method name in compare.methods).")
    direct = Path(parent)
    if (direct / "model.pt").is_file():
        return direct
    out = Path(out_dir)
    sibling = out.parent.parent / parent / out.name
    if (sibling / "model.pt").is_file():
        return sibling
    raise DataError(f"stage.parent={parent}: no model.pt in {direct} nor in {sibling}; train that "
                    "run first (in compare.methods, list it before the methods that continue it).")


def ranking_loss(config: MMDLConfig) -> MultiLabelRankingLoss:
    s = config.stage
    return MultiLabelRankingLoss(s.loss, margin=s.margin, num_bins=s.num_bins,
                                 temperature=s.temperature, epsilon=s.epsilon, beta=s.beta,
                                 lam=s.lam)


def _stage_vectors(model, x: torch.Tensor, space: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(vectors the ranking loss trains, label logits) in the parent's retrieval space."""
    common, logits = model.forward_image(x)
    if space == "features":
        return model.image_features(x), logits
    if space.startswith("hash-"):
        return model.relaxed_codes(common), logits
    return common, logits


def finetune_mmdl(config: MMDLConfig, out_dir: str | Path | None = None, *,
                  cohort: Cohort | None = None, images: np.ndarray | None = None,
                  log=print) -> dict[str, Any]:
    """Run the ranking stage of ``config.stage`` from its parent; writes a run folder like
    :func:`radsearch.training.mmdl.train_mmdl` (config.yaml, model.pt, results.json)."""
    stage = config.stage
    if stage.loss == "none":
        raise ConfigError("stage.loss=none: choose triplet, fastap, smoothap or adatriplet.")
    out = Path(out_dir or config.run.out_dir)
    parent = resolve_parent(stage.parent, out)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    seed_everything(config.train.seed)
    model, parent_cfg, cohort = load_mmdl_run(parent, cohort)
    # the run's config: the parent's (model, data, loss) + this stage and seed
    run_cfg = parent_cfg.model_copy(update={
        "stage": stage.model_copy(update={"parent": str(parent)}), "run": config.run,
        "train": parent_cfg.train.model_copy(update={"seed": config.train.seed})})
    if images is None or images.shape[1] != parent_cfg.data.image_size \
            or len(images) != len(cohort):
        images = training_images(cohort, parent_cfg.data.image_size, config.images, log=log)
    device = resolve_device(config.train.device)
    model = model.to(device)
    for name, p in model.named_parameters():  # the report branch stays as the parent left it
        p.requires_grad_(not name.startswith(("text_encoder.", "text_proj.")))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=stage.lr, betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=stage.weight_decay)
    criterion = ranking_loss(config)
    space = retrieval_space(parent_cfg)
    split = cohort.table["split"].to_numpy()
    train_rows = np.flatnonzero(split == "train")
    states = noisy_training_targets(cohort, label_states(cohort), parent_cfg.data.label_noise,
                                    parent_cfg.data.pairing_seed)
    targets_all, weights_all = label_targets(states, parent_cfg.data.uncertain)
    relevance_all = targets_all * (weights_all > 0)
    rng = np.random.default_rng(config.train.seed)
    bs = stage.batch_size
    history = []
    log(f"ranking stage ({stage.loss}) from {parent}: {stage.epochs} epochs, lr {stage.lr:g}, "
        f"batch {bs}")
    started = time.perf_counter()
    for epoch in range(stage.epochs):
        model.train()
        order = rng.permutation(train_rows)
        sums = {"loss": 0.0, "ranking": 0.0, "label_image": 0.0}
        n_batches = max(1, len(order) // bs)
        for b in range(n_batches):
            rows = order[b * bs:(b + 1) * bs]
            x = _batch_tensor(images, rows, True, rng).to(device)
            vectors, logits = _stage_vectors(model, x, space)
            rank = criterion(vectors, relevance_all[rows].to(device))
            label = label_bce(logits, targets_all[rows].to(device), weights_all[rows].to(device))
            loss = rank + stage.label_weight * label
            if not torch.isfinite(loss):
                raise DataError(f"ranking stage: the loss became {loss.item()} at epoch "
                                f"{epoch + 1}; lower stage.lr.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for k, val in (("loss", loss), ("ranking", rank), ("label_image", label)):
                sums[k] += float(val.detach())
        row = {"epoch": epoch + 1, **{k: v / n_batches for k, v in sums.items()}}
        history.append(row)
        log(f"stage epoch {epoch + 1}/{stage.epochs} {stage.loss} {row['ranking']:.4f}")
    train_seconds = time.perf_counter() - started

    vectors, logits = embed_all(model, images, space, device)
    result = evaluate_diagnostic(vectors, cohort, database="train", queries="test",
                                 classes=list(CHEXPERT_LABELS), logits=logits)
    parent_results = read_results(parent)
    per_query = {k: v.tolist() for k, v in result.per_query.values.items()} \
        if result.per_query is not None else {}
    out_json = {"settings": {**run_cfg.model_dump(), "retrieval_space": space,
                             "parent_run": str(parent),
                             "parent_train_seconds": parent_results["settings"]["train_seconds"],
                             "text_encoder": parent_results["settings"].get("text_encoder"),
                             "n_train_with_report":
                                 parent_results["settings"]["n_train_with_report"],
                             "n_train": int(len(train_rows)), "train_seconds": train_seconds,
                             "evaluation": result.settings},
                "history": history, "diagnostic": result.to_dict(), "per_query": per_query,
                "query_rows": None if result.query_rows is None else result.query_rows.tolist()}
    return save_mmdl_run(Path(out), run_cfg, model, out_json, cohort, vectors, space, device)


def finetune_from_run(run: str | Path, loss: str, out_dir: str | Path,
                      overrides: list[str] | tuple[str, ...] = (), log=print) -> dict[str, Any]:
    """``radsearch mmdl finetune RUN --loss L --out OUT``: the parent's own config + the stage."""
    from radsearch.training.mmdl import load_mmdl_config

    config_path = RunDir(run).config
    if not config_path.is_file():
        raise DataError(f"{config_path}: not found; RUN must be a folder written by "
                        "`radsearch mmdl train` (or compare).")
    config = load_mmdl_config(config_path, [f"stage.loss={loss}", f"stage.parent={run}",
                                            *overrides])
    return finetune_mmdl(config, out_dir, log=log)
