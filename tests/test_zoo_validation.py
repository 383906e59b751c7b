"""SimSiam, VICReg, W-MSE and MoCo v3 refuse bad input early, naming the argument."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import glf_losses
from glf_losses import align, constrain
from glf_losses.testing import available_backends, to_backend, to_numpy
from glf_losses.whitening import cholesky_whiten

N, D = 8, 3

FUNCTIONS: list[Callable[..., Any]] = [
    glf_losses.simsiam_loss,
    glf_losses.simsiam_parts,
    glf_losses.vicreg_loss,
    glf_losses.vicreg_parts,
    glf_losses.wmse_loss,
    glf_losses.wmse_parts,
    glf_losses.mocov3_loss,
    glf_losses.mocov3_parts,
    glf_losses.moco_loss,
    glf_losses.moco_parts,
    glf_losses.dcl_loss,
    glf_losses.dcl_parts,
    glf_losses.dclw_loss,
    glf_losses.dclw_parts,
    glf_losses.alignment_uniformity_loss,
    glf_losses.alignment_uniformity_parts,
    align.negative_cosine,
    align.mean_squared_error,
    align.alignment,
    constrain.variance,
    constrain.covariance,
    constrain.gaussian_uniformity,
    constrain.koleo,
]
# W-MSE's default w_size (128) needs a batch of 128: the checks below pass one that fits.
OPTIONS = {glf_losses.wmse_loss: {"w_size": 4}, glf_losses.wmse_parts: {"w_size": 4}}
OTHERS = [b for b in available_backends() if b != "numpy"]


def _name(f: Callable[..., Any]) -> str:
    return f.__name__


def _array_args(f: Callable[..., Any]) -> list[str]:
    return [p.name for p in inspect.signature(f).parameters.values() if p.default is p.empty]


def _valid(f: Callable[..., Any], n: int = N, d: int = D) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(n, d)) for _ in _array_args(f)]


def _call(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return f(*args, **{**OPTIONS.get(f, {}), **kwargs})


def test_valid_arguments_pass() -> None:
    # Guards the tests below: each failure must come from the one bad argument.
    for f in FUNCTIONS:
        assert np.all(np.isfinite(np.asarray(_call(f, *_valid(f)))))


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize("f", [f for f in FUNCTIONS if f is not constrain.koleo], ids=_name)
def test_mixed_frameworks_name_the_odd_argument(f: Callable[..., Any], other: str) -> None:
    for i, name in enumerate(_array_args(f)):
        args: list[Any] = _valid(f)
        args[i] = to_backend(other, args[i])
        with pytest.raises(TypeError, match=rf"one framework.*\b{name} is a {other} array"):
            _call(f, *args)


@pytest.mark.parametrize("f", FUNCTIONS, ids=_name)
def test_mismatched_shapes_name_the_argument(backend: str, f: Callable[..., Any]) -> None:
    names = _array_args(f)
    for i in range(1, len(names)):
        for shape in ((N, D + 1), (N + 4, D)):
            arrays = _valid(f)
            arrays[i] = np.ones(shape)
            with pytest.raises(ValueError, match=rf"\b{names[i]}\b.*same shape"):
                _call(f, *(to_backend(backend, a) for a in arrays))


@pytest.mark.parametrize("f", FUNCTIONS, ids=_name)
def test_non_matrix_and_non_floating_inputs_name_the_argument(f: Callable[..., Any]) -> None:
    names = _array_args(f)
    for shape in ((N,), (N, D, 1)):
        with pytest.raises(ValueError, match=rf"\b{names[0]} must be a 2-D array"):
            _call(f, *(np.ones(shape) for _ in names))
    for i, name in enumerate(names):
        args = _valid(f)
        args[i] = args[i].astype(np.int64)
        with pytest.raises(TypeError, match=rf"\b{name} must have a real floating-point dtype"):
            _call(f, *args)


@pytest.mark.parametrize(
    "f",
    [
        glf_losses.vicreg_loss,
        glf_losses.vicreg_parts,
        constrain.variance,
        constrain.covariance,
        glf_losses.dcl_loss,
        glf_losses.dclw_loss,
        glf_losses.alignment_uniformity_loss,
        constrain.gaussian_uniformity,
        constrain.koleo,
    ],
    ids=_name,
)
def test_covariances_negatives_and_neighbours_need_two_rows(f: Callable[..., Any]) -> None:
    name = _array_args(f)[0]
    with pytest.raises(ValueError, match=rf"\b{name} must have at least 2 rows.*got 1"):
        f(*_valid(f, n=1))


# --- W-MSE ------------------------------------------------------------------------------------


@pytest.mark.parametrize("f", [glf_losses.wmse_loss, cholesky_whiten], ids=_name)
def test_wmse_sub_batches_must_tile_the_batch_and_fit_a_cholesky_factor(
    f: Callable[..., Any],
) -> None:
    z = np.random.default_rng(0).normal(size=(12, 3))
    args = (z, z) if f is glf_losses.wmse_loss else (z,)
    with pytest.raises(ValueError, match=r"w_size must divide .* batch size 12.*w_size=5"):
        f(*args, w_size=5)
    # 2 rows x 3 columns: a rank-1 covariance has no Cholesky factor.
    with pytest.raises(ValueError, match=r"w_size must be at least D \+ 1 = 4.*w_size=3"):
        f(*args, w_size=3)
    if f is glf_losses.wmse_loss:
        # The default is the official 128, which a batch of 12 cannot tile.
        with pytest.raises(ValueError, match=r"w_size must divide .* 12.*w_size=128"):
            f(*args)
    for bad, error in ((0, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(error, match=r"\bw_size must"):
            f(*args, w_size=bad)
    for eps in (-0.1, 1.0, math.nan):
        with pytest.raises(ValueError, match=r"\beps must"):
            f(*args, w_size=4, eps=eps)


def test_wmse_permutations_must_be_integer_rows_over_the_batch(backend: str) -> None:
    rng = np.random.default_rng(0)
    z_a, z_b = (to_backend(backend, rng.normal(size=(8, 3))) for _ in range(2))
    good = np.stack([rng.permutation(8), rng.permutation(8)])
    for bad in (good[:, :6], good[0], good[:, :, None]):
        with pytest.raises(ValueError, match=r"permutations must have shape \(w_iter, N\).*8"):
            glf_losses.wmse_loss(z_a, z_b, to_backend(backend, bad), w_size=4)
    with pytest.raises(TypeError, match=r"permutations must have an integer dtype"):
        glf_losses.wmse_loss(z_a, z_b, to_backend(backend, good.astype(np.float64)), w_size=4)
    if backend != "numpy":
        with pytest.raises(TypeError, match=r"one framework.*\bpermutations is a numpy array"):
            glf_losses.wmse_loss(z_a, z_b, good, w_size=4)
    with pytest.raises(ValueError, match=r"permutation must be a 1-D array of N = 8"):
        cholesky_whiten(z_a, 4, 0.0, to_backend(backend, good))


# --- hyperparameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "f",
    [
        glf_losses.mocov3_loss,
        glf_losses.mocov3_parts,
        glf_losses.moco_loss,
        glf_losses.dcl_loss,
        glf_losses.dclw_loss,
    ],
    ids=_name,
)
def test_bad_temperature_is_refused(f: Callable[..., Any]) -> None:
    for value in (0.0, -0.2, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"\btemperature must be"):
            f(*_valid(f), temperature=value)
    with pytest.raises(TypeError, match=r"\btemperature must be a real number"):
        f(*_valid(f), temperature="0.2")


@pytest.mark.parametrize("keyword", ["sim_coeff", "std_coeff", "cov_coeff", "eps"])
def test_bad_vicreg_weights_are_refused(keyword: str) -> None:
    for value, error in ((-1.0, ValueError), (math.nan, ValueError), (None, TypeError)):
        with pytest.raises(error, match=rf"\b{keyword} must"):
            glf_losses.vicreg_loss(*_valid(glf_losses.vicreg_loss), **{keyword: value})
    with pytest.raises(ValueError, match=r"\beps must"):
        constrain.variance(*_valid(constrain.variance), eps=-1e-4)


def test_bad_dclw_sigma_is_refused() -> None:
    for value in (0.0, -0.5, math.nan):
        with pytest.raises(ValueError, match=r"\bsigma must be"):
            glf_losses.dclw_loss(*_valid(glf_losses.dclw_loss), sigma=value)


def test_moco_queue_must_match_the_key_width(backend: str) -> None:
    q, k = (to_backend(backend, a) for a in _valid(glf_losses.moco_loss))
    for f in (glf_losses.moco_loss, glf_losses.moco_parts):
        with pytest.raises(ValueError, match=r"queue must have one column per .* \(3\).*\(16, 4\)"):
            f(q, k, to_backend(backend, np.ones((16, D + 1))))
        with pytest.raises(ValueError, match=r"queue must be a 2-D array"):
            f(q, k, to_backend(backend, np.ones(16)))
        with pytest.raises(TypeError, match=r"queue must have a real floating-point dtype"):
            f(q, k, to_backend(backend, np.ones((16, D), dtype=np.int64)))
    with pytest.raises(ValueError, match=r"queue must have one column per .* \(3\)"):
        glf_losses.moco_enqueue(to_backend(backend, np.ones((16, D + 1))), k)
    if backend != "numpy":
        with pytest.raises(TypeError, match=r"one framework.*\bqueue is a numpy array"):
            glf_losses.moco_loss(q, k, np.ones((16, D)))


@pytest.mark.parametrize(
    ("f", "keyword"),
    [
        (glf_losses.alignment_uniformity_loss, "alpha"),
        (glf_losses.alignment_uniformity_loss, "t"),
        (glf_losses.alignment_uniformity_parts, "align_weight"),
        (glf_losses.alignment_uniformity_parts, "uniform_weight"),
        (align.alignment, "alpha"),
        (constrain.gaussian_uniformity, "t"),
        (constrain.koleo, "eps"),
    ],
    ids=lambda x: x if isinstance(x, str) else x.__name__,
)
def test_bad_alignment_uniformity_and_koleo_settings_are_refused(
    f: Callable[..., Any], keyword: str
) -> None:
    for value, error in ((-1.0, ValueError), (math.inf, ValueError), ("2", TypeError)):
        with pytest.raises(error, match=rf"\b{keyword} must"):
            f(*_valid(f), **{keyword: value})


def test_tico_state_and_settings_are_checked(backend: str) -> None:
    z_a, z_b = (to_backend(backend, a) for a in _valid(glf_losses.vicreg_loss))
    good = to_backend(backend, np.zeros((D, D)))
    assert np.isfinite(float(glf_losses.tico_loss(z_a, z_b, good)))
    for f in (glf_losses.tico_loss, glf_losses.tico_parts):
        with pytest.raises(ValueError, match=r"covariance must have shape \(D, D\) = \(3, 3\)"):
            f(z_a, z_b, to_backend(backend, np.zeros((D + 1, D + 1))))
        with pytest.raises(ValueError, match=r"covariance must be a 2-D array"):
            f(z_a, z_b, to_backend(backend, np.zeros(D)))
        with pytest.raises(ValueError, match=r"\bz_b\b.*same shape"):
            f(z_a, to_backend(backend, np.ones((N, D + 1))), good)
        for beta in (-0.1, 1.5, math.nan):
            with pytest.raises(ValueError, match=r"\bbeta must"):
                f(z_a, z_b, good, beta=beta)
        with pytest.raises(ValueError, match=r"\brho must"):
            f(z_a, z_b, good, rho=-1.0)
    with pytest.raises(ValueError, match=r"covariance must have shape \(D, D\) = \(3, 3\)"):
        glf_losses.tico_covariance(z_a, to_backend(backend, np.zeros((2, 2))))
    with pytest.raises(ValueError, match=r"\bbeta must"):
        glf_losses.tico_covariance(z_a, good, beta=2.0)
    if backend != "numpy":
        with pytest.raises(TypeError, match=r"one framework.*\bcovariance is a numpy array"):
            glf_losses.tico_loss(z_a, z_b, np.zeros((D, D)))


@pytest.mark.parametrize("f", [glf_losses.mmcr_loss, glf_losses.mmcr_parts], ids=_name)
def test_mmcr_views_and_settings_are_checked(backend: str, f: Callable[..., Any]) -> None:
    z = to_backend(backend, np.random.default_rng(0).normal(size=(12, 4)))
    out = to_numpy(f(z, n_views=3))
    assert np.isfinite(float(sum(out) if isinstance(out, tuple) else out))
    with pytest.raises(ValueError, match=r"z must hold n_views = 5 consecutive rows.*12 rows"):
        f(z, n_views=5)
    for bad, error in ((0, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(error, match=r"\bn_views must"):
            f(z, n_views=bad)
    with pytest.raises(ValueError, match=r"\blmbda must be >= 0"):
        f(z, n_views=3, lmbda=-0.5)
    with pytest.raises(ValueError, match=r"\bz must be a 2-D array"):
        f(to_backend(backend, np.ones((4, 3, 2))), n_views=2)


def test_nnclr_support_set_is_checked(backend: str) -> None:
    arrays = [to_backend(backend, a) for a in _valid(glf_losses.simsiam_loss)]
    support = to_backend(backend, np.eye(D))
    assert np.isfinite(float(glf_losses.nnclr_loss(*arrays, support)))
    for f in (glf_losses.nnclr_loss, glf_losses.nnclr_parts):
        with pytest.raises(ValueError, match=r"support must have one column per .* \(3\)"):
            f(*arrays, to_backend(backend, np.ones((5, D + 1))))
        with pytest.raises(ValueError, match=r"\bz_b\b.*same shape"):
            f(*arrays[:3], to_backend(backend, np.ones((N, D + 1))), support)
        with pytest.raises(ValueError, match=r"\btemperature must be"):
            f(*arrays, support, temperature=0.0)
    with pytest.raises(ValueError, match=r"support must have one column per .* \(3\)"):
        glf_losses.nnclr_enqueue(to_backend(backend, np.ones((5, D + 1))), arrays[2])
    if backend != "numpy":
        with pytest.raises(TypeError, match=r"one framework.*\bsupport is a numpy array"):
            glf_losses.nnclr_loss(*arrays, np.eye(D))


# --- DINO and multi-crop ------------------------------------------------------------------

K = 5


def _dino_valid(backend: str) -> list[Any]:
    rng = np.random.default_rng(0)
    arrays = (rng.normal(size=(4, N, K)), rng.normal(size=(2, N, K)), np.zeros(K))
    return [to_backend(backend, a) for a in arrays]


@pytest.mark.parametrize("f", [glf_losses.dino_loss, glf_losses.dino_parts], ids=_name)
def test_dino_inputs_and_settings_are_checked(backend: str, f: Callable[..., Any]) -> None:
    student, teacher, center = _dino_valid(backend)
    out = to_numpy(f(student, teacher, center))
    assert np.isfinite(float(sum(out) if isinstance(out, tuple) else out))

    def arr(a: np.ndarray) -> Any:
        return to_backend(backend, a)

    with pytest.raises(ValueError, match=r"student must be a 3-D array of shape \(V, N, K\)"):
        f(arr(np.ones((N, K))), teacher, center)
    with pytest.raises(ValueError, match=r"teacher must be a 3-D array of shape \(G, N, K\)"):
        f(student, arr(np.ones((2, N, K, 1))), center)
    for bad in (np.zeros((1, K)), np.zeros(K + 1)):
        with pytest.raises(ValueError, match=r"center must have shape \(K,\) = \(5,\)"):
            f(student, teacher, arr(bad))
    for bad in (np.ones((2, N + 1, K)), np.ones((2, N, K + 1))):
        with pytest.raises(ValueError, match=r"teacher must have shape \(G, N, K\) = \(G, 8, 5\)"):
            f(student, arr(bad), center)
    # More teacher crops than student crops, or none.
    for g in (5, 0):
        with pytest.raises(ValueError, match=r"teacher must hold 1 to V = 4 crops"):
            f(student, arr(np.ones((g, N, K))), center)
    with pytest.raises(ValueError, match=r"student must hold at least 2 crops .*\(1, 8, 5\)"):
        f(arr(np.ones((1, N, K))), arr(np.ones((1, N, K))), center)
    good = [student, teacher, center]
    for i, name in enumerate(("student", "teacher", "center")):
        args = list(good)
        args[i] = arr(to_numpy(good[i]).astype(np.int64))
        with pytest.raises(TypeError, match=rf"\b{name} must have a real floating-point dtype"):
            f(*args)
    for keyword in ("student_temperature", "teacher_temperature"):
        for value in (0.0, -0.1, math.nan, math.inf):
            with pytest.raises(ValueError, match=rf"\b{keyword} must be"):
                f(student, teacher, center, **{keyword: value})
        with pytest.raises(TypeError, match=rf"\b{keyword} must be a real number"):
            f(student, teacher, center, **{keyword: "0.1"})
    if backend != "numpy":
        with pytest.raises(TypeError, match=r"one framework.*\bcenter is a numpy array"):
            f(student, teacher, np.zeros(K))


def test_dino_center_inputs_and_momentum_are_checked(backend: str) -> None:
    _, teacher, center = _dino_valid(backend)
    assert to_numpy(glf_losses.dino_center(teacher, center)).shape == (K,)
    for value in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"\bmomentum must be"):
            glf_losses.dino_center(teacher, center, momentum=value)
    with pytest.raises(TypeError, match=r"\bmomentum must be a real number"):
        glf_losses.dino_center(teacher, center, momentum="0.9")
    with pytest.raises(ValueError, match=r"center must have shape \(K,\) = \(5,\)"):
        glf_losses.dino_center(teacher, to_backend(backend, np.zeros(K + 1)))
    with pytest.raises(ValueError, match=r"teacher must be a 3-D array of shape \(G, N, K\)"):
        glf_losses.dino_center(to_backend(backend, np.ones((N, K))), center)
    with pytest.raises(TypeError, match=r"teacher must have a real floating-point dtype"):
        glf_losses.dino_center(to_backend(backend, np.ones((2, N, K), dtype=np.int64)), center)


def test_swav_local_crops_are_checked(backend: str) -> None:
    rng = np.random.default_rng(0)
    s_a, s_b = (to_backend(backend, np.tanh(rng.normal(size=(N, K)))) for _ in range(2))
    local = to_backend(backend, np.tanh(rng.normal(size=(2, N, K))))
    assert np.isfinite(float(glf_losses.swav_loss(s_a, s_b, local_scores=local)))
    for f in (glf_losses.swav_loss, glf_losses.swav_parts):
        with pytest.raises(ValueError, match=r"local_scores must be a 3-D array of shape \(L"):
            f(s_a, s_b, local_scores=to_backend(backend, np.ones((N, K))))
        for bad in (np.ones((2, N + 1, K)), np.ones((2, N, K + 1))):
            with pytest.raises(ValueError, match=r"local_scores must have shape .* \(L, 8, 5\)"):
                f(s_a, s_b, local_scores=to_backend(backend, bad))
        with pytest.raises(TypeError, match=r"local_scores must have a real floating-point"):
            f(s_a, s_b, local_scores=to_backend(backend, np.ones((2, N, K), dtype=np.int64)))
    z = [to_backend(backend, rng.normal(size=(N, D))) for _ in range(2)]
    w = to_backend(backend, rng.normal(size=(K, D)))
    with pytest.raises(ValueError, match=r"local_z must have shape \(L, N, D\) = \(L, 8, 3\)"):
        glf_losses.swav_prototype_parts(*z, w, local_z=to_backend(backend, np.ones((2, N, 4))))
    with pytest.raises(ValueError, match=r"local_z must be a 3-D array of shape \(L, N, D\)"):
        glf_losses.swav_prototype_parts(*z, w, local_z=to_backend(backend, np.ones((N, D))))
    if backend != "numpy":
        with pytest.raises(TypeError, match=r"one framework.*\blocal_scores is a numpy array"):
            glf_losses.swav_loss(s_a, s_b, local_scores=np.ones((2, N, K)))
        with pytest.raises(TypeError, match=r"one framework.*\blocal_z is a numpy array"):
            glf_losses.swav_prototype_parts(*z, w, local_z=np.ones((2, N, D)))


def test_swav_local_crops_join_the_common_dtype() -> None:
    rng = np.random.default_rng(0)
    s_a, s_b = np.tanh(rng.normal(size=(2, N, K))).astype(np.float32)
    local = np.tanh(rng.normal(size=(2, N, K)))
    assert glf_losses.swav_loss(s_a, s_b, local_scores=local).dtype == np.float64
    assert glf_losses.swav_loss(s_a, s_b, local_scores=local.astype(np.float16)).dtype == (
        np.float32
    )
