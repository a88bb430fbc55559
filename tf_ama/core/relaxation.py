r"""The training objective, fused: soft revenue with a hand-derived gradient.

`relaxation.soft_payments` states the softmax relaxation as plainly as possible. Training
differentiates it millions of times, and automatic differentiation of that formula makes many
passes over `[batch, num_bidders + 1, menu_size]` tensors, so the step is bound by memory
traffic (benchmarks/README.md, "Roofline"). `revenue_and_gradients` computes the same value
with the gradient written out:

    u[b,i,k] = sum_j a[k,i,j] v[b,i,j]          W = sum_i w_i u_i + b     O_i = W - w_i u_i
    pi = softmax(l W)      s_i = softmax(l O_i)      E_s,i = <s_i, O_i>    E_pi,i = <pi, O_i>
    R  = sum_b c_b sum_i (E_s,i - E_pi,i) / w_i

    dR/dO_i[k] = c_b / w_i * ( s_i[k] (1 + l (O_i[k] - E_s,i)) - pi[k] )
    dR/dW[k]   = -l * pi[k] * sum_i c_b (O_i[k] - E_pi,i) / w_i  +  sum_i dR/dO_i[k]
    dR/du_i[k] = w_i * (dR/dW[k] - dR/dO_i[k])
    dR/da      = sum_b dR/du[b] v[b]   (one contraction)      dR/db = sum_b dR/dW
    dR/dw_i    = -sum_b c_b p_i / w_i + sum_b sum_k (dR/dW[k] - dR/dO_i[k]) u_i[k]

where `c_b` is profile `b`'s share of the mean: `1 / batch`, or `s_b / sum s` for sample
weights `s` (e.g. the probabilities of a finite support, `tf_ama.expectation_dataset`).

so only `u`, `O`, the two softmaxes and the gradients with respect to `W` and `O` are ever
materialized. `tests/relaxation_test.py` checks value and gradients against automatic
differentiation of `relaxation.soft_payments` in float64.
"""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

from tf_ama.core import bundle_sizes, separable
from tf_ama.core.blocks import PROGRAM_TRAINING_ELEMENTS, program_block_size, training_block_size
from tf_ama.utils import checks


def revenue_and_gradients(valuations, allocations, boosts, bidder_weights, temperature,
                          sample_weight, separable_boosts=None, size_boosts=None):
    """Soft revenue SUMMED over the batch, each profile times its `sample_weight` `[B]`, and
    its gradients (also weighted sums) with respect to `allocations` `[K, m, n]`, `boosts`
    `[K]` and `bidder_weights` `[m]` (formulas above), and `separable_boosts` `[m + 1, n]`
    when the item-separable family joins the menu (`joined_revenue_and_gradients`), and
    `size_boosts` `[m + 1, n + 1]` when that family is the bundle-size family.

    Sums, so that micro-batches add up; `temperature` is a scalar tensor. Internally the
    `[m, B, K]` (bidder-major) layout makes both contractions plain batched matmuls, with no
    transpose of a `[B, m, K]` tensor.

    A menu per profile (a contextual menu: `allocations [B, K, m, n]`, `boosts [B, K]`,
    `bidder_weights [B, m]`, `separable_boosts [B, m + 1, n]`) gives each profile's own
    gradients, with the same leading `B` axis.
    """
    if separable_boosts is not None:
        return joined_revenue_and_gradients(valuations, allocations, boosts, bidder_weights,
                                            temperature, sample_weight, separable_boosts,
                                            size_boosts)
    lam = temperature
    w = weights_by_bidder(bidder_weights)  # [m, 1, 1], or [m, B, 1] for a menu per profile
    # Divisions are multiplications by reciprocals: a division per element of an [m, B, K]
    # tensor costs several multiplications' time (benchmarks/README.md, "Training step").
    inverse_w = 1.0 / w
    # Each profile's weight rides on the 1 / w_i factor every per-profile term already has.
    scale = inverse_w * sample_weight[None, :, None]  # [m, B, 1]
    bids_by_bidder, values, others, welfare = welfare_terms(valuations, allocations, boosts, w)
    chosen = _softmax(lam * welfare)  # pi: [B, K]
    counterfactual = _softmax(lam * others)  # s: [m, B, K]
    expected_without = tf.reduce_sum(counterfactual * others, axis=-1, keepdims=True)  # [m, B, 1]
    expected_with = tf.reduce_sum(chosen[None] * others, axis=-1, keepdims=True)  # [m, B, 1]
    payments = (expected_without - expected_with) * scale  # weighted: [m, B, 1]

    grad_others = (counterfactual * (1.0 + lam * (others - expected_without))
                   - chosen[None]) * scale
    spread = tf.reduce_sum((others - expected_with) * scale, axis=0)  # [B, K]
    grad_welfare = -lam * chosen * spread + tf.reduce_sum(grad_others, axis=0)  # [B, K]
    grad_allocations, grad_boosts, grad_weights = _menu_gradients(
        w, bids_by_bidder, values, grad_welfare, grad_others, _per_profile(allocations))
    if _per_profile(allocations):
        grad_weights = tf.transpose(-payments[..., 0] * inverse_w[..., 0] + grad_weights)
    else:
        grad_weights = -tf.reduce_sum(payments, axis=[1, 2]) * inverse_w[:, 0, 0] + grad_weights
    return tf.reduce_sum(payments), (grad_allocations, grad_boosts, grad_weights)


