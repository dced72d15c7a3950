"""The training engine: ``train(config) -> run_dir``.

One epoch = ⌊N_usable / (P·m)⌋ m-per-subject batches (optionally capped for equal budgets). The
method registry (``radsearch.losses.build_method``) supplies the loss, its miner and trainable
proxies; ``method.on_epoch_end()`` runs after the last batch of every epoch (AutoMargin updates ε/β
there). Validation = forensic leave-one-out retrieval inside the held-out fold; the best-metric
and last checkpoints are written atomically, so a killed run resumes losing at most one epoch.

With ``data.in_memory`` every split is decoded once into uint8 tensors and whole batches are
augmented in-process (radsearch.data.batches); otherwise a DataLoader reads and transforms files.
On CPU, ``train.precision`` chooses bf16 autocast or fp32 (radsearch.training.precision).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from radsearch.cohort import Cohort
from radsearch.data.seeding import seed_everything
from radsearch.errors import RadsearchError
from radsearch.io import atomic_path, output_errors, remove_stale_temporaries, write_json
from radsearch.training.callbacks import RunLogger
from radsearch.training.cohorts import load_training_cohort
from radsearch.training.config import Config
from radsearch.training.distributed import (DistInfo, average_gradients, barrier, gather_batch,
                                            init_from_env)
from radsearch.training.embed import (clean_worker_error, embed_cohort, embed_pixels,
                                      mirror_right_for, resolve_device)
from radsearch.training.precision import autocast_context, resolve_cpu_precision
from radsearch.training.preprocessing import resolve_preprocessing, save_preprocessing
from radsearch.training.rundir import RunDir

log = logging.getLogger(__name__)


class TrainingDivergedError(RadsearchError):
    """The loss became NaN / infinite; the run stopped and kept its last good checkpoint."""


def build_optimizer(config: Config, model: torch.nn.Module,
                    method: torch.nn.Module) -> torch.optim.Optimizer:
    """Model weights and the loss's own parameters (class proxies) in one optimiser."""
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "name": "model"}]
    loss_params = [p for p in method.parameters() if p.requires_grad]
    if loss_params:
        groups.append({"params": loss_params, "name": "loss"})
    o = config.optim
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(groups, lr=o.lr, weight_decay=o.weight_decay, momentum=0.9)


def build_loss_method(config: Config, train_cohort: Cohort):
    from radsearch.losses import build_method

    options = dict(config.method.options)
    return build_method(config.method.name, preset=config.method.preset or config.data.preset,
                        num_classes=int(train_cohort.table["subject"].nunique()),
                        embedding_dim=config.model.embedding_dim,
                        num_train_images=len(train_cohort), **options)


def train_step(model: torch.nn.Module, method: torch.nn.Module, optimizer: torch.optim.Optimizer,
               images: torch.Tensor, labels: torch.Tensor, *, info: DistInfo = DistInfo(),
               scaler: torch.amp.GradScaler | None = None,
               autocast: contextlib.AbstractContextManager | None = None) -> float:
    """One optimisation step on the global batch; returns the loss (NaN is returned, not stepped)."""
    optimizer.zero_grad(set_to_none=True)
    with autocast or contextlib.nullcontext():
        embeddings = model(images)
    embeddings, labels = gather_batch(embeddings.float(), labels, info)
    loss = method(embeddings, labels)
    value = float(loss.detach())
    if not math.isfinite(value):
        return value
    if scaler is not None:
        scaler.scale(loss).backward()
        average_gradients(method.parameters(), info)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        average_gradients(method.parameters(), info)
        optimizer.step()
    return value


