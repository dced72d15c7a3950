"""MMDL trainer: images (+ reports for a fraction p of the training studies) → common space.

Self-contained on purpose: a diagnostic cohort is small enough to decode once into uint8 memory at
the training size, batches are plain random batches (no per-subject sampling), and the run is
evaluated with the diagnostic protocol of :mod:`radsearch.evaluation` (database = train split,
queries = test split). Methods are config variants (``compare.methods``: name → overrides):
``loss.kind=mmdl`` (MMDL objective, reports when ``data.report_fraction`` > 0), ``classifier``
(the D121 baseline: label BCE only, retrieval on the backbone's pooled features) and InfoNCE via
``loss.gamma``. ``data.shuffle_reports`` is the control: reports permuted across studies, so any
gain that survives it does not come from the pairing.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from radsearch.cohort import Cohort
from radsearch.data.seeding import seed_everything
from radsearch.datasets.labels import CHEXPERT_LABELS
from radsearch.errors import ConfigError, DataError
from radsearch.evaluation import evaluate_diagnostic, relevance_retrieval
from radsearch.io import atomic_path, write_json, write_text
from radsearch.losses.ath import ATHLoss
from radsearch.losses.mmdl import MMDLLoss, MMDLWeights, label_targets
from radsearch.models.ath import ATHModel
from radsearch.models.mmdl import MMDLModel
from radsearch.models.text import build_text_encoder
from radsearch.training.config import _merge, apply_override
from radsearch.training.embed import resolve_device
from radsearch.training.mmdl_images import load_images, training_images  # noqa: F401 (API)
from radsearch.training.mmdl_options import MMDLATH, MMDLImages, MMDLStage

from radsearch.training.precision import autocast_context, resolve_cpu_precision
from radsearch.training.rundir import RunDir


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MMDLData(_Strict):
    manifest: str | None = None
    image_size: int = Field(64, ge=16)
    report_fraction: float = Field(1.0, ge=0.0, le=1.0)  # p: training studies that keep a report
    shuffle_reports: bool = False                          # control: reports permuted over studies
    uncertain: Literal["u-zeros", "u-ones", "u-ignore"] = "u-zeros"
    pairing_seed: int = 0                                  # which studies keep their report
    label_noise: float = Field(0.0, ge=0.0, le=1.0)  # training studies whose labels are swapped
    # incomplete training labels (an auto-labeller that misses findings): each positive finding of
    # a training study is dropped with this probability; a study left without one becomes
    # "No Finding". Reports and the evaluation labels stay complete.
    label_dropout: float = Field(0.0, ge=0.0, le=1.0)


class MMDLModelConfig(_Strict):
    backbone: str = "densenet121"
    weights: str = "none"
    dim: int = Field(512, ge=1)
    hidden: int = Field(1024, ge=1)
    descriptor: Literal["pool", "selective", "gem"] = "pool"


class MMDLText(_Strict):
    encoder: str = "tfidf"            # tfidf | bert-scratch | hf:/local/path
    pooling: Literal["cls", "mean"] = "cls"
    max_length: int = Field(128, ge=2)
    trust_remote_code: bool = False
    freeze: bool = False


class MMDLLossConfig(_Strict):
    kind: Literal["mmdl", "classifier"] = "mmdl"
    label: float = Field(1.0, ge=0.0)
    alpha: float = Field(1e-3, ge=0.0)
    beta: float = Field(1e-1, ge=0.0)
    gamma: float = Field(0.0, ge=0.0)
    temperature: float = Field(0.1, gt=0.0)
    text_label: float = Field(1.0, ge=0.0)
    # cosine (scale-free, default since the collapse study) | l2 (DSCMR's raw ‖u − v‖) | l2sq
    invariance: Literal["l2", "l2sq", "cosine"] = "cosine"


class MMDLTrain(_Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(1e-4, gt=0.0)
    weight_decay: float = Field(1e-5, ge=0.0)
    seed: int = 0
    device: str = "auto"
    threads: int = Field(0, ge=0)     # 0: leave torch's default
    precision: Literal["auto", "fp32", "bf16"] = "fp32"  # CPU bf16 autocast (training/precision)
    channels_last: bool = False


class MMDLRun(_Strict):
    out_dir: str = "runs/mmdl"


class MMDLCompare(_Strict):
    methods: dict[str, list[str]] = Field(default_factory=lambda: {"image-mmdl": []})
    seeds: int = Field(3, ge=1)
    reference: str | None = None      # method the others are compared with (paired bootstrap)
    bootstrap: int = Field(2000, ge=100)


class MMDLConfig(_Strict):
    data: MMDLData = Field(default_factory=MMDLData)
    model: MMDLModelConfig = Field(default_factory=MMDLModelConfig)
    text: MMDLText = Field(default_factory=MMDLText)
    loss: MMDLLossConfig = Field(default_factory=MMDLLossConfig)
    train: MMDLTrain = Field(default_factory=MMDLTrain)
    run: MMDLRun = Field(default_factory=MMDLRun)
    compare: MMDLCompare = Field(default_factory=MMDLCompare)
    ath: MMDLATH = Field(default_factory=MMDLATH)        # extension: ATH hashing head (bits > 0)
    stage: MMDLStage = Field(default_factory=MMDLStage)  # extension B: ranking-loss stage
    images: MMDLImages = Field(default_factory=MMDLImages)  # RAM or file-backed decoded images


def load_mmdl_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                     base: dict[str, Any] | None = None) -> MMDLConfig:
    """YAML file (or ``base``) + ``key=value`` overrides → validated config; one-line errors."""
    data: dict[str, Any] = copy.deepcopy(base or {})
    source = "mmdl config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found (see configs/mmdl-*.yaml).")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}).") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (data:, model:, …).")
        data = _merge(data, loaded)
    for item in overrides:
        apply_override(data, item)
    try:
        return MMDLConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        raise ConfigError(f"{source}: {key}={error.get('input')!r}: {error['msg']}.") from None


# ------------------------------------------------------------------ data
def label_states(cohort: Cohort) -> np.ndarray:
    """[N, 14] float: 1 positive, −1 uncertain (``uncertain`` column), NaN blank/not positive."""
    positive, _ = cohort.label_matrix(CHEXPERT_LABELS)
    states = np.where(positive, 1.0, np.nan).astype(np.float32)
    if cohort.has("uncertain"):
        unsure = _uncertain_matrix(cohort)
        states[unsure & ~positive] = -1.0
    return states


def _uncertain_matrix(cohort: Cohort) -> np.ndarray:
    index = {c: j for j, c in enumerate(CHEXPERT_LABELS)}
    out = np.zeros((len(cohort), len(CHEXPERT_LABELS)), bool)
    for i, cell in enumerate(cohort.table["uncertain"].fillna("").astype(str)):
        for name in filter(None, cell.split("|")):
            if name in index:
                out[i, index[name]] = True
    return out


def training_reports(cohort: Cohort, fraction: float, shuffle: bool, seed: int) -> list[str]:
    """Report per row ("" = none) after keeping a fraction p of the studies with a report
    (chosen by study, seeded) and, for the control, permuting the kept reports across studies."""
    table = cohort.table
    reports = table["report"].fillna("").astype(str).to_numpy() if cohort.has("report") \
        else np.full(len(table), "", dtype=object)
    study = table["study"].astype(str).to_numpy() if cohort.has("study") \
        else np.arange(len(table)).astype(str)
    rng = np.random.default_rng(seed)
    with_text = sorted({s for s, r in zip(study, reports) if r.strip()})
    order = rng.permutation(len(with_text))
    kept = [with_text[i] for i in order[: int(round(fraction * len(with_text)))]]
    text_of = {}
    for s, r in zip(study, reports):
        text_of.setdefault(s, r)
    if shuffle and len(kept) > 1:
        permuted = rng.permutation(len(kept))
        text_of = {**text_of, **{kept[i]: text_of[kept[j]] for i, j in enumerate(permuted)}}
    kept_set = set(kept)
    return [text_of[s] if s in kept_set else "" for s in study]


def _training_studies(cohort: Cohort) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Study id per row (the row itself when there is no study column), the training rows, and
    the sorted training studies: label perturbations are drawn per study, in a stable order."""
    table = cohort.table
    study = table["study"].astype(str).to_numpy() if cohort.has("study") \
        else np.arange(len(table)).astype(str)
    train = np.flatnonzero(table["split"].to_numpy() == "train")
    return study, train, sorted(set(study[train]))


