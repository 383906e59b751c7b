"""The benchmarked losses written directly in JAX (``jax.numpy``, ``jax.nn``, ``lax``).

Hyperparameters are the package's (``hp``), whose docstring gives the shared rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import natives as hp

sg = jax.lax.stop_gradient


def normalize(x: Any) -> Any:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def off_diagonal(x: Any) -> Any:
    m = x.shape[0]
    return x.reshape(-1)[:-1].reshape(m - 1, m + 1)[:, 1:].reshape(m, m - 1)


def byol(p_a: Any, p_b: Any, z_a: Any, z_b: Any) -> Any:
    def regression(p: Any, z: Any) -> Any:
        return 2.0 - 2.0 * jnp.sum(normalize(p) * normalize(sg(z)), axis=1)

    return jnp.mean(regression(p_a, z_b) + regression(p_b, z_a))


def batch_norm(z: Any) -> Any:
    return (z - z.mean(axis=0)) / jnp.sqrt(z.var(axis=0) + hp.BN_EPS)


def barlow_twins(z_a: Any, z_b: Any) -> Any:
    c = batch_norm(z_a).T @ batch_norm(z_b) / z_a.shape[0]
    on_diag = jnp.sum((jnp.diagonal(c) - 1.0) ** 2)
    return on_diag + hp.LAMBD * jnp.sum(off_diagonal(c) ** 2)


def sinkhorn(scores: Any) -> Any:
    q = jnp.exp(sg(scores) / hp.SWAV_EPS).T
    q = q / q.sum()
    k, b = q.shape
    for _ in range(hp.SWAV_ITERS):
        q = q / q.sum(axis=1, keepdims=True) / k
        q = q / q.sum(axis=0, keepdims=True) / b
    return (q * b).T


def score(z: Any, w: Any) -> Any:
    return normalize(z) @ w.T


def swav_of_scores(s_a: Any, s_b: Any) -> Any:
    q_a, q_b = sinkhorn(s_a), sinkhorn(s_b)
    ce_a = jnp.mean(jnp.sum(q_a * jax.nn.log_softmax(s_b / hp.SWAV_T, axis=1), axis=1))
    ce_b = jnp.mean(jnp.sum(q_b * jax.nn.log_softmax(s_a / hp.SWAV_T, axis=1), axis=1))
    return -0.5 * (ce_a + ce_b)


def simclr(z_a: Any, z_b: Any) -> Any:
    n = z_a.shape[0]
    u = normalize(jnp.concatenate([z_a, z_b]))
    logits = u @ u.T / hp.SIMCLR_T
    logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
    labels = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    log_p = jax.nn.log_softmax(logits, axis=1)
    return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1))


def sq_dist(x: Any) -> Any:
    sq = jnp.sum(x * x, axis=1)
    return jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)


def perplexity_scale(d: Any) -> Any:
    d = d - d.min(axis=1, keepdims=True)
    base = -jnp.log(jnp.maximum(d.max(axis=1, keepdims=True), hp.TINY))
    target = math.log(hp.ADC_PERPLEXITY)

    def bisect(_: Any, bracket: tuple[Any, Any]) -> tuple[Any, Any]:
        lo, hi = bracket
        mid = (lo + hi) / 2.0
        beta = jnp.exp(mid)
        w = jnp.exp(-beta * d)
        z = w.sum(axis=1, keepdims=True)
        flat = beta * jnp.sum(w * d, axis=1, keepdims=True) / z + jnp.log(z) > target
        return jnp.where(flat, mid, lo), jnp.where(flat, hi, mid)

    lo, hi = jax.lax.fori_loop(0, hp.ADC_STEPS, bisect, (base - 10.0, base + 20.0))
    return jnp.maximum(jnp.exp(-(lo + hi) / 2.0), hp.TINY)


def adc(z_a: Any, z_b: Any, prior: Any) -> Any:
    n = z_a.shape[0]
    d = off_diagonal(sq_dist(normalize(jnp.concatenate([z_a, z_b]))))
    e = prior.reshape(n, -1).astype(z_a.dtype)
    r = off_diagonal(jnp.tile(sq_dist(e - e.mean(axis=0)), (2, 2)))
    sigma2 = sg(jnp.maximum(perplexity_scale(sg(d)) / 2.0, hp.TINY))
    tau = perplexity_scale(r)
    log_cal = sg(jax.nn.log_softmax(-d / (2.0 * sigma2), axis=1))
    log_pre = jax.nn.log_softmax(-r / tau, axis=1)
    p_cal, p_pre = jnp.exp(log_cal), jnp.exp(log_pre)
    inv_h = 1.0 / jnp.maximum(-jnp.sum(p_pre * log_pre, axis=1), hp.TINY)
    weights = inv_h / inv_h.mean()
    scaled = d * ((hp.ADC_RHO - 2.0) / hp.ADC_RHO**2) / sigma2
    log_q = jax.nn.log_softmax(-0.5 * (hp.ADC_RHO + 1.0) * jnp.log1p(scaled), axis=1)
    dcm = jnp.mean(weights * jnp.sum(p_cal * (log_cal - log_q), axis=1))
    lpm = jnp.mean(jnp.sum(p_pre * (log_pre - log_q), axis=1))
    return hp.ADC_NU * dcm + hp.ADC_UPSILON * lpm


def swav(z_a: Any, z_b: Any, w: Any) -> Any:
    """SwAV of the scores n(z) W^T of both views against the (K, D) prototypes ``w``."""
    return swav_of_scores(score(z_a, w), score(z_b, w))


# --- the method zoo -------------------------------------------------------------------


def cross_entropy(logits: Any, labels: Any) -> Any:
    log_p = jax.nn.log_softmax(logits, axis=1)
    return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1))


def simsiam(p_a: Any, p_b: Any, z_a: Any, z_b: Any) -> Any:
    def cosine(p: Any, z: Any) -> Any:
        return jnp.mean(jnp.sum(normalize(p) * normalize(sg(z)), axis=1))

    return -0.5 * (cosine(p_a, z_b) + cosine(p_b, z_a))


def vicreg(z_a: Any, z_b: Any) -> Any:
    n, d = z_a.shape
    invariance = jnp.mean((z_a - z_b) ** 2)
    x, y = z_a - z_a.mean(axis=0), z_b - z_b.mean(axis=0)
    std_x = jnp.sqrt(x.var(axis=0, ddof=1) + hp.VICREG_EPS)
    std_y = jnp.sqrt(y.var(axis=0, ddof=1) + hp.VICREG_EPS)
    variance = jnp.mean(jax.nn.relu(1.0 - std_x)) / 2 + jnp.mean(jax.nn.relu(1.0 - std_y)) / 2
    cov_x, cov_y = x.T @ x / (n - 1), y.T @ y / (n - 1)
    covariance = jnp.sum(off_diagonal(cov_x) ** 2) / d + jnp.sum(off_diagonal(cov_y) ** 2) / d
    return hp.VICREG_SIM * invariance + hp.VICREG_STD * variance + hp.VICREG_COV * covariance


def whiten(x: Any, w_size: int) -> Any:
    """Each contiguous sub-batch of ``w_size`` rows times the inverse of its covariance's
    Cholesky factor (transposed), all sub-batches in one batched call."""
    n, d = x.shape
    blocks = x.reshape(n // w_size, w_size, d)
    centred = blocks - blocks.mean(axis=1, keepdims=True)
    cov = jnp.swapaxes(centred, 1, 2) @ centred / (w_size - 1)
    factor = jnp.linalg.cholesky(cov)
    eye = jnp.broadcast_to(jnp.eye(d, dtype=x.dtype), cov.shape)
    inverse = jax.scipy.linalg.solve_triangular(factor, eye, lower=True)
    return (centred @ jnp.swapaxes(inverse, 1, 2)).reshape(n, d)


def wmse(z_a: Any, z_b: Any, *, w_size: int) -> Any:
    w_a, w_b = normalize(whiten(z_a, w_size)), normalize(whiten(z_b, w_size))
    return 2.0 - 2.0 * jnp.mean(jnp.sum(w_a * w_b, axis=1))


def moco(q: Any, k: Any, queue: Any) -> Any:
    q, k = normalize(q), normalize(sg(k))
    l_pos = jnp.sum(q * k, axis=1, keepdims=True)
    l_neg = q @ sg(queue).T
    logits = jnp.concatenate([l_pos, l_neg], axis=1) / hp.MOCO_T
    return cross_entropy(logits, jnp.zeros(q.shape[0], dtype=jnp.int32))


def mocov3(q_a: Any, q_b: Any, k_a: Any, k_b: Any) -> Any:
    def contrast(q: Any, k: Any) -> Any:
        logits = normalize(q) @ normalize(sg(k)).T / hp.MOCOV3_T
        return cross_entropy(logits, jnp.arange(q.shape[0])) * (2.0 * hp.MOCOV3_T)

    return contrast(q_a, k_b) + contrast(q_b, k_a)


def decoupled(u: Any, v: Any, weights: Any = None) -> Any:
    """One direction of DCL: anchors ``u``, positives ``v``; the negatives are the other
    rows of both views (the anchor and its positive masked to -inf)."""
    cross = u @ v.T / hp.DCL_T
    same = u @ u.T / hp.DCL_T
    positive = jnp.diagonal(cross)
    if weights is not None:
        positive = weights * positive
    eye = jnp.eye(u.shape[0], dtype=bool)
    negatives = jnp.concatenate(
        [jnp.where(eye, -jnp.inf, cross), jnp.where(eye, -jnp.inf, same)], axis=1
    )
    return jnp.mean(jax.nn.logsumexp(negatives, axis=1) - positive)


def dcl(z_a: Any, z_b: Any) -> Any:
    u, v = normalize(z_a), normalize(z_b)
    return decoupled(u, v) + decoupled(v, u)


def dclw(z_a: Any, z_b: Any) -> Any:
    u, v = normalize(z_a), normalize(z_b)
    cos = sg(jnp.sum(u * v, axis=1))
    weights = 2.0 - u.shape[0] * jax.nn.softmax(cos / hp.DCLW_SIGMA)
    return decoupled(u, v, weights) + decoupled(v, u, weights)


def alignment_uniformity(z_a: Any, z_b: Any) -> Any:
    x, y = normalize(z_a), normalize(z_b)
    align = jnp.mean(jnp.linalg.norm(x - y, axis=1) ** hp.AU_ALPHA)

    def uniform(u: Any) -> Any:
        i, j = jnp.triu_indices(u.shape[0], k=1)  # the pairs i < j, as torch.pdist
        return jnp.log(jnp.mean(jnp.exp(-hp.AU_T * sq_dist(u)[i, j])))

    return align + (uniform(x) + uniform(y)) / 2


def tico(z_a: Any, z_b: Any, covariance: Any) -> Any:
    u_a, u_b = normalize(z_a), normalize(z_b)
    c = hp.TICO_BETA * covariance + (1.0 - hp.TICO_BETA) * (u_a.T @ u_a / u_a.shape[0])
    contrast = jnp.mean(jnp.sum((u_a @ c) * u_a, axis=1))
    return -jnp.mean(jnp.sum(u_a * u_b, axis=1)) + hp.TICO_RHO * contrast


def mmcr(z_a: Any, z_b: Any) -> Any:
    centroids = (normalize(z_a) + normalize(z_b)) / 2
    return -jnp.sum(jnp.linalg.svd(centroids, compute_uv=False))


def nnclr(p_a: Any, p_b: Any, z_a: Any, z_b: Any, support: Any) -> Any:
    def nearest(z: Any) -> Any:
        return support[jnp.argmax(sg(normalize(z)) @ support.T, axis=1)]

    def contrast(neighbour: Any, p: Any) -> Any:
        logits = normalize(sg(neighbour)) @ normalize(p).T / hp.NNCLR_T
        return cross_entropy(logits, jnp.arange(p.shape[0]))

    return 0.5 * (contrast(nearest(z_a), p_b) + contrast(nearest(z_b), p_a))


def dino(z_a: Any, z_b: Any, t_a: Any, t_b: Any, center: Any, prototypes: Any) -> Any:
    # The head's last layer: unit prototypes against the normalised bottleneck.
    w = normalize(prototypes)
    student = [normalize(z) @ w.T / hp.DINO_STUDENT_T for z in (z_a, z_b)]
    teacher = [sg(jax.nn.softmax((normalize(t) @ w.T - center) / hp.DINO_TEACHER_T, axis=1))
               for t in (t_a, t_b)]
    total: Any = 0.0
    for i, q in enumerate(teacher):
        for v, s in enumerate(student):
            if v != i:
                total = total + jnp.mean(jnp.sum(-q * jax.nn.log_softmax(s, axis=1), axis=1))
    return total / 2


def koleo(z: Any) -> Any:
    u = normalize(z)
    dots = sg(u @ u.T)
    dots = jnp.where(jnp.eye(u.shape[0], dtype=bool), -2.0, dots)
    neighbour = u[jnp.argmax(dots, axis=1)]
    distance = jnp.linalg.norm(u - neighbour + hp.KOLEO_EPS, axis=1)
    return -jnp.mean(jnp.log(distance + hp.KOLEO_EPS))


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