class Trainer:
    """Holds the pieces of one run; :meth:`fit` runs (or resumes) it."""

    def __init__(self, config: Config, report: Callable[[str], None] | None = None):
        self.config = config
        self.report = report or log.info
        self.run = RunDir(config.run_dir())
        self.run_dir = self.run.path
        self.resumed_from: int | None = None
        self.device = resolve_device(config.train.device)
        self.info = init_from_env(self.device.type)
        if self.info.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.info.local_rank)
            torch.cuda.set_device(self.device)

    # ---------------------------------------------------------------- set-up
    def setup(self) -> None:
        from radsearch.data import MPerSubjectBatchSampler, build_transforms
        from radsearch.models import create_model

        c = self.config
        seed_everything(c.train.seed)
        if not self.info.is_main:
            barrier(self.info)   # rank 0 synthesises / reads the cohort first
        cohort = load_training_cohort(c)
        if self.info.is_main:
            barrier(self.info)
        self.cohort = cohort
        _check_same_run(c, self.run)
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            cohort.save(self.run.cohort)
            c.save(self.run.config)
        self.train_cohort = cohort.split("train")
        self.val_cohort = cohort.split("val")
        self.mirror_right = mirror_right_for(c, cohort)
        self.train_memory = self._in_memory(self.train_cohort)
        self.val_memory = self._in_memory(self.val_cohort)
        self.pre = resolve_preprocessing(c, self.train_cohort, self.train_memory)
        if self.info.is_main:
            save_preprocessing(self.run.preprocessing, self.pre)
        self.train_transform = self.pre.transform(train=True)
        self.val_transform = self.pre.transform(train=False)

        model = create_model(c.model.name, embedding_dim=c.model.embedding_dim, in_chans=1,
                             weights=c.model.weights, first_conv=c.model.first_conv)
        model = model.to(self.device)
        self.gpu = self.device.type == "cuda"
        self.channels_last = c.train.channels_last
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.method = build_loss_method(c, self.train_cohort).to(self.device)
        self.optimizer = build_optimizer(c, model, self.method)
        self.ddp_model = model
        if self.info.enabled:
            if self.gpu and c.model.sync_batchnorm:
                model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
                self.model = model
                self.optimizer = build_optimizer(c, model, self.method)
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.gpu else None)

        self.scaler = None
        if self.gpu:
            self.amp_dtype = None
            if c.train.amp:
                bf16 = torch.cuda.is_bf16_supported()
                self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
                self.scaler = None if bf16 else torch.amp.GradScaler("cuda")
            self.precision_note = f"GPU, amp={c.train.amp} ({self.amp_dtype})"
        else:
            self.amp_dtype, self.precision_note = resolve_cpu_precision(
                c.train.precision, self.model, self._precision_sample())
        if self.info.is_main:
            self.report(f"precision: {self.precision_note}")

        codes = self.train_cohort.subject_codes()
        self.sampler = MPerSubjectBatchSampler(
            codes, m=c.train.images_per_subject, subjects_per_batch=c.train.subjects_per_batch,
            policy=c.train.sampler_policy, seed=c.train.seed, rank=self.info.rank,
            world_size=self.info.world_size)
        self.logger = RunLogger(self.run, tensorboard=self.info.is_main)
        self.start_epoch = 0
        self.best = {"metric": -math.inf, "epoch": -1}
        self._resume()

    def _in_memory(self, cohort: Cohort):
        """uint8 images of ``cohort`` resized to data.resize (None unless data.in_memory)."""
        if not self.config.data.in_memory:
            return None
        from radsearch.data.batches import MemoryImages

        return MemoryImages(cohort, self.config.data.resize, mirror_right=self.mirror_right,
                            min_side=self.config.data.image_size)

    def _precision_sample(self) -> torch.Tensor:
        """A few validation images as the network sees them (for the bf16 agreement check)."""
        n = min(16, len(self.val_cohort))
        if self.val_memory is not None:
            images = self.pre.batch_augment(train=False)(self.val_memory.pixels[:n])
        else:
            from radsearch.data import CohortDataset

            data = CohortDataset(self.val_cohort, transform=self.val_transform,
                                 mirror_right=self.mirror_right)
            images = torch.stack([data[i][0] for i in range(n)])
        images = images.to(self.device)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last \
            else images

    def _resume(self) -> None:
        if self.info.is_main:  # checkpoint temporaries of a killed run: 11-100 MB each
            removed = [p for target in (self.run.last, self.run.best)
                       for p in remove_stale_temporaries(target)]
            if removed:
                self.report(f"removed {len(removed)} temporary file(s) of interrupted checkpoint "
                            f"writes from {self.run_dir}")
        path = self.run.last
        if not (self.config.run.resume and path.is_file()):
            if self.info.is_main:
                for stale in (self.run.metrics, self.run.histograms):
                    stale.unlink(missing_ok=True)
                self.logger.rows, self.logger.histograms = [], {}
            return
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"])
        self.best = dict(state["best"])
        self.logger.keep_until(self.start_epoch)
        self.resumed_from = self.start_epoch
        if self.info.is_main:
            total = self.config.train.epochs
            if self.start_epoch >= total:
                self.report(f"{self.run_dir} has finished its {total} epochs ({path.name}); "
                            "evaluating it again (raise train.epochs to train on)")
            else:
                self.report(f"resuming {self.run_dir} at epoch {self.start_epoch + 1} of {total} "
                            f"(epochs 1–{self.start_epoch} are in {path.name})")

    # -------------------------------------------------------------- training
    def fit(self) -> Path:
        c = self.config
        for epoch in range(self.start_epoch, c.train.epochs):
            row, histograms = self._train_epoch(epoch)
            last = epoch == c.train.epochs - 1
            if (epoch + 1) % c.val.every == 0 or last:
                row.update(self._validate(epoch))
            if self.info.is_main:
                self.logger.log_epoch(row, histograms)
            self._checkpoint(epoch, row)
            barrier(self.info)
        if self.info.is_main:
            self._final_test()
        self.logger.close()
        return self.run_dir

    def _loader(self, epoch: int) -> DataLoader:
        from radsearch.data import CohortDataset, seed_worker

        dataset = CohortDataset(self.train_cohort, transform=self.train_transform,
                                mirror_right=self.mirror_right)
        generator = torch.Generator()
        generator.manual_seed(self.config.train.seed * 100_003 + epoch * 1_009 + self.info.rank)
        workers = self.config.data.workers
        return DataLoader(dataset, batch_sampler=list(self._rows(epoch)), num_workers=workers,
                          worker_init_fn=seed_worker if workers else None, generator=generator,
                          pin_memory=self.gpu)

    def _batches(self, epoch: int):
        """(images, labels) of one epoch: augmented in memory, or from a DataLoader."""
        if self.train_memory is None:
            for images, labels, _rows in self._loader(epoch):
                yield images, labels
            return
        augment = self.pre.batch_augment(train=True)
        for rows in self._rows(epoch):
            index = torch.as_tensor(rows)
            yield augment(self.train_memory.pixels[index]), self.train_memory.labels[index]

    def _rows(self, epoch: int):
        """Row lists of one epoch; with train.batches_per_epoch, consecutive sampler passes."""
        per_epoch = self.config.train.batches_per_epoch
        if per_epoch is None:
            self.sampler.set_epoch(epoch)
            yield from self.sampler
            return
        passes = -(-per_epoch // len(self.sampler))
        for p in range(passes):
            self.sampler.set_epoch(epoch * passes + p)
            yield from self.sampler

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], dict]:
        c = self.config
        # Re-seeding per epoch makes a resumed run draw the same augmentations as an unbroken one.
        seed_everything(c.train.seed * 100_003 + epoch * 1_009 + self.info.rank)
        self.ddp_model.train()
        n_batches = c.train.batches_per_epoch or len(self.sampler)
        if c.train.max_batches_per_epoch:
            n_batches = min(n_batches, c.train.max_batches_per_epoch)
        losses: list[float] = []
        started = time.perf_counter()
        with _progress(c.train.progress and self.info.is_main, f"epoch {epoch + 1}/{c.train.epochs}",
                       n_batches) as advance:
            try:
                for step, (images, labels) in enumerate(self._batches(epoch)):
                    if step >= n_batches:
                        break
                    images = images.to(self.device, non_blocking=True)
                    if self.channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    labels = labels.to(self.device, non_blocking=True)
                    loss = train_step(self.ddp_model, self.method, self.optimizer, images, labels,
                                      info=self.info, scaler=self.scaler,
                                      autocast=autocast_context(self.device, self.amp_dtype))
                    if not math.isfinite(loss):
                        self._diverged(epoch, f"batch {step + 1}: the loss is {loss}")
                    losses.append(loss)
                    advance(loss)
            except RadsearchError as exc:
                raise clean_worker_error(exc) from None
        stats = {k: float(v) for k, v in self.method.epoch_stats().items()}
        histograms = self.method.epoch_histograms()
        self.method.on_epoch_end()
        stats.pop("batches", None)   # the engine's own count (an int) is the one logged
        row = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else math.nan,
               "batches": len(losses),
               "seconds": time.perf_counter() - started, **stats}
        return row, histograms

    def _diverged(self, epoch: int, where: str) -> None:
        kept = (f"the last good checkpoint is kept at {self.run.last} "
                f"(after epoch {self.start_epoch_done()})" if self.run.last.is_file()
                else "no checkpoint had been written yet")
        raise TrainingDivergedError(
            f"epoch {epoch + 1}, {where}; the run stopped and {kept}. Lower optim.lr, check the "
            "images for corrupt values, or try model.weights.")

    def start_epoch_done(self) -> int:
        state = torch.load(self.run.last, map_location="cpu", weights_only=False)
        return int(state["epoch"])

    # ------------------------------------------------------------ validation
    def _validate(self, epoch: int) -> dict[str, float]:
        if not self.info.is_main:
            return {}
        from radsearch.evaluation import evaluate_forensic

        embeddings = self._embed(self.model, self.val_cohort, self.val_memory)
        if not np.isfinite(embeddings).all():
            self._diverged(epoch, "validation: the model's embeddings contain NaN or infinity")
        result = evaluate_forensic(embeddings, self.val_cohort, leave_one_out=True)
        return {f"val_{k}": float(v) for k, v in result.groups["all"].items()}

    def _embed(self, model: torch.nn.Module, cohort: Cohort, memory) -> np.ndarray:
        """Test-time embeddings of ``cohort`` (from memory when it is held there)."""
        c = self.config
        if memory is not None:
            return embed_pixels(model, memory.pixels, self.pre.batch_augment(train=False),
                                batch_size=c.val.batch_size, device=self.device,
                                channels_last=self.channels_last)
        return embed_cohort(model, cohort, self.val_transform, batch_size=c.val.batch_size,
                            device=self.device, workers=c.data.workers,
                            mirror_right=self.mirror_right, channels_last=self.channels_last)

    def _checkpoint(self, epoch: int, row: dict[str, float]) -> None:
        if not self.info.is_main:
            return
        key = f"val_{self.config.val.metric}"
        improved = key in row and math.isfinite(row[key]) and row[key] > self.best["metric"]
        if improved:
            self.best = {"metric": float(row[key]), "epoch": epoch}
        state = {"model": self.model.state_dict(), "method": self.method.state_dict(),
                 "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                 "epoch": epoch + 1, "best": self.best, "config": self.config.model_dump(mode="json")}
        if improved:  # for evaluation only: no optimiser state (a third of the size)
            _save({k: v for k, v in state.items() if k not in ("optimizer", "scaler")},
                  self.run.best)
        _save(state, self.run.last)

    def _final_test(self) -> None:
        """Per-year forensic results of the best checkpoint on the test split (results.json)."""
        summary = {"best_epoch": self.best["epoch"], f"best_val_{self.config.val.metric}":
                   self.best["metric"] if math.isfinite(self.best["metric"]) else None,
                   "epochs": self.config.train.epochs, "method": self.config.method.name,
                   "seed": self.config.train.seed}
        if (self.cohort.table["split"] == "test").any():
            from radsearch.evaluation import evaluate_forensic
            from radsearch.training.embed import load_run_model
            from radsearch.training.references import RawPixels, reference_results

            test = self.cohort.split("test")
            memory = self._in_memory(test)
            model = load_run_model(self.run_dir, "best", self.device)
            if self.channels_last:
                model = model.to(memory_format=torch.channels_last)
            result = evaluate_forensic(self._embed(model, test, memory), test)
            write_json(self.run.results, result.to_dict())
            summary["test"] = result.groups.get("all", {})
            references = reference_results(
                self.config, test, lambda m: self._embed(m.to(self.device), test, memory),
                pixels=lambda: self._embed(RawPixels(), test, memory))
            write_json(self.run.references, references)
        write_json(self.run.summary, summary)


# Settings that may change when a run is resumed (they do not change what is learned).
_RESUMABLE = {("train", "epochs"), ("train", "progress"), ("train", "device"), ("train", "threads"),
              ("data", "workers"), ("run", "resume"), ("val", "batch_size")}


def _check_same_run(config: Config, run: RunDir) -> None:
    """Resuming a folder trained with other settings would mix two experiments: refuse."""
    saved_path = run.config
    run_dir = run.path
    if not (config.run.resume and run.last.is_file() and saved_path.is_file()):
        return
    from radsearch.errors import ConfigError
    from radsearch.training.config import load_config

    saved = load_config(saved_path).model_dump(mode="json")
    new = config.model_dump(mode="json")
    for section, values in new.items():
        for key, value in values.items():
            if (section, key) not in _RESUMABLE and saved.get(section, {}).get(key) != value:
                raise ConfigError(
                    f"{run_dir} holds a run with {section}.{key}="
                    f"{saved.get(section, {}).get(key)!r}, not {value!r}; choose another "
                    "run.name / run.out_dir, or run.resume=false to start it again.")


def _save(state: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


@contextlib.contextmanager
def _progress(enabled: bool, description: str, total: int):
    if not enabled:
        yield lambda loss: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                  TimeRemainingColumn(), transient=False) as progress:
        task = progress.add_task(description, total=total, loss="-")
        yield lambda loss: progress.update(task, advance=1, loss=f"{loss:.4f}")


def train(config: Config, report: Callable[[str], None] | None = None) -> Path:
    """Train (or resume) the run described by ``config``; returns its folder.

    ``report`` receives one-line notices (precision chosen, resuming from which epoch); by
    default they go to the ``radsearch.training.engine`` logger.
    """
    threads = torch.get_num_threads()
    if config.train.threads:
        # One thread per process is often faster on a busy CPU (no OpenMP spin contention).
        torch.set_num_threads(config.train.threads)
    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    try:
        with output_errors(config.run_dir()):
            trainer = Trainer(config, report)
            trainer.setup()
            return trainer.fit()
    finally:
        torch.set_num_threads(threads)
        if owns_group and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def run_summary(run_dir: str | Path) -> dict:
    return RunDir(run_dir).read_json("summary")
