"""Plain-NumPy float64 references of the method zoo, written from the official code.

Independent of :mod:`glf_losses`: loops and NumPy's own linear algebra, following each
official implementation step by step (the file is named in each docstring), so that the
spec is checked against the published convention and not against itself.
"""

from __future__ import annotations

import numpy as np


def cosine(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))


def ref_simsiam(p_a, p_b, z_a, z_b) -> float:
    """facebookresearch/simsiam main_simsiam.py: -(cos(p1, z2).mean() + cos(p2, z1).mean())
    * 0.5 with nn.CosineSimilarity(dim=1)."""
    n = len(p_a)
    first = sum(cosine(p_a[i], z_b[i]) for i in range(n)) / n
    second = sum(cosine(p_b[i], z_a[i]) for i in range(n)) / n
    return -(first + second) * 0.5


def ref_vicreg_terms(x, y, eps=1e-4) -> tuple[float, float, float]:
    """facebookresearch/vicreg main_vicreg.py VICReg.forward, unweighted:
    (F.mse_loss(x, y), std_loss, cov_loss)."""
    n, d = x.shape
    repr_loss = float(np.mean((x - y) ** 2))
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    std_x = np.sqrt(x.var(axis=0, ddof=1) + eps)
    std_y = np.sqrt(y.var(axis=0, ddof=1) + eps)
    std_loss = np.mean(np.maximum(1 - std_x, 0)) / 2 + np.mean(np.maximum(1 - std_y, 0)) / 2
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)

    def off_diagonal_sq(c: np.ndarray) -> float:
        return sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)

    cov_loss = off_diagonal_sq(cov_x) / d + off_diagonal_sq(cov_y) / d
    return repr_loss, float(std_loss), float(cov_loss)


def ref_vicreg(x, y, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, eps=1e-4) -> float:
    repr_loss, std_loss, cov_loss = ref_vicreg_terms(x, y, eps)
    return sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss


