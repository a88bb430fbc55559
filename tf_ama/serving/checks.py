"""Checks of what TF Serving answers, shared by `RestClient` and `GrpcClient`.

A served outcome is money: the clients return it only if it is well formed and consistent
with the request, and otherwise raise `ServingError` naming the field, what was expected and
what came back. `check_outcome` and `check_menu` take the outputs as the transport decoded
them: numpy arrays (gRPC tensors) or JSON values (REST). Either way:

* shapes: `allocation` `[batch, m, n]`, `payments` `[batch, m]`, `menu_index` `[batch]`, with
  batch, m and n those of the bids sent; menu `allocations` `[K, m, n]`, `boosts` `[K]`,
  `bidder_weights` `[m]`, K >= 1;
* types: float64 tensors (gRPC) or JSON numbers (REST) for the real-valued outputs; integer
  tensors or JSON integers for `menu_index` (never a float, a bool, a string or null);
* allocations finite, in [0, 1] and feasible (each item's shares over the bidders sum to at
  most `1 + FEASIBILITY_TOLERANCE`);
* payments finite, >= 0 and individually rational: at most the value of the returned
  allocation at the bids, `sum_j allocation[b, i, j] * bids[b, i, j]`, up to
  a relative `IR_TOLERANCE` (the server guarantees it exactly; the tolerance absorbs a REST
  bid parsed one ulp off and the rounding of the value computed here, both relative to the
  value: a payment for a value of 0 must be 0);
* `menu_index` >= 0, and < K when the client knows the menu size K (K + (m + 1)^n with the
  item-separable family);
* menu boosts finite with `|boost| <= MAX_ABS_BOOST`, bidder weights in
  `[MIN_BIDDER_WEIGHT, MAX_BIDDER_WEIGHT]` (`tf_ama.core.exactness`);
* a model with the item-separable family (`tf_ama.core.separable`): menu `separable_boosts`
  `[m + 1, n]`, finite with `sum_j max_o |c[o, j]| <= MAX_ABS_BOOST`; outcome `owners`
  `[batch, n]` integers, per profile either all -1 (an explicit entry) or owner codes in
  `[0, m]` (0 nobody, `i + 1` bidder `i`) that are exactly the returned allocation;
* a model with the bundle-size family (`tf_ama.core.bundle_sizes`): also menu `size_boosts`
  `[m + 1, n + 1]`, finite with the sum above plus `sum_o max_k |g[o, k]| <= MAX_ABS_BOOST`.
"""

from __future__ import annotations

import numpy as np

from tf_ama.core.exactness import (MAX_ABS_BOOST, MAX_BIDDER_WEIGHT, MAX_EXACT_INTEGER,
                                   MIN_BIDDER_WEIGHT)

FEASIBILITY_TOLERANCE = 1e-9
# Relative: REST may deliver a bid one ulp (2**-52) off, and the server's float64 value and
# this one round differently by at most a few ulps per item; 2**-40 covers 1000 items.
IR_TOLERANCE = 2.0**-40
# The exported signatures (`tf_ama.serving.export`) that the clients call.
SERVING_SIGNATURE = "serving_default"
MENU_SIGNATURE = "menu"
OUTPUTS = ("allocation", "payments", "menu_index")
MENU_OUTPUTS = ("allocations", "boosts", "bidder_weights")


class ServingError(RuntimeError):
    """The server refused a request, could not be reached, or answered something malformed;
    `status` is the HTTP status or gRPC status code name (None for a malformed answer),
    `message` the server's error message or what is wrong with the answer."""

    def __init__(self, message, status=None):
        super().__init__(f"{message} (status {status})" if status is not None else message)
        self.message = message
        self.status = status


def malformed(field, expected, got):
    """The ServingError for a malformed answer: names the field, what was expected and got."""
    return ServingError(f"malformed response from the server: `{field}` must be {expected}; "
                        f"got {got}")


