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


# --- the method zoo -------------------------------------------------------------------


def simsiam(p_a: Any, p_b: Any, z_a: Any, z_b: Any) -> Any:
    # nn.CosineSimilarity(dim=1) against detached targets, both directions averaged.
    cos_ab = F.cosine_similarity(p_a, z_b.detach(), dim=1).mean()
    cos_ba = F.cosine_similarity(p_b, z_a.detach(), dim=1).mean()
    return -0.5 * (cos_ab + cos_ba)


def vicreg(z_a: Any, z_b: Any) -> Any:
    n, d = z_a.shape
    invariance = F.mse_loss(z_a, z_b)
    x, y = z_a - z_a.mean(dim=0), z_b - z_b.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + hp.VICREG_EPS)
    std_y = torch.sqrt(y.var(dim=0) + hp.VICREG_EPS)
    variance = F.relu(1.0 - std_x).mean() / 2 + F.relu(1.0 - std_y).mean() / 2
    cov_x, cov_y = x.T @ x / (n - 1), y.T @ y / (n - 1)
    covariance = off_diagonal(cov_x).pow(2).sum() / d + off_diagonal(cov_y).pow(2).sum() / d
    return hp.VICREG_SIM * invariance + hp.VICREG_STD * variance + hp.VICREG_COV * covariance


def whiten(x: Any, w_size: int) -> Any:
    """Each contiguous sub-batch of ``w_size`` rows times the inverse of its covariance's
    Cholesky factor (transposed), all sub-batches in one batched call."""
    n, d = x.shape
    blocks = x.reshape(n // w_size, w_size, d)
    centred = blocks - blocks.mean(dim=1, keepdim=True)
    cov = centred.transpose(1, 2) @ centred / (w_size - 1)
    factor = torch.linalg.cholesky(cov)
    eye = torch.eye(d, dtype=x.dtype, device=x.device).expand_as(cov)
    inverse = torch.linalg.solve_triangular(factor, eye, upper=False)
    return (centred @ inverse.transpose(1, 2)).reshape(n, d)


def wmse(z_a: Any, z_b: Any, *, w_size: int) -> Any:
    w_a = F.normalize(whiten(z_a, w_size), dim=1)
    w_b = F.normalize(whiten(z_b, w_size), dim=1)
    return 2.0 - 2.0 * (w_a * w_b).sum(dim=1).mean()


def moco(q: Any, k: Any, queue: Any) -> Any:
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach(), dim=1)
    l_pos = (q * k).sum(dim=1, keepdim=True)
    l_neg = q @ queue.detach().T
    logits = torch.cat([l_pos, l_neg], dim=1) / hp.MOCO_T
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels)


def mocov3(q_a: Any, q_b: Any, k_a: Any, k_b: Any) -> Any:
    def contrast(q: Any, k: Any) -> Any:
        q, k = F.normalize(q, dim=1), F.normalize(k.detach(), dim=1)
        logits = q @ k.T / hp.MOCOV3_T
        labels = torch.arange(q.shape[0], device=q.device)
        return F.cross_entropy(logits, labels) * (2.0 * hp.MOCOV3_T)

    return contrast(q_a, k_b) + contrast(q_b, k_a)


def decoupled(u: Any, v: Any, weights: Any = None) -> Any:
    """One direction of DCL: anchors ``u``, positives ``v``; the negatives are the other
    rows of both views (the anchor and its positive masked to -inf)."""
    cross = u @ v.T / hp.DCL_T
    same = u @ u.T / hp.DCL_T
    positive = torch.diagonal(cross)
    if weights is not None:
        positive = weights * positive
    eye = torch.eye(u.shape[0], dtype=torch.bool, device=u.device)
    negatives = torch.cat([cross.masked_fill(eye, float("-inf")),
                           same.masked_fill(eye, float("-inf"))], dim=1)
    return (torch.logsumexp(negatives, dim=1) - positive).mean()


def dcl(z_a: Any, z_b: Any) -> Any:
    u, v = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    return decoupled(u, v) + decoupled(v, u)


def dclw(z_a: Any, z_b: Any) -> Any:
    u, v = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    with torch.no_grad():
        cos = (u * v).sum(dim=1)
        weights = 2.0 - u.shape[0] * F.softmax(cos / hp.DCLW_SIGMA, dim=0)
    return decoupled(u, v, weights) + decoupled(v, u, weights)


def alignment_uniformity(z_a: Any, z_b: Any) -> Any:
    x, y = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    align = (x - y).norm(p=2, dim=1).pow(hp.AU_ALPHA).mean()

    def uniform(u: Any) -> Any:
        return torch.pdist(u, p=2).pow(2).mul(-hp.AU_T).exp().mean().log()

    return align + (uniform(x) + uniform(y)) / 2


def tico(z_a: Any, z_b: Any, covariance: Any) -> Any:
    u_a, u_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    batch = u_a.T @ u_a / u_a.shape[0]
    c = hp.TICO_BETA * covariance + (1.0 - hp.TICO_BETA) * batch
    contrast = ((u_a @ c) * u_a).sum(dim=1).mean()
    return -(u_a * u_b).sum(dim=1).mean() + hp.TICO_RHO * contrast


def mmcr(z_a: Any, z_b: Any) -> Any:
    centroids = (F.normalize(z_a, dim=1) + F.normalize(z_b, dim=1)) / 2
    return -torch.linalg.svdvals(centroids).sum()


def nnclr(p_a: Any, p_b: Any, z_a: Any, z_b: Any, support: Any) -> Any:
    def nearest(z: Any) -> Any:
        with torch.no_grad():
            index = (F.normalize(z, dim=1) @ support.T).argmax(dim=1)
        return support[index]

    def contrast(neighbour: Any, p: Any) -> Any:
        logits = F.normalize(neighbour, dim=1) @ F.normalize(p, dim=1).T / hp.NNCLR_T
        return F.cross_entropy(logits, torch.arange(p.shape[0], device=p.device))

    return 0.5 * (contrast(nearest(z_a), p_b) + contrast(nearest(z_b), p_a))


def dino(z_a: Any, z_b: Any, t_a: Any, t_b: Any, center: Any, prototypes: Any) -> Any:
    # The head's last layer: unit prototypes against the normalised bottleneck.
    w = F.normalize(prototypes, dim=1)
    student = [F.normalize(z, dim=1) @ w.T / hp.DINO_STUDENT_T for z in (z_a, z_b)]
    with torch.no_grad():
        teacher = [F.softmax((F.normalize(t, dim=1) @ w.T - center) / hp.DINO_TEACHER_T, dim=1)
                   for t in (t_a, t_b)]
    total: Any = 0.0
    for i, q in enumerate(teacher):
        for v, s in enumerate(student):
            if v != i:
                total = total + (-q * F.log_softmax(s, dim=1)).sum(dim=1).mean()
    return total / 2


def koleo(z: Any) -> Any:
    u = F.normalize(z, dim=1)
    with torch.no_grad():
        dots = u @ u.T
        dots.fill_diagonal_(-2.0)
        index = dots.argmax(dim=1)
    distance = F.pairwise_distance(u, u[index], p=2, eps=hp.KOLEO_EPS)
    return -torch.log(distance + hp.KOLEO_EPS).mean()


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
