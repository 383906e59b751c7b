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


NATIVES: dict[str, Callable[..., Any]] = {
    "byol": byol,
    "barlow_twins": barlow_twins,
    "swav": swav,
    "swav_score": score,
    "simclr": simclr,
    "adc": adc,
}
