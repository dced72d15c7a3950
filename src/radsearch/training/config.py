"""Typed training configuration: YAML file + ``key=value`` overrides → validated :class:`Config`.

Unknown keys and wrong types fail with the dotted key named (and a suggestion), so a typo never
silently trains the default. The resolved config is written to the run folder as ``config.yaml``:
a run can be re-created from it alone.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from radsearch.errors import ConfigError
from radsearch.io import write_text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SynthConfig(_Strict):
    """A synthetic cohort generated on first use (cached in ``out_dir``)."""
    kind: Literal["knee", "chest"] = "knee"
    n_subjects: int = Field(300, ge=2)
    seed: int = 0
    image_size: int = Field(128, ge=16)
    out_dir: str | None = None          # default: <run.out_dir>/_synth/<kind>-n..-s..-px..
    difficulty: dict[str, Any] = Field(default_factory=dict)


class DataConfig(_Strict):
    manifest: str | None = None          # any Cohort manifest (CSV / Parquet)
    synth: SynthConfig | None = None     # …or a synthetic cohort
    preset: Literal["oai", "cxr"] = "oai"
    image_size: int = Field(256, ge=16)  # the S × S crop the network sees
    resize: int = Field(280, ge=16)      # images are resized to R × R first (R >= S)
    mirror_right: bool | None = None     # None: True for preset oai when the cohort has a side
    # grey-level normalisation: the preset's constants, or mean/std of the training split (auto)
    normalize: Literal["preset", "auto"] = "preset"
    in_memory: bool = False              # decode every image once (uint8), augment whole batches
    workers: int = Field(2, ge=0)
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)   # when the manifest has no val split
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0)  # when the manifest has no split at all
    split_seed: int = 0

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.resize < self.image_size:
            raise ValueError(f"resize={self.resize} must be >= image_size={self.image_size}")
        return self


class ModelConfig(_Strict):
    name: str = "resnet18"               # one of radsearch.models.MODELS
    embedding_dim: int = Field(128, ge=1)
    weights: str = "none"                # none | imagenet | PATH
    first_conv: Literal["average", "reinit"] = "average"
    sync_batchnorm: bool = True          # multi-GPU only (SyncBatchNorm needs CUDA)

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        from radsearch.models import MODELS

        key = name.lower().replace("-", "").replace("_", "")
        if key not in {m.replace("-", "") for m in MODELS}:
            raise ValueError(f"unknown backbone; use one of {', '.join(MODELS)}")
        return name


class MethodConfig(_Strict):
    name: str = "AdaTriplet-AM"
    preset: Literal["oai", "cxr"] | None = None   # None: data.preset
    options: dict[str, Any] = Field(default_factory=dict)  # overrides passed to build_method

    @field_validator("name")
    @classmethod
    def _known_method(cls, name: str) -> str:
        from radsearch.losses import METHODS

        if name not in METHODS:
            close = difflib.get_close_matches(name, list(METHODS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"unknown method{hint}; use one of {', '.join(METHODS)}")
        return name


class OptimConfig(_Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)


class TrainConfig(_Strict):
    epochs: int = Field(100, ge=1)
    subjects_per_batch: int = Field(32, ge=2)
    images_per_subject: int = Field(4, ge=2)
    sampler_policy: Literal["skip", "replace"] = "skip"
    max_batches_per_epoch: int | None = Field(None, ge=1)   # an equal budget for comparisons
    # an epoch of exactly this many batches, drawn from as many passes of the sampler as needed
    # (AutoMargin and validation run per epoch; None: one pass of the sampler)
    batches_per_epoch: int | None = Field(None, ge=1)
    seed: int = 0
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    amp: bool = True                     # GPU: mixed precision (bf16 where supported, else fp16)
    # CPU: bf16 autocast where the CPU has bf16 instructions and a check on the first batch
    # agrees with fp32 (auto), always (bf16) or never (fp32)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = True           # NHWC memory layout (GPU and CPU)
    threads: int | None = Field(None, ge=1)   # torch intra-op threads on CPU
    progress: bool = True


def val_metrics() -> tuple[str, ...]:
    """Forensic metrics a run can select its best epoch on (counts such as n_skipped are not)."""
    from radsearch.evaluation.metrics import FORENSIC_CMC_KS

    return ("mAP", "mAP@R", "R-precision", "MRR", *(f"CMC@{k}" for k in FORENSIC_CMC_KS),
            *(f"CMC@{k}_first" for k in FORENSIC_CMC_KS))


class ValConfig(_Strict):
    every: int = Field(1, ge=1)          # validate every N epochs (and after the last one)
    metric: str = "mAP"                  # forensic metric of the validation fold used for "best"
    batch_size: int = Field(64, ge=1)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in val_metrics():
            raise ValueError(f"not a validation metric; use one of {', '.join(val_metrics())}")
        return metric


class RunConfig(_Strict):
    out_dir: str = "runs"
    name: str | None = None              # default: <method>-s<seed>
    resume: bool = True                  # continue from last.pt when the run folder has one


class CompareConfig(_Strict):
    """Defaults of ``radsearch compare``: method specs such as ``AdaTriplet[epsilon=0.5,beta=0.5]``."""
    methods: list[str] = Field(default_factory=list)
    seeds: int = Field(3, ge=1)


class Config(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    val: ValConfig = Field(default_factory=ValConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)

    def run_dir(self) -> Path:
        name = self.run.name or f"{self.method.name}-s{self.train.seed}"
        return Path(self.run.out_dir) / name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: str | os.PathLike) -> None:
        write_text(path, self.to_yaml())


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (),
                base: dict[str, Any] | None = None) -> Config:
    """Read a YAML config (or start from ``base`` / defaults) and apply ``key=value`` overrides."""
    data: dict[str, Any] = copy.deepcopy(base or {})  # overrides must not edit the caller's dict
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found (see configs/ for examples).")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}).") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (data:, model:, …) at the "
                              "top level.")
        data = _merge(data, loaded)
    _replace_data_source(data, overrides)
    for item in overrides:
        apply_override(data, item)
    return validate_config(data, source=str(path) if path else "config")


def _replace_data_source(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> None:
    """A data source named on the command line replaces the config's: ``data.manifest=PATH`` on a
    config that synthesises its cohort trains on PATH instead (and ``data.synth.*`` vice versa)."""
    keys = {item.partition("=")[0].strip() for item in overrides}
    section = data.get("data")
    if not isinstance(section, dict):
        return
    if "data.manifest" in keys and not any(k.startswith("data.synth") for k in keys):
        section.pop("synth", None)
    elif any(k.startswith("data.synth") for k in keys) and "data.manifest" not in keys:
        section.pop("manifest", None)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (``1e-4``, ``[2,4]``)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. train.epochs=10.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is a value, not a section.")
        node = child
    node[parts[-1]] = value


def validate_config(data: dict[str, Any], source: str = "config") -> Config:
    """Validate a nested dict into a Config; errors name the dotted key and what to do."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            hint = _suggest(error["loc"])
            raise ConfigError(f"{source}: unknown key {key!r}{hint}.") from None
        value = error.get("input")
        message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
        raise ConfigError(f"{source}: {key}={value!r}: {message}.") from None


def _suggest(loc: tuple) -> str:
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None) if field else None
        candidates = [a for a in getattr(annotation, "__args__", (annotation,))
                      if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return ""
        model = candidates[0]
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    prefix = ".".join(str(p) for p in loc[:-1])
    if close:
        return f" (did you mean {prefix + '.' if prefix else ''}{close[0]}?)"
    return f"; known keys: {', '.join(model.model_fields)}"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