def noisy_training_targets(cohort: Cohort, states: np.ndarray, fraction: float, seed: int
                           ) -> np.ndarray:
    """Label noise for training only: a fraction of the training studies take the label states of
    another (random) training study. Reports and the evaluation labels stay clean, so with noise
    the reports carry information the training labels lack."""
    if fraction <= 0:
        return states
    study, train, studies = _training_studies(cohort)
    rng = np.random.default_rng([seed, 17])
    noisy = rng.permutation(len(studies))[: int(round(fraction * len(studies)))]
    donors = rng.integers(0, len(studies), size=len(noisy))
    first_row = {}
    for i in train:
        first_row.setdefault(study[i], i)
    out = states.copy()
    replace = {studies[a]: states[first_row[studies[b]]] for a, b in zip(noisy, donors)}
    for i in train:
        if study[i] in replace:
            out[i] = replace[study[i]]
    return out


def dropped_training_targets(cohort: Cohort, states: np.ndarray, fraction: float, seed: int
                             ) -> np.ndarray:
    """Incomplete training labels: each positive finding of a training study is dropped (set blank)
    with probability ``fraction``, the same draw for every image of the study; a study left with
    no positive becomes "No Finding" (what an auto-labeller that missed everything reports). The
    reports and the evaluation labels stay complete, so reports then carry what labels lack."""
    if fraction <= 0:
        return states
    study, train, studies = _training_studies(cohort)
    rng = np.random.default_rng([seed, 23])
    drop_of = dict(zip(studies, rng.random((len(studies), states.shape[1])) < fraction))
    nf = CHEXPERT_LABELS.index("No Finding")
    out = states.copy()
    for i in train:
        row = out[i]
        gone = drop_of[study[i]] & (row == 1)
        gone[nf] = False
        row[gone] = np.nan
        if not (row == 1).any():
            row[nf] = 1.0
    return out


