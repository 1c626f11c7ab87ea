"""``mirage.profile.timing`` on the CPU: the module imports without CUDA; summaries are right."""

from __future__ import annotations

import pytest

from mirage.profile import METHOD, Timing
from mirage.profile.timing import summarize


def test_summary_quantiles():
    t = summarize([5.0, 1.0, 3.0, 2.0, 4.0], calls_per_sample=128)
    assert isinstance(t, Timing)
    assert t.method == METHOD == "cudagraph-events-rotated"
    assert t.median_us == 3.0
    assert t.p10_us == pytest.approx(1.4)
    assert t.p90_us == pytest.approx(4.6)
    assert t.samples_us == (5.0, 1.0, 3.0, 2.0, 4.0)
    assert t.calls_per_sample == 128


def test_summary_needs_samples():
    with pytest.raises(ValueError):
        summarize([], 1)
