"""µGraph search: kernel level, then block level, pruned by abstract expressions, verified."""

from mirage.search.engine import SearchConfig, SearchResult, cache_key, search, search_cached

__all__ = ["SearchConfig", "SearchResult", "cache_key", "search", "search_cached"]