def joined_revenue_and_gradients(valuations, allocations, boosts, bidder_weights, temperature,
                                 sample_weight, separable_boosts, size_boosts=None):
    r"""`revenue_and_gradients` when the item-separable family (`tf_ama.core.separable`) joins the
    explicit menu: each softmax is over the union, a two-part mixture.

    Each part is summarized per profile by four statistics, its log-partition functions and
    expectations of `O_i` (`log Z`, `E_pi O_i`, `log Z_i`, `E_s,i O_i`), and the soft payment
    is a function of the eight (`relaxation.soft_payments`): with the family's share
    `f = sigmoid(log Z_F - log Z_E)`, `E_pi O_i = E_E + f (E_F - E_E)`, and the same for
    `E_s,i`. The gradient goes back through that small function and the family's factorized
    statistics (`separable.soft_family`, `[m + 1, B, n]`-sized; with `size_boosts`,
    `bundle_sizes.soft_family`'s forward algorithm) by automatic differentiation, and
    through the explicit part's statistics by hand:

        d/dW[k]   = l pi_E[k] (g_logZ + sum_i g_Epi,i (O_i[k] - E_pi,i))
        d/dO_i[k] = g_Epi,i pi_E[k] + s_E,i[k] (l g_logZi + g_Es,i (1 + l (O_i[k] - E_s,i)))

    (`pi_E`, `s_E,i`: the explicit part's own softmaxes, `g_x`: the gradient of the revenue
    with respect to statistic `x`), then to the menu as in `revenue_and_gradients`.
    """
    lam = temperature
    w = weights_by_bidder(bidder_weights)
    bids_by_bidder, values, others, welfare = welfare_terms(valuations, allocations, boosts, w)
    chosen, log_z = _softmax_and_log_partition(lam * welfare)  # pi_E: [B, K]; [B]
    counterfactual, log_z_others = _softmax_and_log_partition(lam * others)  # s_E; [m, B]
    expected_with = tf.reduce_sum(chosen[None] * others, axis=-1)  # [m, B]
    expected_without = tf.reduce_sum(counterfactual * others, axis=-1)  # [m, B]
    statistics = [log_z, expected_with, log_z_others, expected_without]
    family_tensors = [separable_boosts] + ([] if size_boosts is None else [size_boosts])
    with tf.GradientTape() as tape:
        tape.watch([*statistics, bidder_weights, *family_tensors])
        if size_boosts is None:
            family = separable.soft_family(valuations, bidder_weights, separable_boosts, lam)
        else:
            family = bundle_sizes.soft_family(valuations, bidder_weights, separable_boosts,
                                              size_boosts, lam)
        family_log_z, family_with, family_log_z_others, family_without = family
        share = tf.sigmoid(family_log_z - log_z)  # [B]
        share_others = tf.sigmoid(family_log_z_others - tf.transpose(log_z_others))  # [B, m]
        with_ = tf.transpose(expected_with)
        without = tf.transpose(expected_without)
        payments = ((without + share_others * (family_without - without))
                    - (with_ + share[:, None] * (family_with - with_))) / (
                        bidder_weights if _per_profile(allocations) else bidder_weights[None])
        total = tf.reduce_sum(sample_weight[:, None] * payments)
    g_log_z, g_with, g_log_z_others, g_without, g_weights, *g_family = tape.gradient(
        total, [*statistics, bidder_weights, *family_tensors])
    grad_welfare = lam * chosen * (g_log_z[:, None] + tf.reduce_sum(
        g_with[..., None] * (others - expected_with[..., None]), axis=0))
    grad_others = (g_with[..., None] * chosen[None] + counterfactual * (
        lam * g_log_z_others[..., None]
        + g_without[..., None] * (1.0 + lam * (others - expected_without[..., None]))))
    grad_welfare += tf.reduce_sum(grad_others, axis=0)
    grad_allocations, grad_boosts, grad_weights = _menu_gradients(
        w, bids_by_bidder, values, grad_welfare, grad_others, _per_profile(allocations))
    if _per_profile(allocations):
        grad_weights = tf.transpose(grad_weights)
    return total, (grad_allocations, grad_boosts, grad_weights + g_weights, *g_family)


