"""Embedding networks for retrieval: ``create_model(name, embedding_dim, in_chans, weights)``."""

from radsearch.models.backbones import MODELS, EmbeddingNet, create_model

__all__ = ["MODELS", "EmbeddingNet", "create_model"]