def ref_whitening(x: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """htdt/self-supervised methods/whitening.py Whitening2d (training mode): centre, the
    unbiased covariance, shrink, Cholesky, solve L W = I, then x W^T."""
    d = x.shape[1]
    xn = x - x.mean(axis=0)
    f_cov = xn.T @ xn / (len(x) - 1)
    shrunk = (1 - eps) * f_cov + eps * np.eye(d)
    factor = np.linalg.cholesky(shrunk)
    inv_sqrt = np.linalg.solve(factor, np.eye(d))
    return xn @ inv_sqrt.T


def ref_norm_mse(x0: np.ndarray, x1: np.ndarray) -> float:
    """htdt/self-supervised methods/norm_mse.py: 2 - 2 (n(x0) * n(x1)).sum(-1).mean()."""
    return 2.0 - 2.0 * float(np.mean([cosine(a, b) for a, b in zip(x0, x1, strict=True)]))


def ref_wmse(z_a, z_b, permutations=None, w_size=128, eps=0.0) -> float:
    """htdt/self-supervised methods/w_mse.py WMSE.forward for two views, with the
    permutations given instead of drawn: whitened rows are written back to the rows they
    came from (``z[idx] = whitening(h[idx])``), then the views are compared row by row."""
    bs = len(z_a)
    if permutations is None:
        permutations = np.arange(bs)[None, :]
    loss = 0.0
    for perm in permutations:
        out_a, out_b = np.empty_like(z_a), np.empty_like(z_b)
        for idx in perm.reshape(-1, w_size):
            out_a[idx] = ref_whitening(z_a[idx], eps)
            out_b[idx] = ref_whitening(z_b[idx], eps)
        loss += ref_norm_mse(out_a, out_b)
    return loss / len(permutations)


def ref_log_softmax_row(row: np.ndarray) -> np.ndarray:
    m = row.max()
    return row - m - np.log(np.sum(np.exp(row - m)))


def ref_mocov3(q_a, q_b, k_a, k_b, temperature=1.0) -> float:
    """facebookresearch/moco-v3 moco/builder.py: contrastive_loss(q1, k2) +
    contrastive_loss(q2, k1), each CrossEntropyLoss(q k^T / T, arange(N)) * 2T on
    normalised rows."""

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def contrastive(q: np.ndarray, k: np.ndarray) -> float:
        logits = unit(q) @ unit(k).T / temperature
        ce = -np.mean([ref_log_softmax_row(logits[i])[i] for i in range(len(q))])
        return float(ce) * 2 * temperature

    return contrastive(q_a, k_b) + contrastive(q_b, k_a)


def unit_rows(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def ref_moco(q, k, queue=None, temperature=0.2) -> float:
    """facebookresearch/moco moco/builder.py MoCo.forward: l_pos = q.k, l_neg = q queue
    (the official queue is (D, K); here its rows), logits [l_pos, l_neg] / T, cross-entropy
    with label 0. Without a queue: logits q k^T / T over the batch, label i."""
    q, k = unit_rows(q), unit_rows(k)
    n = len(q)
    total = 0.0
    for i in range(n):
        if queue is None:
            logits = np.array([q[i] @ k[j] for j in range(n)]) / temperature
            total -= ref_log_softmax_row(logits)[i]
        else:
            l_neg = [q[i] @ queue[j] for j in range(len(queue))]
            logits = np.array([q[i] @ k[i], *l_neg]) / temperature
            total -= ref_log_softmax_row(logits)[0]
    return total / n


def ref_moco_ring_enqueue(queue_t: np.ndarray, ptr: int, keys: np.ndarray) -> int:
    """facebookresearch/moco _dequeue_and_enqueue on a (D, K) queue, in place: the
    normalised keys overwrite columns ptr .. ptr + N; returns the new pointer."""
    n, k_size = len(keys), queue_t.shape[1]
    assert k_size % n == 0
    queue_t[:, ptr : ptr + n] = unit_rows(keys).T
    return (ptr + n) % k_size


def _dcl_one_way(u1: np.ndarray, u2: np.ndarray, t: float, weights: np.ndarray) -> float:
    n = len(u1)
    total = 0.0
    for i in range(n):
        negatives = [u1[i] @ u1[j] / t for j in range(n) if j != i]
        negatives += [u1[i] @ u2[j] / t for j in range(n) if j != i]
        m = max(negatives)
        lse = m + np.log(np.sum(np.exp(np.array(negatives) - m)))
        total += -weights[i] * (u1[i] @ u2[i]) / t + lse
    return total / n


def ref_dcl(z_a, z_b, temperature=0.1) -> float:
    """Yeh et al. 2022, eq. of the DCL loss, as raminnakhli/Decoupled-Contrastive-Learning
    loss/dcl.py (the two one-way losses summed) on L2-normalised rows."""
    u_a, u_b = unit_rows(z_a), unit_rows(z_b)
    ones = np.ones(len(u_a))
    return _dcl_one_way(u_a, u_b, temperature, ones) + _dcl_one_way(u_b, u_a, temperature, ones)


def ref_dclw_weights(z_a, z_b, sigma=0.5) -> np.ndarray:
    """2 - N softmax(s / sigma) over the batch (lightly's negative_mises_fisher_weights)."""
    s = np.sum(unit_rows(z_a) * unit_rows(z_b), axis=1) / sigma
    e = np.exp(s - s.max())
    return 2.0 - len(s) * e / e.sum()


def ref_dclw(z_a, z_b, temperature=0.1, sigma=0.5, weights=None) -> float:
    """DCL with the positive terms weighted; ``weights`` holds them fixed (no gradient
    flows through them, so finite differences must not move them)."""
    if weights is None:
        weights = ref_dclw_weights(z_a, z_b, sigma)
    u_a, u_b = unit_rows(z_a), unit_rows(z_b)
    return _dcl_one_way(u_a, u_b, temperature, weights) + _dcl_one_way(
        u_b, u_a, temperature, weights
    )


def ref_align_uniform(z_a, z_b, alpha=2.0, t=2.0, align_weight=1.0, uniform_weight=1.0):
    """SsnL/align_uniform main.py on L2-normalised features: align_loss(x, y, alpha) *
    align_w + (uniform_loss(x, t) + uniform_loss(y, t)) / 2 * unif_w, with torch.pdist's
    unordered pairs. Returns (weighted alignment, weighted uniformity)."""
    x, y = unit_rows(z_a), unit_rows(z_b)
    n = len(x)
    align = float(np.mean([np.linalg.norm(x[i] - y[i]) ** alpha for i in range(n)]))

    def uniform(v: np.ndarray) -> float:
        pairs = [np.sum((v[i] - v[j]) ** 2) for i in range(n) for j in range(i + 1, n)]
        return float(np.log(np.mean(np.exp(-t * np.array(pairs)))))

    return align_weight * align, uniform_weight * (uniform(x) + uniform(y)) / 2


def ref_align_uniform_loss(*args, **kwargs) -> float:
    return sum(ref_align_uniform(*args, **kwargs))


def ref_koleo(z, eps=1e-8, neighbours=None) -> float:
    """facebookresearch/dinov2 dinov2/loss/koleo_loss.py KoLeoLoss.forward: F.normalize
    (norm floor eps), the nearest neighbour by the largest inner product with the
    diagonal filled with -1, nn.PairwiseDistance(2, eps) (|x - y + eps|), then
    -log(d + eps).mean(). ``neighbours`` holds the indices fixed (finite differences)."""
    x = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), eps)
    n = len(x)
    if neighbours is None:
        dots = x @ x.T
        dots[np.arange(n), np.arange(n)] = -1.0
        neighbours = np.argmax(dots, axis=1)
    distances = [np.linalg.norm(x[i] - x[neighbours[i]] + eps) for i in range(n)]
    return float(-np.mean(np.log(np.array(distances) + eps)))


