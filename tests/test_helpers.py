"""The suite's own helpers (tests/conftest.py): a bit-for-bit comparison that misses a difference
would let every `kernels` test pass whatever the kernels do."""

import math
import re

import pytest
import torch
from conftest import assert_bits_equal, first_difference


def test_first_difference_sees_every_bit():
    a = torch.tensor([1.0, -0.0, float("nan")])
    assert first_difference(a, a.clone()) is None  # the same NaN is the same bits
    assert first_difference(a, torch.tensor([1.0, 0.0, float("nan")])).startswith("[1]: -0.0 vs 0.0")
    one_ulp = torch.tensor([1.0], dtype=torch.float64).nextafter(torch.tensor([2.0], dtype=torch.float64))
    assert first_difference(torch.ones(1, dtype=torch.float64), one_ulp) is not None
    assert first_difference(torch.zeros(2), torch.zeros(3)) == "the value: torch.float32 (2,) vs torch.float32 (3,)"
    assert first_difference(torch.zeros(2), torch.zeros(2, dtype=torch.float64)) is not None
    assert first_difference(0.0, -0.0) is not None and first_difference(math.nan, math.nan) is None
    row = (1, 0.5, None, "ok")
    assert first_difference({"r": [row]}, {"r": [row]}) is None
    assert first_difference({"r": [row]}, {"r": [(1, math.nextafter(0.5, 1), None, "ok")]}).startswith("['r'][0][1]: 0.5 vs")
    assert first_difference([row], [row, row]) == "the value: 1 items vs 2"
    assert first_difference({"a": 1}, {"b": 1}) is not None and first_difference(["ok"], ["failed"]) is not None


def test_assert_bits_equal_names_what_where_and_the_platform():
    assert_bits_equal([torch.ones(3)], [torch.ones(3)], "same")
    with pytest.raises(AssertionError, match=r"^x: not bit-identical at \[0\]\[2\]: 1\.0 vs 2\.0 \(1 of 3 elements differ\); "
                                             rf"platform: .+ {torch.backends.cpu.get_cpu_capability()} torch {re.escape(str(torch.__version__))} "):
        assert_bits_equal([torch.ones(3)], [torch.tensor([1.0, 1.0, 2.0])], "x")


def test_the_suite_runs_without_terminal_variables_and_without_the_network():
    """conftest.pytest_configure: what CI services set for terminals is gone while tests run, and
    a download no test arranged goes to a closed local port."""
    import os

    from conftest import NO_NETWORK, TERMINAL_ENV

    assert not [name for name in TERMINAL_ENV if name in os.environ]
    assert all(os.environ.get(k) == v for k, v in NO_NETWORK.items())