def _per_profile(allocations):
    """Whether the menu tensors have a leading batch axis (a menu per profile)."""
    return allocations.shape.rank == 4


def weights_by_bidder(bidder_weights):
    """The bidder weights `[m]` as `[m, 1, 1]`, or each profile's `[B, m]` as `[m, B, 1]`."""
    if bidder_weights.shape.rank == 2:
        return tf.transpose(bidder_weights)[:, :, None]
    return bidder_weights[:, None, None]


def welfare_terms(valuations, allocations, boosts, w):
    """`(bids [m, B, n], u [m, B, K], O [m, B, K], W [B, K])` for weights `w`
    (`weights_by_bidder`): the values, the others' welfare and the welfare of every entry,
    for one menu (`[K, m, n]`, `[K]`) or a menu per profile (`[B, K, m, n]`, `[B, K]`)."""
    bids_by_bidder = tf.transpose(valuations, [1, 0, 2])  # [m, B, n]
    if _per_profile(allocations):
        values = tf.einsum("ibj,bkij->ibk", bids_by_bidder, allocations)
        weighted = w * values
        welfare = tf.reduce_sum(weighted, axis=0) + boosts
    else:
        values = tf.matmul(bids_by_bidder, tf.transpose(allocations, [1, 2, 0]))  # u: [m, B, K]
        weighted = w * values
        welfare = tf.reduce_sum(weighted, axis=0) + boosts[None, :]  # W: [B, K]
    return bids_by_bidder, values, welfare[None] - weighted, welfare


def _menu_gradients(w, bids_by_bidder, values, grad_welfare, grad_others, per_profile):
    """The gradients with respect to the allocations, the boosts and (through `u` only) the
    bidder weights, from those with respect to `W` `[B, K]` (including the `O_i`'s share)
    and `O` `[m, B, K]`."""
    grad_values_unweighted = grad_welfare[None] - grad_others  # dR/du / w: [m, B, K]
    if per_profile:  # each profile's own: [B, K, m, n], [B, K], [m, B]
        return (tf.einsum("ibk,ibj->bkij", w * grad_values_unweighted, bids_by_bidder),
                grad_welfare, tf.reduce_sum(grad_values_unweighted * values, axis=2))
    grad_allocations = tf.transpose(  # [m, K, n] -> [K, m, n]
        tf.matmul(w * grad_values_unweighted, bids_by_bidder, transpose_a=True), [1, 0, 2])
    grad_boosts = tf.reduce_sum(grad_welfare, axis=0)
    grad_weights = tf.reduce_sum(grad_values_unweighted * values, axis=[1, 2])
    return grad_allocations, grad_boosts, grad_weights


def _softmax(logits):
    """Softmax over the last axis, normalized by one reciprocal per row rather than a
    division per element (what `tf.nn.softmax` does)."""
    exponentials = tf.exp(logits - tf.reduce_max(logits, axis=-1, keepdims=True))
    return exponentials * (1.0 / tf.reduce_sum(exponentials, axis=-1, keepdims=True))


