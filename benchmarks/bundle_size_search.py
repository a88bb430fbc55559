"""The bundle-size family of AMAs, searched exactly: a measurement of what it can earn.

    python benchmarks/bundle_size_search.py SETTING [--profiles 3000] [--test-profiles 20000]
        [--steps 0.3 0.1 0.03 0.01] [--seed 0] [--family {bundle-sizes,count-vectors}]

For additive bidders with weights 1, the AMA over every 0/1 allocation `a` (item j to owner
`o_j`, a bidder or nobody; owner `o` gets `k_o` items) with the boost

    b_a = sum_j c[o_j, j] + sum_o g[o, k_o]          (g[o, 0] = 0)

is the item-separable family (`g = 0`; separate Myerson at `c[nobody, j]` = the reserve)
plus a price for the size of each bundle. boost_structure.py finds that a trained 5x5
deterministic menu (7776 boosts) is this family up to its revenue. Its welfare maximizer is
a dynamic program over the bidders' item counts, `C(n + m, m)` states, so it is exact at sizes
whose allocations are far too many to enumerate (3x10: 4^10; 5x10: 6^10).

This script searches the family's symmetric members (`c[nobody, j]` the setting's
separate-Myerson reserve of item j plus one shift, `c[bidder, j] = 0`, one `g` for every
bidder, one for nobody: 2n + 1 numbers) by coordinate search on the exact revenue of
`--profiles` profiles (seed `--seed`) from separate Myerson (shift 0, g = 0), each step
size in turn, and reports the
exact revenue on `--test-profiles` other profiles (seed + 2). Exact in float64 NumPy: the
dynamic program's maximum and, for each bidder, its maximum without that bidder's values (the
AMA payments, docs/design.md §1); tests/benchmarks_test.py checks it against
`tf_ama.exact_outcome` on every allocation enumerated. A measurement for the revenue
frontier (benchmarks/README.md); the menu kind `"bundle-sizes"` (`tf_ama.core.bundle_sizes`)
holds the whole family (`c` and `g` per bidder) and trains it by `fit`: this exact search
of its symmetric members is a cross-check of that training.

`--family count-vectors` searches a larger family instead: one boost per count vector
`(k_1, ..., k_m)` (nobody holding the rest), the same for every ordering of the bidders,
`G[sorted counts]`, in place of `sum_o g[o, k_o]`. With items i.i.d., every deterministic
boost that is the same for every ordering of the items and of the bidders is such a `G` plus
item terms, so this search measures what the symmetric deterministic AMAs can earn at all
(the shift and one `G` per class but the empty one: 2x5 12 numbers, 5x5 19, 3x10 67). It
starts where the bundle-size search ends, a member of this family too.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np


def count_states(num_bidders, num_items):
    """`(states [S, m], predecessor [m, S])`: every vector of the bidders' item counts with sum
    <= n (state 0 is all zeros), and for each bidder the state with one item fewer for it
    (-1 if it has none)."""
    states = [s for s in itertools.product(range(num_items + 1), repeat=num_bidders)
              if sum(s) <= num_items]
    index = {s: t for t, s in enumerate(states)}
    predecessor = np.full((num_bidders, len(states)), -1)
    for t, s in enumerate(states):
        for i in range(num_bidders):
            if s[i]:
                predecessor[i, t] = index[s[:i] + (s[i] - 1,) + s[i + 1:]]
    return np.array(states).reshape(len(states), num_bidders), predecessor


def _maximize(values, c, terminal, tables, without=None):
    """The maximum of the boosted welfare over every allocation, `[P]`, with bidder `without`'s
    values left out; with `without` None also each bidder's value of a maximizer `[P, m]`.
    `terminal [S]` is the boost of each final count vector (state)."""
    states, predecessor = tables
    num_profiles, num_bidders, num_items = values.shape
    gains = np.concatenate([values, np.zeros((num_profiles, 1, num_items))], axis=1) + c
    if without is not None:
        gains[:, without] -= values[:, without]
    best = np.full((num_profiles, len(states)), -np.inf)
    best[:, 0] = 0.0
    choices = np.zeros((num_items, num_profiles, len(states)), np.int8)
    for j in range(num_items):
        options = [best + gains[:, num_bidders, j][:, None]]  # nobody: same counts
        for i in range(num_bidders):
            before = np.where(predecessor[i] >= 0, best[:, np.maximum(predecessor[i], 0)],
                              -np.inf)
            options.append(before + gains[:, i, j][:, None])
        options = np.stack(options)
        choices[j] = np.argmax(options, axis=0)
        best = np.max(options, axis=0)
    total = best + terminal
    state = np.argmax(total, axis=1)
    maximum = total[np.arange(num_profiles), state]
    if without is not None:
        return maximum
    won = np.zeros((num_profiles, num_bidders))
    for j in reversed(range(num_items)):
        choice = choices[j][np.arange(num_profiles), state]
        for i in range(num_bidders):
            mine = choice == i + 1
            won[mine, i] += values[mine, i, j]
            state[mine] = predecessor[i, state[mine]]
    return maximum, won


def size_terminal(g, states):
    """The boost `sum_o g[o, k_o]` of each count vector in `states [S, m]`."""
    num_bidders, num_items = states.shape[1], g.shape[1] - 1
    kept = num_items - states.sum(axis=1)
    return g[np.arange(num_bidders), states].sum(axis=1) + g[num_bidders, kept]


def payments(values, c, g, tables=None, terminal=None):
    """The AMA's payments `[P, m]` on float64 `values [P, m, n]` for boosts `c [m + 1, n]` and
    `g [m + 1, n + 1]` (or, given, `terminal [S]` per count vector in place of `g`):
    `p_i = max_a W_-i(a) - W_-i(a*)`."""
    tables = tables or count_states(*values.shape[1:])
    terminal = size_terminal(g, tables[0]) if terminal is None else terminal
    maximum, won = _maximize(values, c, terminal, tables)
    return np.stack([_maximize(values, c, terminal, tables, without=i) - (maximum - won[:, i])
                     for i in range(values.shape[1])], axis=1)


def symmetric(theta, reserves, num_bidders):
    """`(c, g)` of the symmetric member `theta = [shift, g_bidder(1..n), g_nobody(1..n)]`
    with the items' `reserves` `[n]`."""
    num_items = len(reserves)
    c = np.zeros((num_bidders + 1, num_items))
    c[num_bidders] = np.asarray(reserves) + theta[0]
    g = np.zeros((num_bidders + 1, num_items + 1))
    g[:num_bidders, 1:] = theta[1:num_items + 1]
    g[num_bidders, 1:] = theta[num_items + 1:]
    return c, g


