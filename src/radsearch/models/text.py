"""Report encoders that work offline, behind one interface: texts → feature vectors.

Three kinds, chosen by a spec string (``build_text_encoder``):

* ``tfidf`` (default): word 1–2-gram TF-IDF (scikit-learn) fitted on the training reports, then a
  trainable MLP. Short radiology reports are highly label-informative; this trains in seconds on CPU
  and needs neither ``transformers`` nor ``tokenizers``.
* ``bert-scratch``: a WordPiece vocabulary fitted with ``tokenizers`` on the training reports and a
  small ``transformers`` BERT (a few layers) trained from random initialisation.
* ``hf:/local/path``: any local Hugging Face checkpoint (``local_files_only=True``, never the hub),
  with an explicit ``trust_remote_code`` setting, CLS or mean pooling and ``max_length``.

Every encoder is an ``nn.Module`` whose ``forward(list[str])`` returns ``[B, out_dim]`` float
features; ``fit(reports)`` prepares its vocabulary from the training reports (a no-op for ``hf:``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from radsearch.errors import ConfigError

POOLING = ("cls", "mean")


class TextEncoder(nn.Module):
    """Interface: ``fit`` on training reports, then ``forward(texts) -> [B, out_dim]``."""

    kind = "base"
    out_dim: int

    def fit(self, reports: Sequence[str]) -> TextEncoder:
        return self

    def forward(self, texts: Sequence[str]) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> dict[str, object]:
        """Settings written into every result file."""
        return {"kind": self.kind, "out_dim": self.out_dim}

    def _device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")


# ------------------------------------------------------------------ TF-IDF → MLP
class TfidfMLPEncoder(TextEncoder):
    """TF-IDF of word 1–2-grams (fitted on the training reports) → Linear-ReLU-Linear."""

    kind = "tfidf"

    def __init__(self, out_dim: int = 512, hidden: int = 512, max_features: int = 20000,
                 min_df: int = 1, dropout: float = 0.1):
        super().__init__()
        self.out_dim, self.hidden = int(out_dim), int(hidden)
        self.max_features, self.min_df, self.dropout = int(max_features), int(min_df), dropout
        self.vectorizer = None
        self.mlp: nn.Module | None = None

    def fit(self, reports: Sequence[str]) -> TfidfMLPEncoder:
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [r for r in reports if r and r.strip()]
        if not texts:
            raise ConfigError("text.encoder=tfidf: no training report has text; give a cohort "
                              "with a non-empty 'report' column or train image-only (p=0).")
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), lowercase=True, sublinear_tf=True,
                                          max_features=self.max_features, min_df=self.min_df)
        self.vectorizer.fit(texts)
        n_terms = len(self.vectorizer.vocabulary_)
        self.mlp = nn.Sequential(nn.Linear(n_terms, self.hidden), nn.ReLU(),
                                 nn.Dropout(self.dropout), nn.Linear(self.hidden, self.out_dim))
        return self

    @property
    def n_terms(self) -> int:
        return 0 if self.vectorizer is None else len(self.vectorizer.vocabulary_)

    def tfidf(self, texts: Sequence[str]) -> torch.Tensor:
        """Dense TF-IDF rows (L2-normalised, as scikit-learn returns them)."""
        if self.vectorizer is None:
            raise ConfigError("text encoder tfidf: call fit(training reports) before encoding.")
        matrix = self.vectorizer.transform(list(texts)).astype(np.float32)
        return torch.from_numpy(matrix.toarray())

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.mlp(self.tfidf(texts).to(self._device()))

    def get_extra_state(self) -> dict:
        if self.vectorizer is None:
            return {}
        return {"vocabulary": {k: int(v) for k, v in self.vectorizer.vocabulary_.items()},
                "idf": self.vectorizer.idf_.tolist()}

    def set_extra_state(self, state: dict) -> None:
        """Rebuild the fitted vectorizer from a checkpoint (vocabulary + idf; no refit)."""
        if not state:
            return
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(ngram_range=(1, 2), lowercase=True, sublinear_tf=True,
                              vocabulary=state["vocabulary"])
        vec.fit(["x"])  # sets the fixed vocabulary; idf is overwritten just below
        vec.idf_ = np.asarray(state["idf"], dtype=np.float64)
        self.vectorizer = vec
        if self.mlp is None:
            self.mlp = nn.Sequential(nn.Linear(len(state["vocabulary"]), self.hidden), nn.ReLU(),
                                     nn.Dropout(self.dropout), nn.Linear(self.hidden, self.out_dim))

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "ngram_range": [1, 2], "n_terms": self.n_terms,
                "hidden": self.hidden}


# ------------------------------------------------------------------ transformers-based
def _require_transformers(spec: str):
    try:
        import transformers  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError:
        raise ConfigError(f"text.encoder={spec}: needs the optional 'text' extra (pip install "
                          "'radsearch[text]'); text.encoder=tfidf works without it.") from None


def _pool(hidden: torch.Tensor, attention: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class _TransformerEncoder(TextEncoder):
    """A tokenizer + a transformers model, pooled (CLS or masked mean) to one vector per text."""

    def __init__(self, pooling: str = "cls", max_length: int = 128):
        super().__init__()
        if pooling not in POOLING:
            raise ConfigError(f"text.pooling={pooling!r}; use one of {', '.join(POOLING)}.")
        if int(max_length) < 2:
            raise ConfigError(f"text.max_length={max_length} must be at least 2.")
        self.pooling, self.max_length = pooling, int(max_length)
        self.tokenizer = None
        self.model: nn.Module | None = None

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
        batch = {k: v.to(self._device()) for k, v in batch.items()}
        out = self.model(**batch)
        return _pool(out.last_hidden_state, batch["attention_mask"], self.pooling).float()

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "pooling": self.pooling, "max_length": self.max_length}


class ScratchBertEncoder(_TransformerEncoder):
    """WordPiece vocabulary fitted on the training reports + a small randomly initialised BERT."""

    kind = "bert-scratch"

    def __init__(self, vocab_size: int = 2000, hidden: int = 128, layers: int = 2, heads: int = 2,
                 pooling: str = "cls", max_length: int = 128):
        _require_transformers("bert-scratch")
        super().__init__(pooling, max_length)
        self.vocab_size, self.hidden, self.layers, self.heads = vocab_size, hidden, layers, heads
        self.out_dim = int(hidden)

    def fit(self, reports: Sequence[str]) -> ScratchBertEncoder:
        from tokenizers import BertWordPieceTokenizer
        from transformers import BertConfig, BertModel, BertTokenizerFast

        texts = [r for r in reports if r and r.strip()]
        if not texts:
            raise ConfigError("text.encoder=bert-scratch: no training report has text.")
        wordpiece = BertWordPieceTokenizer(lowercase=True)
        wordpiece.train_from_iterator(texts, vocab_size=self.vocab_size, min_frequency=1,
                                      show_progress=False)
        self.tokenizer = BertTokenizerFast(tokenizer_object=wordpiece._tokenizer,
                                           unk_token="[UNK]", sep_token="[SEP]",
                                           pad_token="[PAD]", cls_token="[CLS]",
                                           mask_token="[MASK]")
        config = BertConfig(vocab_size=wordpiece.get_vocab_size(), hidden_size=self.hidden,
                            num_hidden_layers=self.layers, num_attention_heads=self.heads,
                            intermediate_size=4 * self.hidden,
                            max_position_embeddings=max(self.max_length, 16))
        self.model = BertModel(config, add_pooling_layer=False)
        return self

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "vocab_size": self.vocab_size, "layers": self.layers,
                "heads": self.heads}


class HFLocalEncoder(_TransformerEncoder):
    """A local Hugging Face checkpoint (``hf:/path``), never downloaded."""

    kind = "hf"

    def __init__(self, path: str | os.PathLike, pooling: str = "cls", max_length: int = 128,
                 trust_remote_code: bool = False, freeze: bool = False):
        spec = f"hf:{path}"
        _require_transformers(spec)
        super().__init__(pooling, max_length)
        folder = Path(path)
        if not folder.is_dir():
            raise ConfigError(f"text.encoder={spec}: no such folder; give the local folder of a "
                              "Hugging Face checkpoint (config.json + weights + tokenizer files); "
                              "the hub is never contacted.")
        if not (folder / "config.json").is_file():
            raise ConfigError(f"text.encoder={spec}: {folder / 'config.json'} is missing; this "
                              "folder is not a Hugging Face checkpoint (save one with "
                              "save_pretrained).")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # no load report on stdout (e.g. an unused pooler)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=bool(trust_remote_code))
            self.model = AutoModel.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=bool(trust_remote_code))
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"text.encoder={spec}: cannot load the checkpoint ({first}); set "
                              "text.trust_remote_code=true only for a model that needs its own "
                              "code.") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        self.path, self.trust_remote_code, self.freeze = str(folder), bool(trust_remote_code), freeze
        self.out_dim = int(self.model.config.hidden_size)
        if freeze:
            self.model.requires_grad_(False)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "path": self.path,
                "trust_remote_code": self.trust_remote_code, "freeze": self.freeze}


# ------------------------------------------------------------------ factory
TEXT_ENCODERS = ("tfidf", "bert-scratch", "hf:/local/path")


def build_text_encoder(spec: str = "tfidf", reports: Sequence[str] | None = None, *,
                       out_dim: int = 512, pooling: str = "cls", max_length: int = 128,
                       trust_remote_code: bool = False, freeze: bool = False,
                       **options) -> TextEncoder:
    """The encoder named by ``spec``, fitted on ``reports`` (the training reports) when given."""
    spec = str(spec).strip()
    if spec == "tfidf":
        encoder: TextEncoder = TfidfMLPEncoder(out_dim=out_dim, **options)
    elif spec == "bert-scratch":
        encoder = ScratchBertEncoder(pooling=pooling, max_length=max_length, **options)
    elif spec.startswith("hf:"):
        encoder = HFLocalEncoder(spec[3:], pooling=pooling, max_length=max_length,
                                 trust_remote_code=trust_remote_code, freeze=freeze)
    else:
        raise ConfigError(f"text.encoder={spec!r}; use one of {', '.join(TEXT_ENCODERS)}.")
    if reports is not None:
        encoder.fit(reports)
    return encoder
