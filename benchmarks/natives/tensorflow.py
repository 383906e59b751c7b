"""The benchmarked losses as TensorFlow code writes them (``tf.nn``, ``tf.math``).

See the package docstring for what the three framework modules share; ``hp`` holds the
hyperparameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
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


# --- the method zoo -------------------------------------------------------------------


def normalize(x: Any) -> Any:
    return tf.math.l2_normalize(x, axis=1)


def cross_entropy(logits: Any, labels: Any) -> Any:
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )


def simsiam(p_a: Any, p_b: Any, z_a: Any, z_b: Any) -> Any:
    def cosine(p: Any, z: Any) -> Any:
        return tf.reduce_mean(tf.reduce_sum(normalize(p) * normalize(tf.stop_gradient(z)), axis=1))

    return -0.5 * (cosine(p_a, z_b) + cosine(p_b, z_a))


def vicreg(z_a: Any, z_b: Any) -> Any:
    n, d = z_a.shape
    invariance = tf.reduce_mean(tf.square(z_a - z_b))
    x, y = z_a - tf.reduce_mean(z_a, axis=0), z_b - tf.reduce_mean(z_b, axis=0)
    # Unbiased variances, as torch.var.
    std_x = tf.sqrt(tf.reduce_sum(x * x, axis=0) / (n - 1) + hp.VICREG_EPS)
    std_y = tf.sqrt(tf.reduce_sum(y * y, axis=0) / (n - 1) + hp.VICREG_EPS)
    variance = (tf.reduce_mean(tf.nn.relu(1.0 - std_x)) / 2
                + tf.reduce_mean(tf.nn.relu(1.0 - std_y)) / 2)
    cov_x = tf.matmul(x, x, transpose_a=True) / (n - 1)
    cov_y = tf.matmul(y, y, transpose_a=True) / (n - 1)
    covariance = (tf.reduce_sum(off_diagonal(cov_x) ** 2) / d
                  + tf.reduce_sum(off_diagonal(cov_y) ** 2) / d)
    return hp.VICREG_SIM * invariance + hp.VICREG_STD * variance + hp.VICREG_COV * covariance


def whiten(x: Any, w_size: int) -> Any:
    """Each contiguous sub-batch of ``w_size`` rows times the inverse of its covariance's
    Cholesky factor (transposed), all sub-batches in one batched call."""
    n, d = x.shape
    blocks = tf.reshape(x, [n // w_size, w_size, d])
    centred = blocks - tf.reduce_mean(blocks, axis=1, keepdims=True)
    cov = tf.matmul(centred, centred, transpose_a=True) / (w_size - 1)
    factor = tf.linalg.cholesky(cov)
    eye = tf.eye(d, batch_shape=[n // w_size], dtype=x.dtype)
    inverse = tf.linalg.triangular_solve(factor, eye, lower=True)
    return tf.reshape(tf.matmul(centred, inverse, transpose_b=True), [n, d])


def wmse(z_a: Any, z_b: Any, *, w_size: int) -> Any:
    w_a, w_b = normalize(whiten(z_a, w_size)), normalize(whiten(z_b, w_size))
    return 2.0 - 2.0 * tf.reduce_mean(tf.reduce_sum(w_a * w_b, axis=1))


def moco(q: Any, k: Any, queue: Any) -> Any:
    q, k = normalize(q), normalize(tf.stop_gradient(k))
    l_pos = tf.reduce_sum(q * k, axis=1, keepdims=True)
    l_neg = tf.matmul(q, tf.stop_gradient(queue), transpose_b=True)
    logits = tf.concat([l_pos, l_neg], axis=1) / hp.MOCO_T
    return cross_entropy(logits, tf.zeros([q.shape[0]], dtype=tf.int32))


def mocov3(q_a: Any, q_b: Any, k_a: Any, k_b: Any) -> Any:
    def contrast(q: Any, k: Any) -> Any:
        logits = tf.matmul(normalize(q), normalize(tf.stop_gradient(k)), transpose_b=True)
        return cross_entropy(logits / hp.MOCOV3_T, tf.range(q.shape[0])) * (2.0 * hp.MOCOV3_T)

    return contrast(q_a, k_b) + contrast(q_b, k_a)


def decoupled(u: Any, v: Any, weights: Any = None) -> Any:
    """One direction of DCL: anchors ``u``, positives ``v``; the negatives are the other
    rows of both views (the anchor and its positive masked to -inf)."""
    cross = tf.matmul(u, v, transpose_b=True) / hp.DCL_T
    same = tf.matmul(u, u, transpose_b=True) / hp.DCL_T
    positive = tf.linalg.diag_part(cross)
    if weights is not None:
        positive = weights * positive
    eye = tf.eye(u.shape[0], dtype=tf.bool)
    negatives = tf.concat(
        [tf.where(eye, float("-inf"), cross), tf.where(eye, float("-inf"), same)], axis=1
    )
    return tf.reduce_mean(tf.reduce_logsumexp(negatives, axis=1) - positive)


def dcl(z_a: Any, z_b: Any) -> Any:
    u, v = normalize(z_a), normalize(z_b)
    return decoupled(u, v) + decoupled(v, u)


def dclw(z_a: Any, z_b: Any) -> Any:
    u, v = normalize(z_a), normalize(z_b)
    cos = tf.stop_gradient(tf.reduce_sum(u * v, axis=1))
    weights = 2.0 - u.shape[0] * tf.nn.softmax(cos / hp.DCLW_SIGMA)
    return decoupled(u, v, weights) + decoupled(v, u, weights)


def alignment_uniformity(z_a: Any, z_b: Any) -> Any:
    x, y = normalize(z_a), normalize(z_b)
    align = tf.reduce_mean(tf.norm(x - y, axis=1) ** hp.AU_ALPHA)

    def uniform(u: Any) -> Any:
        # The pairs i < j, as torch.pdist lists them.
        pairs = np.stack(np.triu_indices(u.shape[0], k=1), axis=1)
        return tf.math.log(tf.reduce_mean(tf.exp(-hp.AU_T * tf.gather_nd(sq_dist(u), pairs))))

    return align + (uniform(x) + uniform(y)) / 2


def tico(z_a: Any, z_b: Any, covariance: Any) -> Any:
    u_a, u_b = normalize(z_a), normalize(z_b)
    batch = tf.matmul(u_a, u_a, transpose_a=True) / u_a.shape[0]
    c = hp.TICO_BETA * covariance + (1.0 - hp.TICO_BETA) * batch
    contrast = tf.reduce_mean(tf.reduce_sum(tf.matmul(u_a, c) * u_a, axis=1))
    return -tf.reduce_mean(tf.reduce_sum(u_a * u_b, axis=1)) + hp.TICO_RHO * contrast


def mmcr(z_a: Any, z_b: Any) -> Any:
    centroids = (normalize(z_a) + normalize(z_b)) / 2
    return -tf.reduce_sum(tf.linalg.svd(centroids, compute_uv=False))


def nnclr(p_a: Any, p_b: Any, z_a: Any, z_b: Any, support: Any) -> Any:
    def nearest(z: Any) -> Any:
        scores = tf.matmul(normalize(tf.stop_gradient(z)), support, transpose_b=True)
        return tf.gather(support, tf.argmax(scores, axis=1))

    def contrast(neighbour: Any, p: Any) -> Any:
        logits = tf.matmul(normalize(neighbour), normalize(p), transpose_b=True) / hp.NNCLR_T
        return cross_entropy(logits, tf.range(p.shape[0]))

    return 0.5 * (contrast(nearest(z_a), p_b) + contrast(nearest(z_b), p_a))


def dino(z_a: Any, z_b: Any, t_a: Any, t_b: Any, center: Any, prototypes: Any) -> Any:
    # The head's last layer: unit prototypes against the normalised bottleneck.
    w = normalize(prototypes)
    student = [tf.matmul(normalize(z), w, transpose_b=True) / hp.DINO_STUDENT_T
               for z in (z_a, z_b)]
    teacher = [
        tf.stop_gradient(tf.nn.softmax(
            (tf.matmul(normalize(t), w, transpose_b=True) - center) / hp.DINO_TEACHER_T
        ))
        for t in (t_a, t_b)
    ]
    total: Any = 0.0
    for i, q in enumerate(teacher):
        for v, s in enumerate(student):
            if v != i:
                total += tf.reduce_mean(tf.reduce_sum(-q * tf.nn.log_softmax(s), axis=1))
    return total / 2


def koleo(z: Any) -> Any:
    u = normalize(z)
    dots = tf.stop_gradient(tf.matmul(u, u, transpose_b=True))
    dots = tf.where(tf.eye(u.shape[0], dtype=tf.bool), -2.0, dots)
    neighbour = tf.gather(u, tf.argmax(dots, axis=1))
    distance = tf.norm(u - neighbour + hp.KOLEO_EPS, axis=1)
    return -tf.reduce_mean(tf.math.log(distance + hp.KOLEO_EPS))


NATIVES: dict[str, Callable[..., Any]] = {
    "byol": byol,
    "barlow_twins": barlow_twins,
    "swav": swav,
    "swav_score": score,
    "simclr": simclr,
    "adc": adc,
    "simsiam": simsiam,
    "vicreg": vicreg,
    "wmse": wmse,
    "moco": moco,
    "mocov3": mocov3,
    "dcl": dcl,
    "dclw": dclw,
    "alignment_uniformity": alignment_uniformity,
    "tico": tico,
    "mmcr": mmcr,
    "nnclr": nnclr,
    "dino": dino,
    "koleo": koleo,
}