def count_classes(states):
    """`(classes, class_of [S])`: the distinct sorted count vectors of `states [S, m]` (one
    per ordering of the bidders), class 0 the empty one, and each state's class."""
    keys = [tuple(sorted(state)) for state in states.tolist()]
    classes = sorted(set(keys), key=lambda key: (sum(key), key))
    index = {key: k for k, key in enumerate(classes)}
    return classes, np.array([index[key] for key in keys])


def member(theta, reserves, tables, family):
    """`(c, terminal)` of the searched member `theta` (`symmetric`, or for `family`
    "count-vectors" `[shift, G(class 1..)]` with `G` 0 at the empty count vector)."""
    num_bidders = tables[0].shape[1]
    if family == "bundle-sizes":
        c, g = symmetric(theta, reserves, num_bidders)
        return c, size_terminal(g, tables[0])
    c, _ = symmetric(np.zeros(2 * len(reserves) + 1), np.asarray(reserves) + theta[0],
                     num_bidders)
    return c, np.r_[0.0, theta[1:]][count_classes(tables[0])[1]]


def parameters(num_bidders, num_items, family):
    """The number of searched numbers of `family` at this size."""
    if family == "bundle-sizes":
        return 2 * num_items + 1
    return len(count_classes(count_states(num_bidders, num_items)[0])[0])


