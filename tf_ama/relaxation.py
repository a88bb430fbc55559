r"""The training objective, fused: soft revenue with a hand-derived gradient.

`mechanism.soft_payments` states the softmax relaxation as plainly as possible. Training
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
differentiation of `mechanism.soft_payments` in float64.
"""

from __future__ import annotations

import tensorflow as tf

from tf_ama.mechanism import CACHE_BLOCK_ELEMENTS, cache_sized_batch


def revenue_and_gradients(valuations, allocations, boosts, bidder_weights, temperature,
                          sample_weight):
    """Soft revenue SUMMED over the batch, each profile times its `sample_weight` `[B]`, and
    its gradients (also weighted sums) with respect to `allocations` `[K, m, n]`, `boosts`
    `[K]` and `bidder_weights` `[m]` (formulas above).

    Sums, so that micro-batches add up; `temperature` is a scalar tensor. Internally the
    `[m, B, K]` (bidder-major) layout makes both contractions plain batched matmuls, with no
    transpose of a `[B, m, K]` tensor.
    """
    lam = temperature
    w = bidder_weights[:, None, None]
    # Divisions are multiplications by reciprocals: a division per element of an [m, B, K]
    # tensor costs several multiplications' time (benchmarks/README.md, "Training step").
    inverse_w = 1.0 / w
    # Each profile's weight rides on the 1 / w_i factor every per-profile term already has.
    scale = inverse_w * sample_weight[None, :, None]  # [m, B, 1]
    bids_by_bidder = tf.transpose(valuations, [1, 0, 2])  # [m, B, n]
    values = tf.matmul(bids_by_bidder, tf.transpose(allocations, [1, 2, 0]))  # u: [m, B, K]
    weighted = w * values
    welfare = tf.reduce_sum(weighted, axis=0) + boosts[None, :]  # W: [B, K]
    others = welfare[None] - weighted  # O: [m, B, K]
    chosen = _softmax(lam * welfare)  # pi: [B, K]
    counterfactual = _softmax(lam * others)  # s: [m, B, K]
    expected_without = tf.reduce_sum(counterfactual * others, axis=-1, keepdims=True)  # [m, B, 1]
    expected_with = tf.reduce_sum(chosen[None] * others, axis=-1, keepdims=True)  # [m, B, 1]
    payments = (expected_without - expected_with) * scale  # weighted: [m, B, 1]

    grad_others = (counterfactual * (1.0 + lam * (others - expected_without))
                   - chosen[None]) * scale
    spread = tf.reduce_sum((others - expected_with) * scale, axis=0)  # [B, K]
    grad_welfare = -lam * chosen * spread + tf.reduce_sum(grad_others, axis=0)  # [B, K]
    grad_values_unweighted = grad_welfare[None] - grad_others  # dR/du / w: [m, B, K]
    grad_allocations = tf.transpose(  # [m, K, n] -> [K, m, n]
        tf.matmul(w * grad_values_unweighted, bids_by_bidder, transpose_a=True), [1, 0, 2])
    grad_boosts = tf.reduce_sum(grad_welfare, axis=0)
    grad_weights = (-tf.reduce_sum(payments, axis=[1, 2]) * inverse_w[:, 0, 0]
                    + tf.reduce_sum(grad_values_unweighted * values, axis=[1, 2]))
    return tf.reduce_sum(payments), (grad_allocations, grad_boosts, grad_weights)


def _softmax(logits):
    """Softmax over the last axis, normalized by one reciprocal per row rather than a
    division per element (what `tf.nn.softmax` does)."""
    exponentials = tf.exp(logits - tf.reduce_max(logits, axis=-1, keepdims=True))
    return exponentials * (1.0 / tf.reduce_sum(exponentials, axis=-1, keepdims=True))


_MIN_MICRO_BATCH, _MAX_MICRO_BATCH = 8, 4096