def ref_koleo_neighbours(z, eps=1e-8) -> np.ndarray:
    x = unit_rows(z)
    dots = x @ x.T
    dots[np.arange(len(x)), np.arange(len(x))] = -1.0
    return np.argmax(dots, axis=1)


def ref_tico(z_a, z_b, covariance, beta=0.9, rho=20.0) -> float:
    """TiCo, Algorithm 1 of Zhu et al. 2022 (no authors' code): z normalised,
    B = z1^T z1 / N, C = beta C + (1 - beta) B, loss = -(z1 * z2).sum(1).mean()
    + rho * (z1 C * z1).sum(1).mean(), the batch term differentiated."""
    u_a, u_b = unit_rows(z_a), unit_rows(z_b)
    n = len(u_a)
    c = beta * covariance + (1 - beta) * (u_a.T @ u_a) / n
    invariance = -np.mean([u_a[i] @ u_b[i] for i in range(n)])
    contrast = np.mean([u_a[i] @ c @ u_a[i] for i in range(n)])
    return float(invariance + rho * contrast)


def ref_tico_parts(z_a, z_b, covariance, beta=0.9, rho=20.0) -> tuple[float, float]:
    u_a, u_b = unit_rows(z_a), unit_rows(z_b)
    align = float(-np.mean(np.sum(u_a * u_b, axis=1)))
    return align, ref_tico(z_a, z_b, covariance, beta, rho) - align


def ref_mmcr_parts(z, n_views, lmbda=0.0) -> tuple[float, float]:
    """ThomasYerxa/mmcr mmcr/cifar_stl/loss_mmcr.py: F.normalize, rearrange "(B N) C ->
    B C N", centroids = mean over N, local_nuc = sum of svdvals of each (C, N) matrix,
    loss = lmbda * local_nuc / B - nuclear norm of the (B, C) centroids."""
    x = unit_rows(z)
    b = len(x) // n_views
    per_sample = [x[i * n_views : (i + 1) * n_views].T for i in range(b)]  # (C, N) each
    centroids = np.stack([m.mean(axis=1) for m in per_sample])
    global_nuc = float(np.sum(np.linalg.svd(centroids, compute_uv=False)))
    local_nuc = sum(float(np.sum(np.linalg.svd(m, compute_uv=False))) for m in per_sample)
    return (lmbda * local_nuc / b if lmbda != 0.0 else 0.0), -global_nuc


def ref_mmcr(z, n_views, lmbda=0.0) -> float:
    return sum(ref_mmcr_parts(z, n_views, lmbda))


def ref_nnclr(p_a, p_b, z_a, z_b, support, temperature=0.1) -> float:
    """Dwibedi et al. 2021 eq. 3, as solo-learn's nnclr_loss_func: the support-set
    neighbour of each normalised projection (largest inner product), then
    cross_entropy(n(nn) n(p)^T / T, arange(N)), the two directions averaged."""

    def direction(z: np.ndarray, p: np.ndarray) -> float:
        u = unit_rows(z)
        nn = unit_rows(np.stack([support[np.argmax(support @ u[i])] for i in range(len(u))]))
        logits = nn @ unit_rows(p).T / temperature
        return float(-np.mean([ref_log_softmax_row(logits[i])[i] for i in range(len(u))]))

    return 0.5 * direction(z_a, p_b) + 0.5 * direction(z_b, p_a)


def ref_softmax_row(row: np.ndarray) -> np.ndarray:
    e = np.exp(row - row.max())
    return e / e.sum()