def json_type(value):
    """The JSON name of a decoded value's type, for error messages."""
    names = {type(None): "null", bool: "a boolean", int: "an integer", float: "a number",
             str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _at(field, index):
    return field + "".join(f"[{i}]" for i in index)


def to_array(field, value, integer=False):
    """`value` as float64 (or int64 if `integer`) numpy, or a ServingError.

    A numpy array (a decoded gRPC tensor) must be float64 (any integer dtype if `integer`):
    a float32 answer is a different, rounded outcome. Anything else is a decoded JSON value
    and must be a regularly nested list of JSON numbers (integers if `integer`).
    """
    kind = "integers" if integer else "numbers"
    if isinstance(value, np.ndarray):
        if integer and (not np.issubdtype(value.dtype, np.integer) or value.dtype == bool):
            raise malformed(field, "an integer tensor", f"dtype {value.dtype}")
        if not integer and value.dtype != np.float64:
            raise malformed(field, "a float64 tensor", f"dtype {value.dtype}")
        return value.astype(np.int64 if integer else np.float64, copy=False)
    try:
        array = np.array(value, dtype=object)
    except ValueError as error:
        raise malformed(field, f"a nested list of {kind}", f"irregular nesting ({error})") from None
    allowed = (int,) if integer else (int, float)  # not bool: True is not a number here
    bad = np.asarray(np.frompyfunc(lambda leaf: type(leaf) not in allowed, 1, 1)(array), bool)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0]) if array.ndim else ()
        leaf = array[index]
        problem = "irregular nesting" if isinstance(leaf, list) else json_type(leaf)
        raise malformed(field, f"a nested list of JSON {kind}", f"{problem} at {_at(field, index)}")
    inexact = np.asarray(np.frompyfunc(lambda leaf: type(leaf) is int and abs(leaf) > MAX_EXACT_INTEGER,
                                       1, 1)(array), bool)
    if not integer and np.any(inexact):  # float64 would round it
        index = tuple(int(i) for i in np.argwhere(inexact)[0]) if array.ndim else ()
        raise malformed(field, "numbers that float64 holds exactly", f"the integer "
                        f"{array[index]} at {_at(field, index)}, beyond 2**53")
    try:
        return array.astype(np.int64 if integer else np.float64)
    except OverflowError:
        raise malformed(field, f"{kind} that fit {'int64' if integer else 'float64'}",
                        "a larger one") from None


def _shaped(field, array, shape):
    if array.size == 0 and 0 in shape:
        return array.reshape(shape)  # JSON `[]` carries no shape
    if array.shape != tuple(shape):
        raise malformed(field, f"of shape {list(shape)}", f"shape {list(array.shape)}")
    return array


def _first(field, mask, array):
    index = tuple(int(i) for i in np.argwhere(mask)[0])
    return f"{array[index].item()!r} at {_at(field, index)}"


def _check_allocation(field, allocation):
    """Finite, in [0, 1], and feasible: summed over the bidders (axis 1), at most 1 + tol."""
    outside = ~((allocation >= 0) & (allocation <= 1))  # NaN is outside
    if np.any(outside):
        raise malformed(field, "in [0, 1]", _first(field, outside, allocation))
    shares = allocation.sum(axis=1)
    over = shares > 1 + FEASIBILITY_TOLERANCE
    if np.any(over):
        index = tuple(int(i) for i in np.argwhere(over)[0])
        where = f"{_at(field, index[:-1])}[:][{index[-1]}]"
        raise malformed(field, f"feasible (each item's shares over the bidders sum to <= 1 + "
                        f"{FEASIBILITY_TOLERANCE:g})",
                        f"a sum of {shares[index].item()!r} at {where}")


def _require(outputs, keys, what):
    if not isinstance(outputs, dict):
        raise malformed("outputs", f"an object with {list(keys)}", json_type(outputs))
    missing = [key for key in keys if key not in outputs]
    if missing:
        raise malformed("outputs", f"an object with {list(keys)} ({what})",
                        f"keys {sorted(outputs)}, without {missing}")


def check_outcome(outputs, bids, menu_size=None):
    """The checked outcome of `bids` (float64 `[batch, m, n]`, as sent): `allocation` float64
    `[batch, m, n]`, `payments` float64 `[batch, m]`, `menu_index` int64 `[batch]` (and
    `owners` int64 `[batch, n]` if served); or a
    ServingError naming what is wrong (see the module docstring)."""
    _require(outputs, OUTPUTS, "is this a tf_ama model?")
    batch, num_bidders, num_items = bids.shape
    allocation = _shaped("allocation", to_array("allocation", outputs["allocation"]),
                         (batch, num_bidders, num_items))
    payments = _shaped("payments", to_array("payments", outputs["payments"]),
                       (batch, num_bidders))
    menu_index = _shaped("menu_index", to_array("menu_index", outputs["menu_index"], True),
                         (batch,))
    _check_allocation("allocation", allocation)
    bad = ~(np.isfinite(payments) & (payments >= 0))
    if np.any(bad):
        raise malformed("payments", "finite and >= 0", _first("payments", bad, payments))
    values = np.einsum("bij,bij->bi", allocation, bids)
    over = ~(payments <= values * (1 + IR_TOLERANCE))  # NaN values too
    if np.any(over):
        index = tuple(int(i) for i in np.argwhere(over)[0])
        raise malformed(
            "payments", "at most the bidder's value for the returned allocation (individual "
            "rationality)", f"{payments[index].item()!r} at {_at('payments', index)} for a "
            f"value of {values[index].item()!r}")
    bad = (menu_index < 0) | (menu_index >= menu_size if menu_size is not None else False)
    if np.any(bad):
        expected = f"in [0, {menu_size})" if menu_size is not None else ">= 0"
        raise malformed("menu_index", expected, _first("menu_index", bad, menu_index))
    checked = {"allocation": allocation, "payments": payments, "menu_index": menu_index}
    if "owners" in outputs:
        checked["owners"] = _check_owners(to_array("owners", outputs["owners"], True),
                                          allocation)
    return checked