def as_count_vectors(theta, reserves, tables):
    """The count-vector member `[shift, G]` that is the bundle-size member `theta`."""
    _, terminal = member(theta, reserves, tables, "bundle-sizes")
    classes, class_of = count_classes(tables[0])
    first = [list(class_of).index(k) for k in range(len(classes))]  # a state of each class
    return np.r_[theta[0], terminal[first[1:]] - terminal[first[0]]]


def search(values, reserves, steps, log=print, family="bundle-sizes", start=None):
    """Coordinate search of the symmetric members of `family` on `values`, from `start`
    (default: separate Myerson, the items' `reserves`); returns `(theta, revenue on
    values)`."""
    num_bidders, num_items = values.shape[1:]
    tables = count_states(num_bidders, num_items)

    def revenue(theta):
        c, terminal = member(theta, reserves, tables, family)
        return float(payments(values, c, None, tables, terminal).sum(axis=1).mean())

    theta = (np.zeros(parameters(num_bidders, num_items, family)) if start is None
             else np.asarray(start, np.float64))
    current = revenue(theta)
    for step in steps:
        improved = True
        while improved:
            improved = False
            for k, sign in itertools.product(range(len(theta)), (1, -1)):
                trial = theta.copy()
                trial[k] += sign * step
                value = revenue(trial)
                if value > current + 1e-9:
                    theta, current, improved = trial, value, True
        log(f"step {step}: {current:.4f}")
    return theta, current


def main(argv=None):
    """Prints and returns the report (a dict; module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("setting")
    parser.add_argument("--profiles", type=int, default=3000)
    parser.add_argument("--test-profiles", type=int, default=20_000)
    parser.add_argument("--steps", type=float, nargs="+", default=[0.3, 0.1, 0.03, 0.01])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", choices=("bundle-sizes", "count-vectors"),
                        default="bundle-sizes")
    args = parser.parse_args(argv)

    import tf_ama
    from tf_ama.data.reserves import separate_reserves

    setting = tf_ama.get_setting(args.setting)
    if setting.demand != "additive":
        raise SystemExit(f"{args.setting}: the bundle-size family is for additive bidders.")
    reserves = np.asarray(separate_reserves(setting), np.float64)
    sample = lambda seed, size: np.asarray(setting.sample(size, seed), np.float64)
    start = time.perf_counter()
    tables = count_states(setting.num_bidders, setting.num_items)
    values = sample(args.seed, args.profiles)
    theta, train = search(values, reserves, args.steps)
    if args.family == "count-vectors":  # from the bundle-size member found, which it holds
        theta, train = search(values, reserves, args.steps, family=args.family,
                              start=as_count_vectors(theta, reserves, tables))
    test_values = sample(args.seed + 2, args.test_profiles)
    spent = time.perf_counter() - start
    name = args.family.replace("-", " ")
    revenues = {label: payments(test_values, c, None, tables, terminal).sum(axis=1)
                for label, point in (("separate Myerson", np.zeros(len(theta))), (name, theta))
                for c, terminal in [member(point, reserves, tables, args.family)]}
    gain = revenues[name] - revenues["separate Myerson"]
    report = {"setting": args.setting, "family": args.family,
              "theta": [round(float(t), 6) for t in theta],
              "search_revenue": train, "seconds": round(spent, 1),
              "test_revenue": float(revenues[name].mean()),
              "separate_myerson": float(revenues["separate Myerson"].mean()),
              "gain_stderr": float(gain.std(ddof=1) / np.sqrt(len(gain)))}
    print(f"{args.setting}: {name} {report['test_revenue']:.4f}, separate Myerson "
          f"{report['separate_myerson']:.4f} (paired gain standard error "
          f"{report['gain_stderr']:.4f}) on {args.test_profiles} profiles of seed "
          f"{args.seed + 2}; searched on {args.profiles} profiles in {spent:.0f} s")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
