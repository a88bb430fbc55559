"""tf_ama.utils.checks (argument checks) and tf_ama.utils.seeds (the seed policy)."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tf_ama.utils import checks, seeds


@given(st.integers(-10**6, 10**6), st.integers(-10, 10))
def test_integer_accepts_exactly_the_ints_in_range(value, minimum):
    if value >= minimum:
        assert checks.integer("n", value, minimum=minimum) == value
        assert type(checks.integer("n", np.int64(value), minimum=minimum)) is int
    else:
        with pytest.raises(ValueError, match=rf"^`n` must be an int >= {minimum}; got "):
            checks.integer("n", value, minimum=minimum)


@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e6, 1e6))
def test_number_accepts_exactly_the_finite_reals_above_the_bound(value, above):
    if math.isfinite(value) and value > above:
        assert checks.number("t", value, above=above) == value
        assert type(checks.number("t", np.float64(value), above=above)) is float
    else:
        with pytest.raises(ValueError, match=r"^`t` must be a finite number > "):
            checks.number("t", value, above=above)


@pytest.mark.parametrize("check,value", [
    (lambda v: checks.integer("n", v, minimum=0), True),      # booleans are never numbers
    (lambda v: checks.integer("n", v), 2.0),                   # nor floats ints
    (lambda v: checks.integer("n", v, maximum=3), 4),
    (lambda v: checks.number("t", v), False),
    (lambda v: checks.number("t", v), "1.0"),                  # nothing parsed or coerced
    (lambda v: checks.number("t", v, minimum=0, maximum=1), 1.5),
    (lambda v: checks.boolean("b", v), 1),
    (lambda v: checks.boolean("b", v), "True"),
    (lambda v: checks.choice("c", v, ("a", "b")), "A"),
    (lambda v: checks.choice("c", v, (0, 1)), False),          # False == 0, still refused
    (lambda v: checks.seed("s", v), -1),
    (lambda v: checks.seed("s", v), 2**31),
    (lambda v: checks.string("name", v), ""),
])
def test_bad_values_are_refused_naming_the_argument(check, value):
    with pytest.raises(ValueError, match=r"^`[a-z]+` must be "):
        check(value)


def test_optional_accepts_none_and_says_so_when_refusing():
    assert checks.optional(checks.integer, "k", None, minimum=1) is None
    assert checks.optional(checks.integer, "k", 3, minimum=1) == 3
    with pytest.raises(ValueError, match=r"^`k` must be None or an int >= 1; got 0\.$"):
        checks.optional(checks.integer, "k", 0, minimum=1)


def test_renamed_maps_the_old_keyword_with_a_warning_and_refuses_both():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checks.renamed("old", checks.RENAMED, "new", 5) == 5  # not used: no warning
    with pytest.warns(DeprecationWarning, match="`old` is deprecated; it is now called `new`"):
        assert checks.renamed("old", 7, "new", None) == 7
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="Give `new` only"):
        checks.renamed("old", 7, "new", 7)


def test_the_seed_policy_keeps_validation_and_evaluation_apart():
    for seed in (0, 1, 1000):
        used = {seed, seeds.validation_seed(seed), seeds.evaluation_seed(seed)}
        assert len(used) == 3
    assert seeds.validation_seed(0) == 1 and seeds.evaluation_seed(0) == 2