def _softmax_and_log_partition(logits):
    """`(softmax, logsumexp)` over the last axis from one pass of exponentials. The softmax
    is normalized by its own sum (not as `exp(logits - logsumexp)`, whose rounding of a
    large logsumexp, ~1e-4 at 1e3 in float32, would scale every probability)."""
    largest = tf.reduce_max(logits, axis=-1, keepdims=True)
    exponentials = tf.exp(logits - largest)
    total = tf.reduce_sum(exponentials, axis=-1, keepdims=True)
    return exponentials * (1.0 / total), (largest + tf.math.log(total))[..., 0]


_KERNELS = {
    False: tf.function(revenue_and_gradients, autograph=False),
    True: tf.function(revenue_and_gradients, autograph=False, jit_compile=True),
}


def batched_revenue_and_gradients(valuations, allocations, boosts, bidder_weights, temperature,
                                  micro_batch_size=None, jit_compile=False, sample_weight=None,
                                  separable_boosts=None, size_boosts=None):
    """Mean soft revenue of the batch and its gradients, over micro-batches of the batch.

    The batch is cut into micro-batches of `micro_batch_size` profiles (the last one may be
    smaller; "auto": `tf_ama.core.blocks.training_block_size` for this menu's explicit
    entries, at most `program_block_size(..., PROGRAM_TRAINING_ELEMENTS)` with the
    bundle-size family); their summed revenues and gradients add up to the whole batch's
    exactly (up to float rounding), while only a few `[micro_batch_size, m, K]` tensors are alive at a time,
    small enough to stay in cache. `jit_compile` compiles the per-micro-batch kernel
    with XLA, which fuses its elementwise passes.

    Args:
      sample_weight: optional `[batch]` weights >= 0: the mean is then
        `sum_b s_b R_b / sum_b s_b`, as for Keras' weighted metrics (0 if all weights are
        0). With the probabilities of a finite support as weights, it is the exact
        expectation.
      separable_boosts: None, or `c` `[m + 1, n]`: the item-separable family joins the menu
        (`joined_revenue_and_gradients`).
      size_boosts: None, or `g` `[m + 1, n + 1]` (with `separable_boosts`): that family is
        the bundle-size family (`tf_ama.core.bundle_sizes`).

    Returns:
      `(revenue, (grad_allocations, grad_boosts, grad_weights))`, (weighted) means over the
      batch, and `grad_separable_boosts` (then `grad_size_boosts`) last in the tuple when
      `separable_boosts` (`size_boosts`) is given.
      For a menu per profile (leading batch axis on every menu tensor), each profile's own
      gradients (its share of the mean), micro-batched with its menus.
    """
    kernel = _KERNELS[bool(jit_compile)]
    temperature = tf.constant(temperature, valuations.dtype)
    batch = tf.shape(valuations)[0]
    if sample_weight is None:
        sample_weight = tf.ones([batch], valuations.dtype)
    per_profile = _per_profile(allocations)
    micro = (training_block_size(valuations.shape[1], allocations.shape[int(per_profile)])
             if micro_batch_size == "auto" else micro_batch_size)
    if micro_batch_size == "auto" and size_boosts is not None:  # the program's memory
        states = bundle_sizes.count_state_number(*valuations.shape[1:])
        micro = min(micro, program_block_size(valuations.shape[1], states,
                                              PROGRAM_TRAINING_ELEMENTS))
    menu = (allocations, boosts, bidder_weights)
    if separable_boosts is not None:
        menu += (separable_boosts,)
    if size_boosts is not None:
        if per_profile:
            raise ValueError("`size_boosts` is for one menu, not a menu per profile.")
        menu += (size_boosts,)
    if micro is None:
        total, gradients = kernel(valuations, *menu[:3], temperature, sample_weight, *menu[3:])
    elif per_profile:
        total, gradients = _over_profile_blocks(
            lambda block, weights, *block_menu: kernel(
                block, *block_menu[:3], temperature, weights, *block_menu[3:]),
            valuations, sample_weight, menu, micro)
    else:
        zeros = (tf.zeros([], valuations.dtype), tuple(tf.zeros_like(t) for t in menu))
        total, gradients = over_micro_batches(
            lambda block, weights: kernel(block, *menu[:3], temperature, weights, *menu[3:]),
            (valuations, sample_weight), micro, lambda a, b: tf.nest.map_structure(tf.add, a, b),
            zeros)
    # A sum of ones is exact: without weights this is the batch size. A batch of weight 0
    # (one replica's share of a weighted batch can be) has mean 0, not NaN.
    scale = tf.reduce_sum(sample_weight)
    return (tf.math.divide_no_nan(total, scale),
            tuple(tf.math.divide_no_nan(g, scale) for g in gradients))