def _check_owners(owners, allocation):
    """`owners` `[batch, n]`: all -1, or the owner codes of the 0/1 `allocation`."""
    batch, num_bidders, num_items = allocation.shape
    owners = _shaped("owners", owners, (batch, num_items))
    bad = (owners < -1) | (owners > num_bidders)
    if np.any(bad):
        raise malformed("owners", f"in [-1, {num_bidders}]", _first("owners", bad, owners))
    family = owners[:, :1] >= 0
    bad = (owners >= 0) != family
    if np.any(bad):
        raise malformed("owners", "all -1 (an explicit entry) or all >= 0 (a family entry) in "
                        "each profile", _first("owners", bad, owners))
    one_hot = (owners[:, None, :] == np.arange(1, num_bidders + 1)[None, :, None])
    bad = family[:, :, None] & (allocation != one_hot)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise malformed("owners", "the owners of the returned allocation",
                        f"owner {owners[index[0], index[2]]} of item {index[2]} for "
                        f"{_at('allocation', index)} = {allocation[index].item()!r}")
    return owners


def check_menu(outputs):
    """The checked menu: `allocations` float64 `[K, m, n]`, `boosts` `[K]`, `bidder_weights`
    `[m]` (and `separable_boosts` `[m + 1, n]`, `size_boosts` `[m + 1, n + 1]` if served); or
    a ServingError naming what is wrong (see the module docstring)."""
    _require(outputs, MENU_OUTPUTS, "the `menu` signature of a tf_ama model")
    allocations = to_array("allocations", outputs["allocations"])
    if allocations.ndim != 3 or allocations.shape[0] == 0:
        raise malformed("allocations", "of shape [K >= 1, num_bidders, num_items]",
                        f"shape {list(allocations.shape)}")
    size, num_bidders, _ = allocations.shape
    boosts = _shaped("boosts", to_array("boosts", outputs["boosts"]), (size,))
    weights = _shaped("bidder_weights", to_array("bidder_weights", outputs["bidder_weights"]),
                      (num_bidders,))
    _check_allocation("allocations", allocations)
    checked = {"allocations": allocations, "boosts": boosts, "bidder_weights": weights}
    if "separable_boosts" in outputs:
        table = _shaped("separable_boosts",
                        to_array("separable_boosts", outputs["separable_boosts"]),
                        (num_bidders + 1, allocations.shape[2]))
        largest = np.sum(np.max(np.abs(table), axis=0)) if table.size else 0.0
        if not largest <= MAX_ABS_BOOST:  # NaN too
            raise malformed("separable_boosts", f"finite with sum_j max_o |c[o, j]| <= "
                            f"{MAX_ABS_BOOST:g}", f"{float(largest)!r}")
        checked["separable_boosts"] = table
        if "size_boosts" in outputs:
            sizes = _shaped("size_boosts", to_array("size_boosts", outputs["size_boosts"]),
                            (num_bidders + 1, allocations.shape[2] + 1))
            largest += np.sum(np.max(np.abs(sizes), axis=1)) if sizes.size else 0.0
            if not largest <= MAX_ABS_BOOST:
                raise malformed("size_boosts", "finite with sum_j max_o |c[o, j]| + sum_o "
                                f"max_k |g[o, k]| <= {MAX_ABS_BOOST:g}", f"{float(largest)!r}")
            checked["size_boosts"] = sizes
    bad = ~(np.abs(boosts) <= MAX_ABS_BOOST)
    if np.any(bad):
        raise malformed("boosts", f"finite with |boost| <= {MAX_ABS_BOOST:g}",
                        _first("boosts", bad, boosts))
    bad = ~((weights >= MIN_BIDDER_WEIGHT) & (weights <= MAX_BIDDER_WEIGHT))
    if np.any(bad):
        raise malformed("bidder_weights", f"in [{MIN_BIDDER_WEIGHT:g}, {MAX_BIDDER_WEIGHT:g}]",
                        _first("bidder_weights", bad, weights))
    return checked
