"""The benchmarks' verdicts (bench/common.py): what RESULTS.md calls met, missed or undecided rests on these."""

import importlib.util
import math
import random
import statistics
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

_spec = importlib.util.spec_from_file_location("bench_common", Path(__file__).resolve().parent.parent / "bench" /
                                               "common.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_common"] = bench  # its dataclasses look their module up there
_spec.loader.exec_module(bench)


def _below(n: int, k: int) -> float:
    """P(X <= k) for X ~ binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


@pytest.mark.parametrize("n", range(6, 80))
def test_median_interval_has_the_ranks_the_binomial_gives(n):
    lo, hi = bench.median_ci(list(range(n)))
    k = lo
    assert hi == n - 1 - k  # symmetric ranks
    assert 1 - 2 * _below(n, k) >= 0.95  # covers the median at least 95 % of the time
    assert 1 - 2 * _below(n, k + 1) < 0.95  # and is the narrowest such interval


@pytest.mark.parametrize("n", [0, 1, 5])
def test_too_few_values_have_no_interval(n):
    lo, hi = bench.median_ci([1.0] * n)
    assert lo != lo and hi != hi  # NaN


@given(st.lists(st.floats(-1e6, 1e6), min_size=6, max_size=60))
def test_the_interval_holds_the_median_and_is_made_of_the_values(xs):
    lo, hi = bench.median_ci(xs)
    assert lo <= statistics.median(xs) <= hi
    assert lo in xs and hi in xs


def test_the_interval_covers_the_true_median_of_skewed_noise():
    """Stalls on a shared machine only ever add time: exponential noise over a fixed cost. Over many simulated
    runs of 12 repetitions, the interval holds the distribution's median at least ~95 % of the time."""
    rng = random.Random(5)
    true_median = 1.0 + 0.1 * math.log(2)
    trials = 4000
    hits = 0
    for _ in range(trials):
        lo, hi = bench.median_ci([1.0 + rng.expovariate(10) for _ in range(12)])
        hits += lo <= true_median <= hi
    assert hits / trials >= 0.94


@pytest.mark.parametrize("pairs, verdict", [
    ([1.00, 1.01, 1.02, 1.03, 1.04, 1.02], "yes"),  # the whole interval within 1.05
    ([1.06, 1.07, 1.08, 1.09, 1.10, 1.07], "NO"),  # the whole interval beyond
    ([1.00, 1.03, 1.05, 1.06, 1.08, 1.10], "undecided"),  # across the limit
])
def test_lower_is_better_verdicts(pairs, verdict):
    t = bench.target("cpu", 99.0, 1.05, False, "x", pairs)
    assert t["verdict"] == verdict
    assert t["met"] == (verdict == "yes")
    assert t["value"] == statistics.median(pairs)  # the pairs' median, not the value passed
    assert t["ci"] == bench.median_ci(pairs)


def test_higher_is_better_verdicts():
    assert bench.target("flows", 0, 0.95, True, "x", [0.96, 0.97, 0.99, 1.0, 0.98, 0.97])["verdict"] == "yes"
    assert bench.target("flows", 0, 0.95, True, "x", [0.80, 0.85, 0.90, 0.94, 0.88, 0.9])["verdict"] == "NO"
    assert bench.target("flows", 0, 0.95, True, "x", [0.80, 0.85, 0.90, 0.99, 0.96, 0.97])["verdict"] == "undecided"


def test_without_enough_pairs_the_value_decides_and_the_table_says_so():
    few = bench.target("cpu", 1.04, 1.05, False, "x", [1.2, 1.3, 1.4])
    assert few["verdict"] == "yes" and few["ci"] is None
    assert bench.target("rss", float("nan"), 10, False, " MB")["verdict"] == "NO"
    table = bench.targets_table([few, bench.target("cpu", 0, 1.05, False, "x", [1.0, 1.03, 1.05, 1.06, 1.08, 1.1])])
    assert "3 reps: too few" in table and "undecided" in table
    # results written before verdicts existed (run.py --only keeps other scenarios' JSON) still print
    assert "**NO**" in bench.targets_table([{"target": "old", "value": 2.0, "limit": "<= 1", "met": False}])