def _batch_tensor(images: np.ndarray, rows: np.ndarray, train: bool,
                  rng: np.random.Generator) -> torch.Tensor:
    """uint8 → float in [-1, 1] [B, 1, H, W]; training adds a ±4 px shift and gain/gamma jitter."""
    x = torch.from_numpy(images[rows]).float().div_(255.0).unsqueeze(1)
    if train:
        pad = 4
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        size = x.shape[-1]
        offsets = rng.integers(0, 2 * pad + 1, size=(len(rows), 2))
        x = torch.stack([padded[i, :, dy:dy + size, dx:dx + size]
                         for i, (dy, dx) in enumerate(offsets)])
        gamma = torch.from_numpy(np.exp(rng.normal(0, 0.1, len(rows))).astype(np.float32))
        x = x.clamp_min(1e-6).pow(gamma.view(-1, 1, 1, 1))
    return (x - 0.5) / 0.5


# ------------------------------------------------------------------ training
def build_model(config: MMDLConfig, train_reports: list[str] | None) -> MMDLModel:
    use_text = config.loss.kind == "mmdl" and train_reports is not None and \
        any(r.strip() for r in train_reports)
    encoder = None
    if use_text:
        t = config.text
        encoder = build_text_encoder(t.encoder, train_reports, pooling=t.pooling,
                                     max_length=t.max_length,
                                     trust_remote_code=t.trust_remote_code, freeze=t.freeze)
    m = config.model
    if config.ath.bits:  # ATH / ATH+MMDL (models/ath.py)
        return ATHModel(m.backbone, num_classes=len(CHEXPERT_LABELS), dim=m.dim, hidden=m.hidden,
                        text_encoder=encoder, descriptor=m.descriptor, weights=m.weights,
                        bits=config.ath.bits, attention=config.ath.attention)
    return MMDLModel(m.backbone, num_classes=len(CHEXPERT_LABELS), dim=m.dim, hidden=m.hidden,
                     text_encoder=encoder, descriptor=m.descriptor, weights=m.weights)