def ref_dino(student, teacher, center, student_temperature=0.1, teacher_temperature=0.04):
    """facebookresearch/dino main_dino.py DINOLoss.forward on the concatenated crops:
    student_output / student_temp chunked into the V crops, softmax((teacher_output -
    center) / temp) chunked into the G global crops, then for every teacher crop iq and
    every student crop v != iq the batch mean of sum(-q * log_softmax(student_v)),
    summed and divided by the number of terms."""
    n_crops, n_global = len(student), len(teacher)
    student_output = np.concatenate(list(student)) / student_temperature
    teacher_output = np.concatenate(list(teacher))
    student_out = np.split(student_output, n_crops)
    teacher_out = np.split(
        np.stack([ref_softmax_row((row - center) / teacher_temperature) for row in teacher_output]),
        n_global,
    )
    total, n_loss_terms = 0.0, 0
    for iq, q in enumerate(teacher_out):
        for v in range(n_crops):
            if v == iq:
                continue
            rows = [-np.sum(q[r] * ref_log_softmax_row(student_out[v][r])) for r in range(len(q))]
            total += np.mean(rows)
            n_loss_terms += 1
    return float(total / n_loss_terms)


def ref_dino_center(teacher, center, momentum=0.9) -> np.ndarray:
    """DINOLoss.update_center on one worker: the sum of the concatenated teacher outputs
    over their rows divided by their number, then center * m + batch_center * (1 - m)."""
    teacher_output = np.concatenate(list(teacher))
    batch_center = np.sum(teacher_output, axis=0) / len(teacher_output)
    return center * momentum + batch_center * (1 - momentum)


def ref_swav_sinkhorn(out, epsilon=0.05, n_iters=3) -> np.ndarray:
    """facebookresearch/swav main_swav.py distributed_sinkhorn on one worker: Q =
    exp(out / epsilon)^T (K x B), normalised to sum 1, then per iteration the K rows to
    sum 1/K and the B columns to sum 1/B; returns (B Q)^T. The scores are shifted by
    their maximum first, which cancels in the first normalisation."""
    q = np.exp((out - out.max()) / epsilon).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(n_iters):
        for row in range(k):
            q[row] /= q[row].sum() * k
        for col in range(b):
            q[:, col] /= q[:, col].sum() * b
    return (q * b).T


def ref_swav_multicrop_codes(s_a, s_b, queue_a=None, queue_b=None, epsilon=0.05, n_iters=3):
    """The codes of crops_for_assign = [0, 1]: each global crop's scores, the queue's
    scores in front when there is one, through Sinkhorn; the batch's rows kept."""
    codes = []
    for out, queue in ((s_a, queue_a), (s_b, queue_b)):
        if queue is not None:
            out = np.concatenate([queue, out])
        codes.append(ref_swav_sinkhorn(out, epsilon, n_iters)[-len(s_a) :])
    return codes


def ref_swav_multicrop(
    s_a,
    s_b,
    local,
    queue_a=None,
    queue_b=None,
    temperature=0.1,
    epsilon=0.05,
    sinkhorn_iters=3,
    codes=None,
) -> float:
    """main_swav.py's training loss with nmb_crops = [2, L] and crops_for_assign = [0, 1]:
    output is the crops' scores concatenated, bs rows per crop; for each assigned crop
    its codes, then subloss -= mean(sum(q * log_softmax(output_v / T))) over every other
    crop v, divided by sum(nmb_crops) - 1; the total divided by len(crops_for_assign).
    ``codes`` holds the codes fixed (no gradient flows through them)."""
    output = np.concatenate([s_a, s_b, *local])
    bs, n_crops = len(s_a), 2 + len(local)
    if codes is None:
        codes = ref_swav_multicrop_codes(s_a, s_b, queue_a, queue_b, epsilon, sinkhorn_iters)
    loss = 0.0
    for crop_id in (0, 1):
        q = codes[crop_id]
        subloss = 0.0
        for v in np.delete(np.arange(n_crops), crop_id):
            x = output[bs * v : bs * (v + 1)] / temperature
            log_p = np.stack([ref_log_softmax_row(row) for row in x])
            subloss -= np.mean(np.sum(q * log_p, axis=1))
        loss += subloss / (n_crops - 1)
    return float(loss / 2)


def ref_dino_prototype_multicrop(
    z_a, z_b, t_a, t_b, local_z, center, prototypes, student_temperature=0.1,
    teacher_temperature=0.04,
) -> float:
    """facebookresearch/dino main_dino.py with the DINOHead's last layer as unit
    prototypes (norm_last_layer=True): every crop's bottleneck output, L2-normalised,
    against the unit rows of the last layer's weight, one crop after another; the
    student's output is the two global crops then the local ones, the teacher's the two
    global crops only; then DINOLoss.forward (``ref_dino``)."""

    def head(z: np.ndarray) -> np.ndarray:
        return np.array([[cosine(row, w) for w in prototypes] for row in z])

    student = np.stack([head(z_a), head(z_b), *(head(z) for z in local_z)])
    teacher = np.stack([head(t_a), head(t_b)])
    return ref_dino(student, teacher, center, student_temperature, teacher_temperature)
