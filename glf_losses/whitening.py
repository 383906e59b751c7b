"""Cholesky whitening of sub-batches, W-MSE's constraint (Ermolov et al. 2021).

W-MSE constrains the representation by construction rather than by a penalty: each view's
embeddings are whitened (zero mean, identity covariance) within sub-batches before the
two views are compared. The whitening matrix is the inverse Cholesky factor of the
sub-batch covariance, as in ``htdt/self-supervised: methods/whitening.py``
(``Whitening2d``).

No randomness is hidden here: the official code draws a fresh permutation of the batch
for every whitening iteration; the caller passes those permutations (or none, for
contiguous sub-batches), so the same inputs give the same loss on every backend and under
every compiler.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from glf_losses import _checks
from glf_losses._lib import matmul

__all__ = ["cholesky_whiten"]


def _check_w_size(w_size: Any, n_global: int, d: int) -> int:
    w_size = _checks.check_count(w_size, "w_size", minimum=2)
    if n_global % w_size != 0:
        raise ValueError(
            f"w_size must divide the (global) batch size {n_global} into equal "
            f"sub-batches, got w_size={w_size}; pick a divisor of {n_global}"
        )
    if w_size < d + 1:
        raise ValueError(
            f"w_size must be at least D + 1 = {d + 1} (a centred sub-batch of w_size rows "
            f"has a covariance of rank w_size - 1, and its Cholesky factor needs full "
            f"rank D = {d}), got w_size={w_size}; the official code uses w_size >= 2 D"
        )
    return w_size


def _check_permutations(be: ModuleType, permutations: Any, n_global: int) -> Any:
    shape = _checks.shape_of(permutations)
    if len(shape) != 2 or shape[1] != n_global:
        raise ValueError(
            f"permutations must have shape (w_iter, N) with N the (global) batch size "
            f"{n_global}: one permutation of range(N) per whitening iteration; got shape "
            f"{shape}"
        )
    if shape[0] is not None and shape[0] < 1:
        raise ValueError("permutations must hold at least one permutation (w_iter >= 1)")
    if not be.xp.isdtype(permutations.dtype, "integral"):
        raise TypeError(
            f"permutations must have an integer dtype (indices into the batch), got "
            f"{permutations.dtype}"
        )
    return permutations


def _whiten_blocks(be: ModuleType, blocks: Any, eps: float) -> Any:
    """Whiten each (w, D) block of a (B, w, D) stack by its inverse Cholesky factor."""
    xp = be.xp
    w, d = blocks.shape[1], blocks.shape[2]
    centred = blocks - xp.mean(blocks, axis=1, keepdims=True)
    # Unbiased covariance, as the official T T^T / (w - 1).
    cov = matmul(be, xp.matrix_transpose(centred), centred) / (w - 1)
    if eps != 0.0:
        eye = xp.eye(d, dtype=cov.dtype, device=be.device(cov))
        cov = (1.0 - eps) * cov + eps * eye
    # L^{-1}, what the official triangular solve of L X = I returns: the backend's
    # triangular solve where it has one, which does less than a general inverse (an LU
    # factorisation and two solves) and has a lighter backward.
    inv_factor = be.lower_triangular_inverse(xp.linalg.cholesky(cov))
    return matmul(be, centred, xp.matrix_transpose(inv_factor))


def _whitened(
    be: ModuleType, views: tuple[Any, ...], w_size: int, eps: float, permutations: Any
) -> Any:
    """Views of the global batch, permuted and whitened per sub-batch.

    Returns a (V, w_iter, N_global, D) stack for V views of the same shape: row p of view
    v, iteration i is sample ``permutations[i, p]`` of that view, whitened within its
    sub-batch ``p // w_size``. Views whitened with the same permutations line up row by
    row.
    """
    xp = be.xp
    n_local, d = views[0].shape
    n_global = n_local * be.shard(views[0])[0]
    # Every worker needs the whole batch: a sub-batch may mix samples of all workers.
    # ``to_local`` because each worker uses it in its own rows' terms only.
    fulls = [be.to_local(be.all_gather(z)) for z in views]
    w_iter = 1
    if permutations is not None:
        w_iter = permutations.shape[0]
        order = xp.reshape(permutations, (-1,))
        fulls = [xp.take(full, order, axis=0) for full in fulls]
    # Every view's sub-batches in one stack: one batched Cholesky factorisation and one
    # triangular inverse for all of them (fewer calls in eager mode), and under jax.jit
    # on a CPU no two independent LAPACK calls in the backward, which jaxlib 0.10 could
    # leave waiting on each other forever (W-MSE at N = 1024, w_size = 256; see
    # docs/benchmarks.md).
    stacked = fulls[0] if len(fulls) == 1 else xp.concat(fulls, axis=0)
    blocks = xp.reshape(stacked, (len(views) * w_iter * (n_global // w_size), w_size, d))
    return xp.reshape(_whiten_blocks(be, blocks, eps), (len(views), w_iter, n_global, d))


def cholesky_whiten(
    z: Any, w_size: int | None = None, eps: float = 0.0, permutation: Any = None
) -> Any:
    r"""Whiten the rows of ``z`` within sub-batches of ``w_size`` rows (W-MSE's whitening).

    For each sub-batch $X$ (rows ``permutation[k w : (k + 1) w]``):

    $$
    \bar X = X - \mathrm{mean}(X), \quad
    \Sigma = (1 - \varepsilon)\tfrac{1}{w - 1}\bar X^\top \bar X + \varepsilon I, \quad
    \Sigma = L L^\top, \quad \mathrm{whiten}(X) = \bar X L^{-\top}
    $$

    so each whitened sub-batch has mean 0 and (unbiased) covariance
    $(1-\varepsilon)^{-1}$-close to the identity (exactly I for ``eps = 0``).

    Args:
      z: (N, D) embeddings; under ``glf_losses.data_parallel`` the local shard, and
        sub-batches are drawn from the global batch.
      w_size: rows per sub-batch; must divide N (global) and be at least D + 1 (the
        official code uses 128, with D = 64). ``None``: the whole batch.
      eps: shrinkage of the covariance toward the identity (``w_eps``, 0 officially).
      permutation: optional (N,) integer array, a permutation of ``range(N)`` (global
        indices): row p of the result is sample ``permutation[p]``. ``None``: contiguous
        sub-batches, rows in their input order.

    Returns:
      (N_global, D) whitened rows, in the permuted order, on every worker.

    References:
      Ermolov et al., "Whitening for Self-Supervised Representation Learning", ICML 2021;
      ``htdt/self-supervised: methods/whitening.py``.

    Examples:
      >>> import numpy as np
      >>> from glf_losses.whitening import cholesky_whiten
      >>> z = np.random.default_rng(0).normal(size=(16, 3))
      >>> w = cholesky_whiten(z, w_size=8)
      >>> bool(np.allclose(np.cov(w[:8], rowvar=False), np.eye(3)))
      True
    """
    be = _checks.backend_of(z=z, permutation=permutation)
    z = _checks.float_matrix(be, z, "z", min_rows=2)
    n_global = z.shape[0] * be.shard(z)[0]
    w_size = _check_w_size(n_global if w_size is None else w_size, n_global, z.shape[1])
    eps = _checks.check_nonnegative(eps, "eps")
    if eps >= 1.0:
        raise ValueError(f"eps must be < 1 (it shrinks the covariance toward I), got {eps}")
    if permutation is not None:
        if len(_checks.shape_of(permutation)) != 1:
            raise ValueError(
                f"permutation must be a 1-D array of N = {n_global} indices, got shape "
                f"{_checks.shape_of(permutation)}"
            )
        permutation = _check_permutations(be, permutation[None, :], n_global)
    return _whitened(be, (z,), w_size, eps, permutation)[0, 0, ...]
