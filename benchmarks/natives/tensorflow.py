"""The benchmarked losses as TensorFlow code writes them (``tf.nn``, ``tf.math``).

See the package docstring for what the three framework modules share; ``hp`` holds the
hyperparameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import tensorflow as tf

import natives as hp


def off_diagonal(x: Any) -> Any:
    m = x.shape[0]
    return tf.reshape(tf.reshape(tf.reshape(x, [-1])[:-1], [m - 1, m + 1])[:, 1:], [m, m - 1])


def byol(p_a: Any, p_b: Any, z_a: Any, z_b: Any) -> Any:
    def regression(p: Any, z: Any) -> Any:
        p = tf.math.l2_normalize(p, axis=1)
        z = tf.math.l2_normalize(tf.stop_gradient(z), axis=1)
        return 2.0 - 2.0 * tf.reduce_sum(p * z, axis=1)

    return tf.reduce_mean(regression(p_a, z_b) + regression(p_b, z_a))


def batch_norm(z: Any) -> Any:
    mean, var = tf.nn.moments(z, axes=[0])
    return (z - mean) / tf.sqrt(var + hp.BN_EPS)


def barlow_twins(z_a: Any, z_b: Any) -> Any:
    n = tf.cast(tf.shape(z_a)[0], z_a.dtype)
    c = tf.matmul(batch_norm(z_a), batch_norm(z_b), transpose_a=True) / n
    on_diag = tf.reduce_sum((tf.linalg.diag_part(c) - 1.0) ** 2)
    return on_diag + hp.LAMBD * tf.reduce_sum(off_diagonal(c) ** 2)


def sinkhorn(scores: Any) -> Any:
    q = tf.transpose(tf.exp(tf.stop_gradient(scores) / hp.SWAV_EPS))
    q = q / tf.reduce_sum(q)
    k, b = q.shape
    for _ in range(hp.SWAV_ITERS):
        q = q / tf.reduce_sum(q, axis=1, keepdims=True) / k
        q = q / tf.reduce_sum(q, axis=0, keepdims=True) / b
    return tf.transpose(q * b)


def score(z: Any, w: Any) -> Any:
    return tf.matmul(tf.math.l2_normalize(z, axis=1), w, transpose_b=True)


def swav_of_scores(s_a: Any, s_b: Any) -> Any:
    q_a, q_b = sinkhorn(s_a), sinkhorn(s_b)
    ce_a = tf.reduce_mean(tf.reduce_sum(q_a * tf.nn.log_softmax(s_b / hp.SWAV_T), axis=1))
    ce_b = tf.reduce_mean(tf.reduce_sum(q_b * tf.nn.log_softmax(s_a / hp.SWAV_T), axis=1))
    return -0.5 * (ce_a + ce_b)


def simclr(z_a: Any, z_b: Any) -> Any:
    n = z_a.shape[0]
    u = tf.math.l2_normalize(tf.concat([z_a, z_b], axis=0), axis=1)
    logits = tf.matmul(u, u, transpose_b=True) / hp.SIMCLR_T
    logits = tf.where(tf.eye(2 * n, dtype=tf.bool), float("-inf"), logits)
    labels = tf.concat([tf.range(n, 2 * n), tf.range(n)], axis=0)
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )


def sq_dist(x: Any) -> Any:
    sq = tf.reduce_sum(x * x, axis=1)
    gram = tf.matmul(x, x, transpose_b=True)
    return tf.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)


def perplexity_scale(d: Any) -> Any:
    d = d - tf.reduce_min(d, axis=1, keepdims=True)
    base = -tf.math.log(tf.maximum(tf.reduce_max(d, axis=1, keepdims=True), hp.TINY))
    lo, hi = base - 10.0, base + 20.0
    target = math.log(hp.ADC_PERPLEXITY)
    # tf.range: a tf.while_loop under tf.function (AutoGraph), as TF code writes loops.
    for _ in tf.range(hp.ADC_STEPS):
        mid = (lo + hi) / 2.0
        beta = tf.exp(mid)
        w = tf.exp(-beta * d)
        z = tf.reduce_sum(w, axis=1, keepdims=True)
        h = beta * tf.reduce_sum(w * d, axis=1, keepdims=True) / z + tf.math.log(z)
        flat = h > target
        lo, hi = tf.where(flat, mid, lo), tf.where(flat, hi, mid)
    return tf.maximum(tf.exp(-(lo + hi) / 2.0), hp.TINY)


def adc(z_a: Any, z_b: Any, prior: Any) -> Any:
    n = z_a.shape[0]
    d = off_diagonal(sq_dist(tf.math.l2_normalize(tf.concat([z_a, z_b], axis=0), axis=1)))
    e = tf.cast(tf.reshape(prior, [n, -1]), z_a.dtype)
    r = off_diagonal(tf.tile(sq_dist(e - tf.reduce_mean(e, axis=0)), [2, 2]))
    sigma2 = tf.stop_gradient(tf.maximum(perplexity_scale(tf.stop_gradient(d)) / 2.0, hp.TINY))
    tau = perplexity_scale(r)
    log_cal = tf.stop_gradient(tf.nn.log_softmax(-d / (2.0 * sigma2)))
    log_pre = tf.nn.log_softmax(-r / tau)
    p_cal, p_pre = tf.exp(log_cal), tf.exp(log_pre)
    inv_h = 1.0 / tf.maximum(-tf.reduce_sum(p_pre * log_pre, axis=1), hp.TINY)
    weights = inv_h / tf.reduce_mean(inv_h)
    scaled = d * ((hp.ADC_RHO - 2.0) / hp.ADC_RHO**2) / sigma2
    log_q = tf.nn.log_softmax(-0.5 * (hp.ADC_RHO + 1.0) * tf.math.log1p(scaled))
    dcm = tf.reduce_mean(weights * tf.reduce_sum(p_cal * (log_cal - log_q), axis=1))
    lpm = tf.reduce_mean(tf.reduce_sum(p_pre * (log_pre - log_q), axis=1))
    return hp.ADC_NU * dcm + hp.ADC_UPSILON * lpm


def swav(z_a: Any, z_b: Any, w: Any) -> Any:
    """SwAV of the scores n(z) W^T of both views against the (K, D) prototypes ``w``."""
    return swav_of_scores(score(z_a, w), score(z_b, w))


NATIVES: dict[str, Callable[..., Any]] = {
    "byol": byol,
    "barlow_twins": barlow_twins,
    "swav": swav,
    "swav_score": score,
    "simclr": simclr,
    "adc": adc,
}