def default_micro_batch_size(num_bidders, menu_size):
    """Profiles per micro-batch of the training step: a power of two in [8, 4096],
    ~`mechanism.CACHE_BLOCK_ELEMENTS` (2^18) `[profile, bidder + 1, entry]` elements (~1 MB
    of float32, so that a micro-batch's intermediates stay in cache).

    Not `mechanism.default_micro_batch_size` (the exact outcome, at most 1024): the last
    micro-batch here is not padded, so a larger cap costs a small batch nothing."""
    return cache_sized_batch(num_bidders, menu_size, CACHE_BLOCK_ELEMENTS, _MIN_MICRO_BATCH,
                             _MAX_MICRO_BATCH)


_KERNELS = {
    False: tf.function(revenue_and_gradients, autograph=False),
    True: tf.function(revenue_and_gradients, autograph=False, jit_compile=True),
}


def batched_revenue_and_gradients(valuations, allocations, boosts, bidder_weights, temperature,
                                  micro_batch_size=None, jit_compile=False, sample_weight=None):
    """Mean soft revenue of the batch and its gradients, over micro-batches of the batch.

    The batch is cut into micro-batches of `micro_batch_size` profiles (the last one may be
    smaller); their summed revenues and gradients add up to the whole batch's exactly (up
    to float rounding), while only a few `[micro_batch_size, m, K]` tensors are alive at a
    time, small enough to stay in cache. `jit_compile` compiles the per-micro-batch kernel
    with XLA, which fuses its elementwise passes.

    Args:
      sample_weight: optional `[batch]` weights >= 0: the mean is then
        `sum_b s_b R_b / sum_b s_b`, as for Keras' weighted metrics (0 if all weights are
        0). With the probabilities of a finite support as weights, it is the exact
        expectation.

    Returns:
      `(revenue, (grad_allocations, grad_boosts, grad_weights))`, (weighted) means over the
      batch.
    """
    kernel = _KERNELS[bool(jit_compile)]
    temperature = tf.constant(temperature, valuations.dtype)
    batch = tf.shape(valuations)[0]
    if sample_weight is None:
        sample_weight = tf.ones([batch], valuations.dtype)
    micro = micro_batch_size
    if micro is None:
        total, gradients = kernel(valuations, allocations, boosts, bidder_weights, temperature,
                                  sample_weight)
    else:
        _, num_bidders, num_items = valuations.shape
        full = batch // micro
        blocks = tf.reshape(valuations[:full * micro], [full, micro, num_bidders, num_items])
        weight_blocks = tf.reshape(sample_weight[:full * micro], [full, micro])

        zeros = (tf.zeros_like(allocations), tf.zeros_like(boosts), tf.zeros_like(bidder_weights))

        def body(index, total, gradients):
            partial, partial_gradients = kernel(
                blocks[index], allocations, boosts, bidder_weights, temperature,
                weight_blocks[index])
            return (index + 1, total + partial,
                    tuple(g + p for g, p in zip(gradients, partial_gradients)))

        _, total, gradients = tf.while_loop(
            lambda index, *_: index < full, body,
            (tf.constant(0), tf.zeros([], valuations.dtype), zeros))
        remainder = valuations[full * micro:]
        partial, partial_gradients = tf.cond(
            tf.shape(remainder)[0] > 0,
            lambda: kernel(remainder, allocations, boosts, bidder_weights, temperature,
                           sample_weight[full * micro:]),
            lambda: (tf.zeros([], valuations.dtype), zeros))
        total += partial
        gradients = tuple(g + p for g, p in zip(gradients, partial_gradients))
    # A sum of ones is exact: without weights this is the batch size. A batch of weight 0
    # (one replica's share of a weighted batch can be) has mean 0, not NaN.
    scale = tf.reduce_sum(sample_weight)
    return (tf.math.divide_no_nan(total, scale),
            tuple(tf.math.divide_no_nan(g, scale) for g in gradients))