def _over_profile_blocks(kernel, valuations, sample_weight, menu, micro_batch_size):
    """`(total, gradients)` of `kernel(valuations, sample_weight, *menu)` for a menu per
    profile, over blocks of `micro_batch_size` profiles: each block's menus go with its
    profiles and its gradients are its profiles' own (concatenated, not summed). The last
    block is filled up with copies of the first profile at weight 0, which add nothing."""
    micro = int(micro_batch_size)
    rows = tf.shape(valuations)[0]
    blocks = (rows + micro - 1) // micro
    padding = blocks * micro - rows

    def blocked(tensor, filler):
        padded = tf.concat([tensor, tf.repeat(filler, padding, axis=0)], axis=0)
        return tf.reshape(padded, tf.concat([[blocks, micro], tf.shape(tensor)[1:]], axis=0))

    arrays = [blocked(valuations, valuations[:1]),
              blocked(sample_weight, tf.zeros([1], sample_weight.dtype)),
              *(blocked(t, t[:1]) for t in menu)]
    specs = (tf.TensorSpec([], valuations.dtype),
             tuple(tf.TensorSpec([micro, *t.shape[1:]], t.dtype) for t in menu))
    totals, gradients = tf.map_fn(lambda block: kernel(*block), tuple(arrays),
                                  fn_output_signature=specs, parallel_iterations=1)
    return tf.reduce_sum(totals), tuple(
        tf.reshape(g, tf.concat([[-1], tf.shape(g)[2:]], axis=0))[:rows] for g in gradients)


def over_micro_batches(kernel, arrays, micro_batch_size, combine, initial):
    """`combine(...combine(combine(initial, kernel(*block_0)), kernel(*block_1))...)` over
    consecutive blocks of `micro_batch_size` rows of `arrays` (tensors of the same first
    dimension), the last one smaller if the rows do not divide evenly.

    The one micro-batch loop of training (`batched_revenue_and_gradients`, and the active
    set's refresh pass, `tf_ama.models.active_set`). When the number of rows is static (always under
    XLA, e.g. Keras' `jit_compile=True`, which compiles the whole step), so are the number of
    blocks and the remainder, and no block of size 0 is ever traced.
    """
    micro = int(micro_batch_size)
    static_rows = arrays[0].shape[0]
    rows = tf.shape(arrays[0])[0] if static_rows is None else static_rows
    full = rows // micro
    blocks = [tf.reshape(a[:full * micro], [full, micro, *a.shape[1:]]) for a in arrays]
    result = initial
    if static_rows is None or full > 0:
        def body(index, result):
            return index + 1, combine(result, kernel(*(b[index] for b in blocks)))

        _, result = tf.while_loop(lambda index, _: index < full, body,
                                  (tf.constant(0), result))
    remainders = [a[full * micro:] for a in arrays]
    if static_rows is None:
        return tf.cond(tf.shape(remainders[0])[0] > 0,
                       lambda: combine(result, kernel(*remainders)), lambda: result)
    return combine(result, kernel(*remainders)) if static_rows % micro else result


