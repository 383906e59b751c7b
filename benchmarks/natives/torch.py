"""The benchmarked losses written directly in PyTorch (``torch.nn.functional``).

Hyperparameters come from :mod:`natives` (``hp``); the conventions are listed there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import natives as hp


def off_diagonal(x: Any) -> Any:
    m = x.shape[0]
    return x.flatten()[:-1].view(m - 1, m + 1)[:, 1:].reshape(m, m - 1)


def byol(p_a: Any, p_b: Any, z_a: Any, z_b: Any) -> Any:
    def regression(p: Any, z: Any) -> Any:
        p, z = F.normalize(p, dim=1), F.normalize(z.detach(), dim=1)
        return 2.0 - 2.0 * (p * z).sum(dim=1)

    return (regression(p_a, z_b) + regression(p_b, z_a)).mean()


def barlow_twins(z_a: Any, z_b: Any) -> Any:
    n = z_a.shape[0]
    za = F.batch_norm(z_a, None, None, training=True, eps=hp.BN_EPS)
    zb = F.batch_norm(z_b, None, None, training=True, eps=hp.BN_EPS)
    c = za.T @ zb / n
    on_diag = (torch.diagonal(c) - 1.0).pow(2).sum()
    return on_diag + hp.LAMBD * off_diagonal(c).pow(2).sum()


@torch.no_grad()
def sinkhorn(scores: Any) -> Any:
    # In place, as the official code writes it: no gradient flows through the codes.
    q = torch.exp(scores / hp.SWAV_EPS).T  # (K, B)
    q /= q.sum()
    k, b = q.shape
    for _ in range(hp.SWAV_ITERS):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    q *= b
    return q.T


def score(z: Any, w: Any) -> Any:
    return F.normalize(z, dim=1) @ w.T


def swav_of_scores(s_a: Any, s_b: Any) -> Any:
    q_a, q_b = sinkhorn(s_a), sinkhorn(s_b)
    ce_a = (q_a * F.log_softmax(s_b / hp.SWAV_T, dim=1)).sum(dim=1).mean()
    ce_b = (q_b * F.log_softmax(s_a / hp.SWAV_T, dim=1)).sum(dim=1).mean()
    return -0.5 * (ce_a + ce_b)


def simclr(z_a: Any, z_b: Any) -> Any:
    n = z_a.shape[0]
    u = F.normalize(torch.cat([z_a, z_b]), dim=1)
    logits = u @ u.T / hp.SIMCLR_T
    eye = torch.eye(2 * n, dtype=torch.bool, device=u.device)
    logits = logits.masked_fill(eye, float("-inf"))
    labels = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(u.device)
    return F.cross_entropy(logits, labels)


def sq_dist(x: Any) -> Any:
    sq = (x * x).sum(dim=1)
    return (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)


def perplexity_scale(d: Any) -> Any:
    # t-SNE's bisection on log(1/b), entropy as beta E[d] + log Z on shifted rows.
    d = d - d.min(dim=1, keepdim=True).values
    base = -torch.log(d.max(dim=1, keepdim=True).values.clamp_min(hp.TINY))
    lo, hi = base - 10.0, base + 20.0
    target = math.log(hp.ADC_PERPLEXITY)
    for _ in range(hp.ADC_STEPS):
        mid = (lo + hi) / 2.0
        beta = torch.exp(mid)
        w = torch.exp(-beta * d)
        z = w.sum(dim=1, keepdim=True)
        h = beta * (w * d).sum(dim=1, keepdim=True) / z + torch.log(z)
        flat = h > target
        lo, hi = torch.where(flat, mid, lo), torch.where(flat, hi, mid)
    return torch.exp(-(lo + hi) / 2.0).clamp_min(hp.TINY)


def adc(z_a: Any, z_b: Any, prior: Any) -> Any:
    n = z_a.shape[0]
    d = off_diagonal(sq_dist(F.normalize(torch.cat([z_a, z_b]), dim=1)))
    with torch.no_grad():
        e = prior.reshape(n, -1).to(z_a.dtype)
        r = off_diagonal(sq_dist(e - e.mean(dim=0)).repeat(2, 2))
        sigma2 = (perplexity_scale(d) / 2.0).clamp_min(hp.TINY)
        tau = perplexity_scale(r)
        log_cal = F.log_softmax(-d / (2.0 * sigma2), dim=1)
        log_pre = F.log_softmax(-r / tau, dim=1)
        p_cal, p_pre = log_cal.exp(), log_pre.exp()
        inv_h = 1.0 / (-(p_pre * log_pre).sum(dim=1)).clamp_min(hp.TINY)
        weights = inv_h / inv_h.mean()
    scaled = d * ((hp.ADC_RHO - 2.0) / hp.ADC_RHO**2) / sigma2
    log_q = F.log_softmax(-0.5 * (hp.ADC_RHO + 1.0) * torch.log1p(scaled), dim=1)
    dcm = (weights * (p_cal * (log_cal - log_q)).sum(dim=1)).mean()
    lpm = (p_pre * (log_pre - log_q)).sum(dim=1).mean()
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