@torch.no_grad()
def embed_all(model: MMDLModel, images: np.ndarray, space: str, device: torch.device,
              batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    vecs, logits = [], []
    rng = np.random.default_rng(0)
    for start in range(0, len(images), batch):
        rows = np.arange(start, min(start + batch, len(images)))
        x = _batch_tensor(images, rows, False, rng).to(device)
        common, logit = model.forward_image(x)
        vec = model.image_features(x) if space == "features" else common
        if space.startswith("hash-"):  # ATH codes: sign (Hamming ranking) or relaxed
            vec = model.codes(common, binary=space == "hash-hamming")
        vecs.append(F.normalize(vec.float(), dim=1).cpu())
        logits.append(logit.float().cpu())
    return torch.cat(vecs).numpy(), torch.cat(logits).numpy()


def train_mmdl(config: MMDLConfig, out_dir: str | Path | None = None, *,
               cohort: Cohort | None = None, images: np.ndarray | None = None,
               log=print) -> dict[str, Any]:
    """Train one run and evaluate it; writes ``config.yaml``, ``model.pt``, ``results.json``."""
    if config.stage.loss != "none":
        raise ConfigError(f"stage.loss={config.stage.loss}: a ranking stage continues a trained "
                          "run; use `radsearch mmdl finetune` (or training.mmdl_finetune).")
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    seed_everything(config.train.seed)
    out = Path(out_dir or config.run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cohort is None:
        if not config.data.manifest:
            raise ConfigError("data.manifest is not set; give data.manifest=PATH (e.g. a cohort "
                              "from `radsearch synth chest`).")
        cohort = Cohort.load(config.data.manifest)
    if not cohort.has("split"):
        raise DataError(f"{cohort.source}: no 'split' column; MMDL needs train and test splits.")
    device = resolve_device(config.train.device)
    split = cohort.table["split"].to_numpy()
    train_rows = np.flatnonzero(split == "train")
    if not len(train_rows):
        raise DataError(f"{cohort.source}: the train split is empty.")
    reports = training_reports(cohort, config.data.report_fraction, config.data.shuffle_reports,
                               config.data.pairing_seed)
    train_reports = [reports[i] for i in train_rows]
    use_text = config.loss.kind == "mmdl" and config.data.report_fraction > 0
    model = build_model(config, train_reports if use_text else None).to(device)
    if images is None:  # after the model: a bad text.encoder fails before decoding images
        images = training_images(cohort, config.data.image_size, config.images, log=log)
    L = config.loss
    weights = MMDLWeights(label=L.label, alpha=L.alpha if L.kind == "mmdl" else 0.0,
                          beta=L.beta, gamma=L.gamma, temperature=L.temperature,
                          text_label=L.text_label, invariance=L.invariance)
    criterion = MMDLLoss(weights)
    if config.ath.bits:
        A = config.ath
        criterion = ATHLoss(criterion, model.relaxed_codes, A.triplet_weight, A.margin,
                            A.quantization)
    states = noisy_training_targets(cohort, label_states(cohort), config.data.label_noise,
                                    config.data.pairing_seed)
    states = dropped_training_targets(cohort, states, config.data.label_dropout,
                                      config.data.pairing_seed)
    targets_all, weights_all = label_targets(states, config.data.uncertain)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=config.train.lr, betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=config.train.weight_decay)
    rng = np.random.default_rng(config.train.seed)
    has_text = np.array([bool(r.strip()) for r in reports]) if model.text_encoder is not None \
        else np.zeros(len(reports), bool)
    history = []
    bs = config.train.batch_size
    channels_last = config.train.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype, precision_note = None, "fp32"
    if device.type == "cpu":
        probe = _batch_tensor(images, train_rows[:min(bs, len(train_rows))], False, rng).to(device)
        amp_dtype, precision_note = resolve_cpu_precision(config.train.precision, model, probe)
    log(f"precision: {precision_note}")
    started = time.perf_counter()
    for epoch in range(config.train.epochs):
        model.train()
        order = rng.permutation(train_rows)
        sums: dict[str, float] = {}
        n_batches = max(1, len(order) // bs)
        for b in range(n_batches):
            rows = order[b * bs:(b + 1) * bs]
            x = _batch_tensor(images, rows, True, rng).to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            mask = torch.from_numpy(has_text[rows]).to(device)
            v = logits_v = None
            with autocast_context(device, amp_dtype):
                u, logits_u = model.forward_image(x)
                if mask.any():
                    v, logits_v = model.forward_text([reports[i] for i in rows[has_text[rows]]])
            terms = criterion(u, logits_u, targets_all[rows].to(device),
                              weights_all[rows].to(device), v, logits_v, mask)
            if not torch.isfinite(terms["loss"]):
                raise DataError(f"mmdl: the loss became {terms['loss'].item()} at epoch "
                                f"{epoch + 1}; lower train.lr.")
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            for k, val in terms.items():
                sums[k] = sums.get(k, 0.0) + float(val.detach())
        row = {"epoch": epoch + 1, **{k: v / n_batches for k, v in sums.items()}}
        row.update(weighted_terms(row, weights))
        history.append(row)
        log(f"epoch {epoch + 1}/{config.train.epochs} loss {row['loss']:.4f} = label "
            f"{row['w_label']:.4f} + sim {row['w_sim']:.4f} + inv {row['w_invariance']:.4f} "
            f"+ nce {row['w_info_nce']:.4f}")
    train_seconds = time.perf_counter() - started

    space = retrieval_space(config)
    if channels_last:
        model = model.to(memory_format=torch.contiguous_format)
    vectors, logits = embed_all(model, images, space, device)
    result = evaluate_diagnostic(vectors, cohort, database="train", queries="test",
                                 classes=list(CHEXPERT_LABELS), logits=logits)
    per_query = {k: v.tolist() for k, v in result.per_query.values.items()} \
        if result.per_query is not None else {}
    out_json = {"settings": {**config.model_dump(), "retrieval_space": space,
                             "text_encoder": None if model.text_encoder is None
                             else model.text_encoder.describe(),
                             "n_train_with_report": int(has_text[train_rows].sum()),
                             "n_train": int(len(train_rows)), "train_seconds": train_seconds,
                             "precision": precision_note,
                             "evaluation": result.settings},
                "history": history, "diagnostic": result.to_dict(),
                "spread": embedding_spread(vectors[split == "test"]),
                "per_query": per_query,
                "query_rows": None if result.query_rows is None else result.query_rows.tolist()}
    return save_mmdl_run(out, config, model, out_json, cohort, vectors, space, device)


def save_mmdl_run(out: Path, config: MMDLConfig, model: MMDLModel, out_json: dict[str, Any],
                  cohort: Cohort, vectors: np.ndarray, space: str, device: torch.device
                  ) -> dict[str, Any]:
    """Add text → image precision (common space only: ATH codes and D121 features have no text
    side) and write ``config.yaml``, ``model.pt`` (atomically) and ``results.json``."""
    if model.text_encoder is not None and space == "common":
        out_json["text_to_image"] = text_to_image_precision(model, cohort, vectors, device)
    out.mkdir(parents=True, exist_ok=True)
    run = RunDir(out)
    write_text(run.config, yaml.safe_dump(config.model_dump(), sort_keys=False))
    with atomic_path(run / "model.pt") as tmp:
        torch.save({"model": model.state_dict(), "config": config.model_dump()}, tmp)
    write_json(run.results, out_json)
    return out_json


def retrieval_space(config: MMDLConfig) -> str:
    """features (D121 baseline), hash-hamming / hash-cosine (ATH) or common."""
    if config.ath.bits:
        return f"hash-{config.ath.retrieval}"
    return "features" if config.loss.kind == "classifier" else "common"

def weighted_terms(row: dict[str, float], w: MMDLWeights) -> dict[str, float]:
    """Each term's contribution to the total loss (weight × mean value), so a term that has
    vanished next to the others — the cause of the collapse in docs/mmdl.md — shows in the log."""
    sim = row.get("sim_ii", 0.0) + row.get("sim_it", 0.0) + row.get("sim_tt", 0.0)
    return {"w_label": w.label * (row.get("label_image", 0.0)
                                  + w.text_label * row.get("label_text", 0.0)),
            "w_sim": w.alpha * sim, "w_invariance": w.beta * row.get("invariance", 0.0),
            "w_info_nce": w.gamma * row.get("info_nce", 0.0)}


@torch.no_grad()
def text_to_image_precision(model: MMDLModel, cohort: Cohort, image_vectors: np.ndarray,
                            device: torch.device, ks: tuple[int, ...] = (1, 5, 10),
                            queries: str = "test", database: str = "train") -> dict[str, float]:
    """Class-based precision@k of report → image search (ConVIRT / GLoRIA style): one query per
    test study with a report, database = training images, relevant = shares a label."""
    model.eval()
    table = cohort.table
    split = table["split"].to_numpy()
    reports = table["report"].fillna("").astype(str).to_numpy()
    q_rows = [i for i in np.flatnonzero(split == queries) if reports[i].strip()]
    if not q_rows:
        return {}
    first = {}
    for i in q_rows:
        first.setdefault(table["study"].iloc[i] if "study" in table else i, i)
    q_rows = np.array(sorted(first.values()))
    db_rows = np.flatnonzero(split == database)
    text_vecs = torch.cat([model.embed_texts([reports[i] for i in q_rows[s:s + 256]]).cpu()
                           for s in range(0, len(q_rows), 256)]).numpy()
    labels, _ = cohort.label_matrix(CHEXPERT_LABELS)
    relevance = (labels[q_rows].astype(np.float32) @ labels[db_rows].T.astype(np.float32)) > 0
    metrics = relevance_retrieval(text_vecs, image_vectors[db_rows], relevance, precision_ks=ks,
                                  map_ks=(), cmc_ks=(1,))
    summary = metrics.summary()
    return {k: v for k, v in summary.items() if k.startswith("P@") or k == "n_queries"}


def read_results(run_dir: str | Path) -> dict[str, Any]:
    path = RunDir(run_dir).results
    if not path.is_file():
        raise DataError(f"{path}: no results; train the run first (radsearch mmdl train).")
    return json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------ comparison
TABLE_METRICS = ("mAP@1", "mAP@5", "mAP@10", "mAP@20", "mAP", "Acc@1", "Acc@5")


def report_label_recovery(cohort: Cohort, train: str = "train", test: str = "test"
                          ) -> dict[str, float]:
    """How much of the labels a report already says: TF-IDF (1–2-grams) + one logistic regression
    per label fitted on the ``train`` reports, scored on the ``test`` reports (one per study).

    Near-perfect recovery means a report adds (almost) nothing the training labels do not already
    give — the label BCE sees the same information — so image+report training can only help
    image retrieval through optimisation / regularisation, not through new information.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier

    table = cohort.table
    if not cohort.has("report"):
        raise DataError(f"{cohort.source}: no 'report' column.")
    labels, _ = cohort.label_matrix(CHEXPERT_LABELS)
    keep = table["report"].fillna("").astype(str).str.strip() != ""
    if cohort.has("study"):
        keep &= ~table["study"].duplicated()
    split = table["split"].to_numpy()
    tr = np.flatnonzero(keep.to_numpy() & (split == train))
    te = np.flatnonzero(keep.to_numpy() & (split == test))
    if not len(tr) or not len(te):
        raise DataError(f"{cohort.source}: need reports in both the {train!r} and {test!r} splits.")
    columns = labels[tr].any(0) & ~labels[tr].all(0)  # labels with both classes in training
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(table["report"].iloc[tr])
    clf = OneVsRestClassifier(LogisticRegression(C=10.0, max_iter=2000))
    clf.fit(vec.transform(table["report"].iloc[tr]), labels[tr][:, columns])
    pred = clf.predict(vec.transform(table["report"].iloc[te]))
    truth = labels[te][:, columns]
    return {"n_train_reports": int(len(tr)), "n_test_reports": int(len(te)),
            "n_labels": int(columns.sum()),
            "exact_match": float((pred == truth).all(1).mean()),
            "macro_f1": float(f1_score(truth, pred, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(truth, pred, average="micro", zero_division=0))}


def load_mmdl_run(run_dir: str | Path, cohort: Cohort | None = None
                  ) -> tuple[MMDLModel, MMDLConfig, Cohort]:
    """The trained model of a run folder, rebuilt from its config (the text encoder's vocabulary is
    refitted on the same training reports, which is deterministic) and its weights."""
    path = Path(run_dir) / "model.pt"
    if not path.is_file():
        raise DataError(f"{path}: no model; train the run first (radsearch mmdl train).")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    config = MMDLConfig.model_validate(saved["config"])
    cohort = cohort or Cohort.load(config.data.manifest)
    reports = training_reports(cohort, config.data.report_fraction, config.data.shuffle_reports,
                               config.data.pairing_seed)
    train_rows = np.flatnonzero(cohort.table["split"].to_numpy() == "train")
    use_text = config.loss.kind == "mmdl" and config.data.report_fraction > 0
    model = build_model(config, [reports[i] for i in train_rows] if use_text else None)
    model.load_state_dict(saved["model"])
    return model.eval(), config, cohort


def embedding_spread(vectors: np.ndarray) -> dict[str, float]:
    """Collapse check: mean pairwise cosine of unit vectors (1 = every item at one point) and the
    participation ratio of their covariance spectrum (effective number of used dimensions)."""
    x = np.asarray(vectors, np.float64)
    n = len(x)
    gram = x @ x.T
    mean_cos = float((gram.sum() - np.trace(gram)) / max(n * (n - 1), 1))
    eig = np.clip(np.linalg.eigvalsh(np.cov(x.T)), 0, None)
    ratio = float(eig.sum() ** 2 / max((eig ** 2).sum(), 1e-300))
    return {"mean_cosine": mean_cos, "effective_dims": ratio}
