"""µGraph search: kernel level, then block level, pruned by abstract expressions, verified."""

from mirage.search.cache import search_cached
from mirage.search.checkpoint import CheckpointError, cache_key, code_fingerprint
from mirage.search.engine import SearchConfig, SearchResult, search

__all__ = ["CheckpointError", "SearchConfig", "SearchResult", "cache_key", "code_fingerprint",
           "search", "search_cached"]
