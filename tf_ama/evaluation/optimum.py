r"""The most revenue any strategyproof mechanism earns: known optima, and linear programs.

    best = tf_ama.evaluation.optimum.best_possible("unit_demand_2x4_spherical")
    best.revenue, best.label          # 2.349..., "optimum of any strategyproof mechanism ..."
    optimal_mechanism("unit_demand_2x4_spherical", deterministic=True).revenue   # 1.907...

`best_possible(setting)` is what `tf_ama.evaluate` and `tf-ama evaluate` print as "x % of the
best possible": for a prior on finitely many types, the optimum of the linear program below
(unasked up to `REPORTED_PROFILES` profiles; `optimal_mechanism` computes larger ones);
otherwise a built-in setting's anchor (`tf_ama.data.settings.ANCHORS`) when it is a proven
optimum (one bidder and two items, one item and i.i.d. bidders); else None (no optimum is
known for additive 2x2 U[0, 1] and up: `reference(setting)` is then the anchor printed
beside the result, e.g. the paper's number).

**The linear program** (docs/design.md §4). Bidders are independent, bidder `i` on types
`t = 0..P-1` with values `v_i(t)` (`tf_ama.data.distributions.bidder_types`); a profile `s`
is one type per bidder, `P^m` of them with probability `q(s)`. A mechanism is an allocation
`x[s, i, j]` (the probability that bidder `i` gets item `j`) and a payment `p[s, i]`; the
revenue `sum_s q(s) sum_i p[s, i]` and every constraint are linear:

* feasibility: `0 <= x <= 1`; each item to at most one bidder, `sum_i x[s, i, j] <= 1`; a
  unit-demand bidder at most one item, `sum_j x[s, i, j] <= 1` (a doubly substochastic
  matrix is a lottery over matchings, so the marginals describe a lottery that can be served);
* individual rationality: `v_i . x[s, i] - p[s, i] >= 0`, with `v_i` the values of `i`'s
  type in `s`;
* dominant-strategy incentive compatibility: for every profile `s`, bidder `i` and other
  type `t` of `i`, with `s'` the profile `s` where `i` reports `t`,
  `v_i . x[s, i] - p[s, i] >= v_i . x[s', i] - p[s', i]`.

Payments are free (a mechanism may pay a bidder). The optimum bounds the revenue of every
strategyproof, IR mechanism on the prior, AMAs included; `deterministic=True` makes `x`
0/1 (a mixed-integer program): the best deterministic mechanism. Solved by HiGHS
(`scipy.optimize.linprog`, `scipy.optimize.milp`), in units of the largest value.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tf_ama.data import data_files
from tf_ama.data.distributions import bidder_types, finite_support, type_profiles
from tf_ama.data.settings import ANCHORS, Setting, get_setting
from tf_ama.utils import checks

# Profiles of the largest linear program `optimal_mechanism` sets up by default, and of the
# largest that `best_possible` (every report) solves unasked. Measured on 2 cores, random
# unit-demand 2x4 priors: 64 profiles 0.5 s, 256 about 1 s, 1024 about a minute (the
# incentive constraints grow as profiles x types).
MAX_PROFILES = 1024
REPORTED_PROFILES = 256


@dataclasses.dataclass(frozen=True)
class Optimum:
    """The optimal mechanism of a discrete prior (`optimal_mechanism`).

    Attributes:
      revenue: its expected revenue, `sum_s probabilities[s] * payments[s].sum()`.
      deterministic: whether allocations were restricted to 0/1.
      profiles: `[S, m, n]` every type profile (the order of
        `tf_ama.data.distributions.finite_support`); probabilities: `[S]`.
      allocations: `[S, m, n]` the probability that bidder `i` gets item `j`;
        payments: `[S, m]`.
    """

    revenue: float
    deterministic: bool
    profiles: np.ndarray
    probabilities: np.ndarray
    allocations: np.ndarray
    payments: np.ndarray


@dataclasses.dataclass(frozen=True)
class Reference:
    """The best revenue possible in a setting (`best_possible`), and where it comes from."""

    revenue: float
    label: str


def best_possible(setting):
    """The most revenue any strategyproof, IR mechanism earns in `setting` (a `Setting` or a
    built-in name), as a `Reference`, where it is known or computable; else None."""
    setting = get_setting(setting)
    if data_files.is_empirical(setting):  # rows of a file: no prior to optimize for
        return None
    try:
        values, _ = bidder_types(setting.distribution_fn())
    except ValueError:  # not a finite type space
        anchor = ANCHORS.get(setting.name)
        return reference(setting) if anchor is not None and anchor.optimum else None
    profiles = values.shape[1] ** setting.num_bidders
    if profiles > REPORTED_PROFILES:  # optimal_mechanism(setting) computes it when asked
        return None
    optimum = optimal_mechanism(setting)
    return Reference(optimum.revenue, "optimum of any strategyproof mechanism (linear "
                     f"program over its {profiles} type profiles)")


def reference(setting):
    """The anchor of a built-in setting (`ANCHORS`: a proven optimum or a published revenue),
    as a `Reference`; None for any other setting, also one named like a built-in."""
    setting = get_setting(setting)
    anchor = ANCHORS.get(setting.name)
    if anchor is None or not _is_builtin(setting):
        return None
    return Reference(anchor.revenue, anchor.label)


def optimal_mechanism(setting, deterministic=False, max_profiles=MAX_PROFILES):
    """The revenue-optimal strategyproof, IR mechanism of `setting`'s discrete prior (the
    module's linear program; mixed-integer with `deterministic=True`), as an `Optimum`.
    Refuses a prior that is not on finitely many types per bidder, and one of more than
    `max_profiles` profiles."""
    from scipy import optimize, sparse

    setting = get_setting(setting)
    deterministic = checks.boolean("deterministic", deterministic)
    max_profiles = checks.integer("max_profiles", max_profiles, minimum=1)
    dist = setting.distribution_fn(tf.float64)
    try:
        values, _ = bidder_types(dist)
    except ValueError as error:
        raise ValueError(f"setting {setting.name!r}: the optimal mechanism is computed for a "
                         f"prior on finitely many types per bidder ({error})") from None
    m, num_types, n = values.shape
    if num_types ** m > max_profiles:
        raise ValueError(f"setting {setting.name!r} has {num_types}**{m} = {num_types ** m:,} "
                         f"type profiles, more than max_profiles={max_profiles:,}: raise "
                         "max_profiles (the program grows with the profiles).")
    profiles, probabilities = finite_support(dist, max_profiles)  # [S, m, n], [S]
    choice = type_profiles(num_types, m)  # [S, m]: each profile's types, in the same order
    num_profiles = len(choice)
    # Solved in units of the largest value (the solver's tolerances are absolute), so that
    # the optimum scales with the values; an all-zero prior earns 0.
    unit = float(profiles.max()) or 1.0
    scaled = profiles / unit

    x_index = np.arange(num_profiles * m * n).reshape(num_profiles, m, n)
    p_index = num_profiles * m * n + np.arange(num_profiles * m).reshape(num_profiles, m)
    rows, cols, data, bounds = [], [], [], []

    def constraint(columns, coefficients, bound):
        row = len(bounds)
        rows.extend([row] * len(columns))
        cols.extend(columns)
        data.extend(coefficients)
        bounds.append(bound)

    for s in range(num_profiles):
        for j in range(n):  # each item to at most one bidder
            constraint(x_index[s, :, j], np.ones(m), 1.0)
        for i in range(m):
            if setting.demand == "unit_demand":  # at most one item
                constraint(x_index[s, i], np.ones(n), 1.0)
            own = scaled[s, i]
            # IR: p - v . x <= 0
            constraint([*x_index[s, i], p_index[s, i]], [*-own, 1.0], 0.0)
            # IC: (v . x' - p') - (v . x - p) <= 0 for each report t of i
            stride = num_types ** (m - 1 - i)  # type_profiles: the last bidder fastest
            for t in range(num_types):
                if t == choice[s, i]:
                    continue
                other = s + (t - choice[s, i]) * stride
                constraint([*x_index[other, i], p_index[other, i], *x_index[s, i],
                            p_index[s, i]], [*own, -1.0, *-own, 1.0], 0.0)
    matrix = sparse.csr_array((data, (rows, cols)), shape=(len(bounds), p_index.max() + 1))
    objective = np.concatenate([np.zeros(x_index.size),
                                -np.repeat(probabilities, m)])  # maximize the revenue
    lower = np.concatenate([np.zeros(x_index.size), np.full(p_index.size, -np.inf)])
    upper = np.concatenate([np.ones(x_index.size), np.full(p_index.size, np.inf)])
    if deterministic:
        result = optimize.milp(
            objective, constraints=optimize.LinearConstraint(matrix, -np.inf, bounds),
            integrality=np.concatenate([np.ones(x_index.size), np.zeros(p_index.size)]),
            bounds=optimize.Bounds(lower, upper), options={"mip_rel_gap": 1e-9})
    else:
        result = optimize.linprog(objective, A_ub=matrix, b_ub=bounds,
                                  bounds=np.stack([lower, upper], axis=1), method="highs")
    if result.status != 0:
        raise RuntimeError(f"setting {setting.name!r}: the optimal mechanism's program was not "
                           f"solved ({result.message}).")
    allocations = result.x[x_index]  # within [0, 1] up to the solver's tolerance
    payments = result.x[p_index] * unit
    return Optimum(float(probabilities @ payments.sum(axis=1)), deterministic, profiles,
                   probabilities, allocations, payments)


def _is_builtin(setting: Setting) -> bool:
    """Whether `setting` is the built-in of its name (an anchor is for that one only)."""
    try:
        return get_setting(setting.name) == setting
    except ValueError:
        return False
