r"""The training objective, fused: soft revenue with a hand-derived gradient.

`mechanism.soft_payments` states the relaxation of DESIGN §2 as plainly as possible. Training
differentiates it millions of times, and automatic differentiation of that formula makes ~50
passes over `[batch, num_bidders + 1, menu_size]` tensors, so the step is bound by memory
traffic. `soft_revenue` computes the same value with the gradient written out:

    u[b,i,k] = sum_j a[k,i,j] v[b,i,j]          W = sum_i w_i u_i + b     O_i = W - w_i u_i
    pi = softmax(l W)      s_i = softmax(l O_i)      E_s,i = <s_i, O_i>    E_pi,i = <pi, O_i>
    R  = mean_b sum_i (E_s,i - E_pi,i) / w_i

    dR/dO_i[k] = c / w_i * ( s_i[k] (1 + l (O_i[k] - E_s,i)) - pi[k] )          (c = 1 / batch)
    dR/dW[k]   = -c * l * pi[k] * sum_i (O_i[k] - E_pi,i) / w_i  +  sum_i dR/dO_i[k]
    dR/du_i[k] = w_i * (dR/dW[k] - dR/dO_i[k])
    dR/da      = sum_b dR/du[b] v[b]   (one contraction)      dR/db = sum_b dR/dW
    dR/dw_i    = -c sum_b p_i / w_i + sum_b sum_k (dR/dW[k] - dR/dO_i[k]) u_i[k]

so only `u`, `O`, the two softmaxes and the gradients with respect to `W` and `O` are ever
materialized. `tests/relaxation_test.py` checks value and gradients against automatic
differentiation of `mechanism.soft_payments` in float64.
"""

from __future__ import annotations

import tensorflow as tf


def soft_revenue(valuations, allocations, boosts, bidder_weights, temperature):
    """Mean over the batch of the summed soft payments; differentiable in the menu.

    Args:
      valuations: `[batch, num_bidders, num_items]` (no gradient is taken with respect to them).
      allocations: `[menu_size, num_bidders, num_items]`.
      boosts: `[menu_size]`.
      bidder_weights: `[num_bidders]`, > 0.
      temperature: `lambda`, a Python float.

    Returns:
      A scalar: `mean_b sum_i p_soft[b, i]`, equal to the plain formula of
      `mechanism.soft_payments` (up to float rounding).
    """
    temperature = tf.constant(temperature, valuations.dtype)
    return _soft_revenue_fused(
        tf.stop_gradient(valuations), allocations, boosts, bidder_weights, temperature)


@tf.custom_gradient
def _soft_revenue_fused(valuations, allocations, boosts, bidder_weights, temperature):
    lam = temperature
    w = bidder_weights[None, :, None]
    values = tf.einsum("bij,kij->bik", valuations, allocations)  # u: [B, m, K]
    weighted = w * values
    welfare = tf.reduce_sum(weighted, axis=1) + boosts[None, :]  # W: [B, K]
    others = welfare[:, None, :] - weighted  # O: [B, m, K]
    chosen = tf.nn.softmax(lam * welfare, axis=-1)  # pi: [B, K]
    counterfactual = tf.nn.softmax(lam * others, axis=-1)  # s: [B, m, K]
    expected_without = tf.reduce_sum(counterfactual * others, axis=-1)  # E_s: [B, m]
    expected_with = tf.einsum("bk,bik->bi", chosen, others)  # E_pi: [B, m]
    payments = (expected_without - expected_with) / bidder_weights[None, :]
    batch = tf.cast(tf.shape(valuations)[0], valuations.dtype)
    revenue = tf.reduce_sum(payments) / batch

    def gradient(upstream):
        scale = upstream / batch
        grad_others = (scale / w) * (
            counterfactual * (1.0 + lam * (others - expected_without[:, :, None]))
            - chosen[:, None, :])
        spread = tf.reduce_sum((others - expected_with[:, :, None]) / w, axis=1)
        grad_welfare = -scale * lam * chosen * spread + tf.reduce_sum(grad_others, axis=1)
        grad_values_unweighted = grad_welfare[:, None, :] - grad_others  # dR/du / w
        grad_allocations = tf.einsum("bik,bij->kij", w * grad_values_unweighted, valuations)
        grad_boosts = tf.reduce_sum(grad_welfare, axis=0)
        grad_weights = (-scale * tf.reduce_sum(payments, axis=0) / bidder_weights
                        + tf.einsum("bik,bik->i", grad_values_unweighted, values))
        return None, grad_allocations, grad_boosts, grad_weights, None

    return revenue, gradient
