"""radsearch: content-based X-ray retrieval (forensic matching and diagnostic retrieval)."""

from radsearch.errors import RadsearchError

__version__ = "0.1.0"
__all__ = ["RadsearchError", "__version__"]
