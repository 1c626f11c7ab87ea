"""Fingerprints of the library's own source, for caches whose answers depend on the code.

A cached answer (a search's verified candidates, a generated kernel) is only as good as the code
that produced it. A hand-bumped version string is forgotten as often as it is bumped, so the
caches are keyed instead by a hash of the source files that decide the answer: any edit to them
is a new key, and an answer from other code is never served.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent  # the mirage package


@functools.cache
def source_fingerprint(*packages: str) -> str:
    """SHA-256 (24 hex digits) over the paths and bytes of the ``.py`` files of the named
    subpackages of ``mirage``, in sorted order; computed once per process and argument list."""
    h = hashlib.sha256()
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            h.update(path.relative_to(ROOT.parent).as_posix().encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:24]