def soft_payments(valuations, allocations, boosts, bidder_weights, temperature,
                  separable_boosts=None, size_boosts=None):
    """The softmax relaxation of the AMA payments, differentiable.

    Args:
      valuations: `[batch, num_bidders, num_items]`.
      allocations: `[menu_size, num_bidders, num_items]`.
      boosts: `[menu_size]`; bidder_weights: `[num_bidders]`. (Or a menu per profile: every
        menu tensor with a leading `batch` axis, e.g. a contextual menu.)
      temperature: `lambda`, the inverse softmax temperature (100 in the paper).
      separable_boosts: None, or `c` `[num_bidders + 1, num_items]`: the item-separable
        family joins the menu (`tf_ama.core.separable`); each softmax is then over the union, a
        two-part mixture whose family part factorizes over items (`separable.soft_family`).
      size_boosts: None, or `g` `[num_bidders + 1, num_items + 1]` (with `separable_boosts`):
        the family is the bundle-size family, its part a chain over count vectors
        (`bundle_sizes.soft_family`).

    Returns:
      `[batch, num_bidders]` soft payments
      `(sum_k softmax(l W_-i)[k] W_-i[k] - sum_k softmax(l W)[k] W_-i[k]) / w_i`.
    """
    _check_soft_shapes(valuations, allocations, boosts, bidder_weights, temperature)
    if len(allocations.shape) == 4:  # a menu per profile
        values = tf.einsum("bij,bkij->bik", valuations, allocations)
        weights = bidder_weights[:, :, None]
    else:
        values = tf.einsum("bij,kij->bik", valuations, allocations)  # one contraction: [B, m, K]
        weights = bidder_weights[None, :, None]
    weighted = weights * values
    welfare = tf.reduce_sum(weighted, axis=1) + boosts  # [B, K]
    others = welfare[:, None, :] - weighted  # [B, m, K]
    chosen = tf.nn.softmax(temperature * welfare, axis=-1)  # [B, K]
    counterfactual = tf.nn.softmax(temperature * others, axis=-1)  # [B, m, K]
    expected_without = tf.reduce_sum(counterfactual * others, axis=-1)
    expected_with = tf.einsum("bk,bik->bi", chosen, others)
    if separable_boosts is not None:
        log_z, family_with, log_z_others, family_without = (
            separable.soft_family(valuations, bidder_weights, separable_boosts, temperature)
            if size_boosts is None else bundle_sizes.soft_family(
                valuations, bidder_weights, separable_boosts, size_boosts, temperature))
        # The family's share of each partition function, Z_F / (Z_F + Z_explicit).
        share = tf.sigmoid(log_z - tf.reduce_logsumexp(temperature * welfare, axis=-1))
        share_others = tf.sigmoid(
            log_z_others - tf.reduce_logsumexp(temperature * others, axis=-1))
        expected_with += share[:, None] * (family_with - expected_with)
        expected_without += share_others * (family_without - expected_without)
    return (expected_without - expected_with) / weights[:, :, 0]


def _check_soft_shapes(valuations, allocations, boosts, bidder_weights, temperature):
    """Static (free, trace-time) checks of `soft_payments`' arguments, naming the bad one."""

    def shape(value):
        return tf.TensorShape(value.shape if hasattr(value, "shape") else np.shape(value))

    valuations_shape, allocations_shape = shape(valuations), shape(allocations)
    if valuations_shape.rank not in (None, 3):
        raise ValueError(
            f"`valuations` must have shape [batch, num_bidders, num_items]; got {valuations_shape}."
        )
    if allocations_shape.rank not in (None, 3, 4):
        raise ValueError(
            f"`allocations` must have shape [menu_size, num_bidders, num_items] (or a menu per "
            f"profile, [batch, menu_size, num_bidders, num_items]); got {allocations_shape}."
        )
    batch = []
    if allocations_shape.rank == 4:
        batch, allocations_shape = allocations_shape[:1], allocations_shape[1:]
    if valuations_shape.rank == 3 and allocations_shape.rank == 3 and not (
        valuations_shape[1:].is_compatible_with(allocations_shape[1:])
    ):
        raise ValueError(
            f"`valuations` {valuations_shape} and `allocations` {allocations_shape} disagree on "
            "[num_bidders, num_items]."
        )
    menu_size = allocations_shape[0] if allocations_shape.rank == 3 else None
    num_bidders = allocations_shape[1] if allocations_shape.rank == 3 else None
    if not shape(boosts).is_compatible_with(batch + [menu_size]):
        raise ValueError(f"`boosts` must have shape [menu_size={menu_size}]; got {shape(boosts)}.")
    if not shape(bidder_weights).is_compatible_with(batch + [num_bidders]):
        raise ValueError(
            f"`bidder_weights` must have shape [num_bidders={num_bidders}]; got "
            f"{shape(bidder_weights)}."
        )
    if isinstance(temperature, (numbers.Number, np.number)):  # not a tensor: checked here
        checks.number("temperature", temperature, above=0)
