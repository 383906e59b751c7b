"""Views drawn on the host and applied through NumPy, PyTorch and JAX namespaces."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import array_api_compat.numpy as np_xp
import numpy as np
import pytest
from glf_train.augment import (
    AugmentConfig,
    AugmentParams,
    apply,
    blur_matrices,
    center,
    colour_matrices,
    draw,
    resample_matrices,
    two_views,
)
from glf_train.data import to_float


def _torch_xp() -> Any:
    pytest.importorskip("torch")
    import array_api_compat.torch as torch_xp

    return torch_xp


def _jax_xp() -> Any:
    pytest.importorskip("jax")
    import jax.numpy as jnp

    return jnp


NAMESPACES = {"numpy": lambda: np_xp, "torch": _torch_xp, "jax": _jax_xp}


@pytest.fixture(params=list(NAMESPACES))
def xp(request: pytest.FixtureRequest) -> Any:
    return NAMESPACES[request.param]()


def host(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x)


def images(batch: int, channels: int, side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, channels, side, side), np.uint8)


PRESETS = {
    "digits": ((6, 1, 8, 8), (6, 1, 8, 8)),
    "mnist5k": ((6, 1, 28, 28), (6, 1, 28, 28)),
    "mnist5k-rgb32": ((6, 3, 32, 32), (6, 3, 32, 32)),
    "mnist5k-canvas48": ((6, 1, 48, 48), (6, 1, 48, 48)),
    "cifar10": ((6, 3, 32, 32), (6, 3, 32, 32)),
    "cifar100": ((6, 3, 32, 32), (6, 3, 32, 32)),
    "stl10": ((3, 3, 96, 96), (3, 3, 96, 96)),
}


# --- shapes and ranges -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_give_views_in_range(xp: Any, name: str) -> None:
    in_shape, out_shape = PRESETS[name]
    x = images(in_shape[0], in_shape[1], in_shape[2])
    config = AugmentConfig.for_dataset(name)
    params = draw(
        np.random.default_rng(0), in_shape[0], in_shape[2:], None, config, channels=in_shape[1]
    )
    out = host(apply(xp, x, params))
    assert out.shape == out_shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    mean, std = (0.5,) * in_shape[1], (0.25,) * in_shape[1]
    normalised = host(apply(xp, x, params, mean, std))
    np.testing.assert_allclose(normalised, (out - 0.5) / 0.25, atol=1e-5)


def test_out_size_option(xp: Any) -> None:
    config = AugmentConfig.for_dataset("stl10", out_hw=(64, 64))
    assert config.out_hw == (64, 64)
    params = draw(np.random.default_rng(0), 2, (96, 96), None, config, channels=3)
    assert params.ry.shape == (2, 64, 96) and params.rx.shape == (2, 64, 96)
    out = host(apply(xp, images(2, 3, 96), params))
    assert out.shape == (2, 3, 64, 64) and out.min() >= 0.0 and out.max() <= 1.0
    wide = draw(np.random.default_rng(0), 2, (32, 32), (24, 40), AugmentConfig())
    assert host(apply(xp, images(2, 1, 32), wide)).shape == (2, 1, 24, 40)


# --- exact geometry -----------------------------------------------------------------------


def test_identity_parameters_reproduce_the_input(xp: Any) -> None:
    x = images(4, 3, 16)
    params = draw(np.random.default_rng(0), 4, (16, 16), None, AugmentConfig(), channels=3)
    np.testing.assert_array_equal(params.ry, np.broadcast_to(np.eye(16), (4, 16, 16)))
    out = host(apply(xp, x, params))
    np.testing.assert_array_equal(out, to_float(x))
    # Float input in [0, 1] is taken as it is.
    np.testing.assert_array_equal(host(apply(xp, to_float(x), params)), to_float(x))


def test_identity_through_the_colour_path(xp: Any) -> None:
    # Colour enabled, but nothing drawn: M = I and K = 0 exactly.
    config = AugmentConfig(
        jitter_p=1.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, gray_p=0.0
    )
    params = draw(np.random.default_rng(0), 2, (8, 8), None, config, channels=3)
    np.testing.assert_array_equal(params.colour, np.broadcast_to(np.eye(3), (2, 3, 3)))
    assert not params.colour_mean.any()
    x = images(2, 3, 8)
    np.testing.assert_array_equal(host(apply(xp, x, params)), to_float(x))


def test_flip_reverses_the_columns(xp: Any) -> None:
    x = images(3, 3, 12)
    params = draw(np.random.default_rng(0), 3, (12, 12), None, AugmentConfig(flip_p=1.0))
    assert params.flipped.all()
    np.testing.assert_array_equal(host(apply(xp, x, params)), to_float(x)[..., ::-1])


def test_flip_of_a_crop_mirrors_the_unflipped_crop() -> None:
    start, length = np.array([1.3, 0.0]), np.array([7.5, 12.0])
    plain = resample_matrices(start, length, 12, 10)
    flipped = resample_matrices(start, length, 12, 10, flip=np.array([True, False]))
    np.testing.assert_array_equal(flipped[0], plain[0, ::-1])
    np.testing.assert_array_equal(flipped[1], plain[1])


def test_integer_crop_is_a_slice(xp: Any) -> None:
    x = images(1, 3, 10)
    ry = resample_matrices(np.array([2.0]), np.array([4.0]), 10, 4)
    rx = resample_matrices(np.array([5.0]), np.array([4.0]), 10, 4)
    params = _geometry_only(ry, rx)
    np.testing.assert_array_equal(host(apply(xp, x, params)), to_float(x)[:, :, 2:6, 5:9])


def test_shift_pads_with_zeros(xp: Any) -> None:
    x = images(1, 1, 6)
    eye = resample_matrices(np.array([0.0]), np.array([6.0]), 6, 6)
    shifted = resample_matrices(np.array([2.0]), np.array([6.0]), 6, 6)  # box moved right
    out = host(apply(xp, x, _geometry_only(eye, shifted)))
    np.testing.assert_array_equal(out[..., :4], to_float(x)[..., 2:])
    assert not out[..., 4:].any()


def test_translation_moves_the_box() -> None:
    config = AugmentConfig(translate=0.25)
    params = draw(np.random.default_rng(3), 50, (8, 8), None, config)
    assert np.all(np.abs(params.boxes[:, :2]) <= 2.0) and params.boxes[:, :2].std() > 0.5
    np.testing.assert_array_equal(params.boxes[:, 2:], 8.0)


def test_interpolation_preserves_flat_images(xp: Any) -> None:
    """Rows sum to one wherever the sample point lies inside the image."""
    config = AugmentConfig(crop_scale=(0.05, 1.0), flip_p=0.5, blur_p=0.5)
    x = np.full((16, 3, 40, 40), 77, dtype=np.uint8)
    for out_hw in ((40, 40), (16, 16), (64, 24)):
        params = draw(np.random.default_rng(1), 16, (40, 40), out_hw, config)
        np.testing.assert_allclose(host(apply(xp, x, params)), 77 / 255, atol=1e-6)


def test_antialias_widens_the_filter() -> None:
    start, length = np.array([0.0]), np.array([32.0])
    sharp = resample_matrices(start, length, 32, 8, antialias=False)
    smooth = resample_matrices(start, length, 32, 8, antialias=True)
    assert (sharp[0] > 0).sum(axis=1).max() <= 2
    assert (smooth[0] > 0).sum(axis=1).min() >= 6
    np.testing.assert_allclose(smooth.sum(-1), 1.0, atol=1e-6)


def test_blur_matrices() -> None:
    kernel = blur_matrices(np.array([0.0, 1.5]), 9)
    np.testing.assert_array_equal(kernel[0], np.eye(9))
    np.testing.assert_allclose(kernel[1].sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(kernel[1], kernel[1, ::-1, ::-1], atol=1e-7)
    assert kernel[1, 4, 4] > kernel[1, 4, 5] > kernel[1, 4, 6] > 0


# --- colour -------------------------------------------------------------------------------


def _reference_colour(x: np.ndarray, factors: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """The jitter chain step by step, in float64, without intermediate clipping."""
    luma = np.array([0.299, 0.587, 0.114])
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    out = np.empty_like(x, dtype=np.float64)
    for i, (b, c, s, h) in enumerate(factors):
        v = x[i].astype(np.float64) * b
        gray_level = np.einsum("c,chw->hw", luma, v).mean()
        v = c * v + (1 - c) * gray_level
        v = s * v + (1 - s) * np.einsum("c,chw->hw", luma, v)[None]
        t = np.einsum("dc,chw->dhw", yiq, v)
        a = 2 * np.pi * h
        t[1], t[2] = np.cos(a) * t[1] - np.sin(a) * t[2], np.sin(a) * t[1] + np.cos(a) * t[2]
        v = np.einsum("dc,chw->dhw", np.linalg.inv(yiq), t)
        if gray[i]:
            v = np.broadcast_to(np.einsum("c,chw->hw", luma, v)[None], v.shape)
        out[i] = v
    return np.clip(out, 0.0, 1.0)


def test_colour_chain_matches_the_step_by_step_reference(xp: Any) -> None:
    config = AugmentConfig(jitter_p=0.8, gray_p=0.3)
    x = images(24, 3, 6, seed=5)
    params = draw(np.random.default_rng(2), 24, (6, 6), None, config, channels=3)
    assert params.gray.any() and not params.gray.all()
    assert (params.factors[:, 3] != 0).any() and (params.factors[:, 3] == 0).any()
    expected = _reference_colour(to_float(x), params.factors, params.gray)
    np.testing.assert_allclose(host(apply(xp, x, params)), expected, atol=2e-6)


def test_grayscale_repeats_the_luma(xp: Any) -> None:
    x = images(3, 3, 5)
    params = draw(np.random.default_rng(0), 3, (5, 5), None, AugmentConfig(gray_p=1.0))
    out = host(apply(xp, x, params))
    luma = np.einsum("c,bchw->bhw", np.array([0.299, 0.587, 0.114]), to_float(x))
    for c in range(3):
        np.testing.assert_allclose(out[:, c], luma, atol=1e-6)


def test_hue_rotation_keeps_the_luma() -> None:
    m, k = colour_matrices(np.array([[1.0, 1.0, 1.0, 0.3]]), np.array([False]))
    np.testing.assert_allclose(
        np.array([0.299, 0.587, 0.114]) @ m[0], [0.299, 0.587, 0.114], atol=1e-3
    )
    np.testing.assert_allclose(m[0] @ np.ones(3), np.ones(3), atol=1e-3)
    assert not k.any()


def test_colour_needs_three_channels() -> None:
    config = AugmentConfig.for_dataset("cifar10")
    with pytest.raises(ValueError, match="3 channels"):
        draw(np.random.default_rng(0), 2, (32, 32), None, config, channels=1)
    params = draw(np.random.default_rng(0), 2, (32, 32), None, config)
    with pytest.raises(ValueError, match="3 channels"):
        apply(np_xp, images(2, 1, 32), params)


# --- noise --------------------------------------------------------------------------------


def test_noise_is_drawn_on_the_host(xp: Any) -> None:
    config = AugmentConfig(noise_std=0.1)
    x = np.full((4, 1, 8, 8), 128, dtype=np.uint8)
    params = draw(np.random.default_rng(0), 4, (8, 8), None, config, channels=1)
    assert params.noise.shape == (4, 1, 8, 8) and params.noise.dtype == np.float32
    assert 0.05 < params.noise.std() < 0.15
    expected = np.clip(to_float(x) + params.noise, 0.0, 1.0)
    np.testing.assert_allclose(host(apply(xp, x, params)), expected, atol=1e-6)
    shared = draw(np.random.default_rng(0), 4, (8, 8), None, config)
    assert shared.noise.shape == (4, 1, 8, 8)


# --- reproducibility and agreement -------------------------------------------------------


def _same_params(a: AugmentParams, b: AugmentParams) -> bool:
    return all(
        (u is None and v is None) or (u is not None and v is not None and np.array_equal(u, v))
        for u, v in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("name", ["digits", "cifar10", "stl10"])
def test_a_seed_fixes_params_and_views(name: str) -> None:
    in_shape = PRESETS[name][0]
    config = AugmentConfig.for_dataset(name)
    x = images(*in_shape[:3])

    def run(seed: int) -> tuple[AugmentParams, np.ndarray]:
        params = draw(
            np.random.default_rng(seed),
            in_shape[0],
            in_shape[2:],
            None,
            config,
            channels=in_shape[1],
        )
        return params, apply(np_xp, x, params)

    p1, v1 = run(11)
    p2, v2 = run(11)
    p3, v3 = run(12)
    assert _same_params(p1, p2)
    np.testing.assert_array_equal(v1, v2)
    assert not _same_params(p1, p3)
    assert not np.array_equal(v1, v3)


@pytest.mark.parametrize("name", ["digits", "mnist5k", "cifar10", "stl10"])
def test_namespaces_agree(name: str) -> None:
    in_shape = PRESETS[name][0]
    config = AugmentConfig.for_dataset(name)
    if name == "stl10":
        config = replace(config, out_hw=(48, 48))  # shrinking: the antialiased path
    x = images(*in_shape[:3], seed=3)
    params = draw(
        np.random.default_rng(4), in_shape[0], in_shape[2:], None, config, channels=in_shape[1]
    )
    mean, std = (0.45,) * in_shape[1], (0.22,) * in_shape[1]
    reference = apply(np_xp, x, params, mean, std)
    for label, make in NAMESPACES.items():
        if label == "numpy":
            continue
        other = host(apply(make(), x, params, mean, std))
        np.testing.assert_allclose(other, reference, atol=1e-5, err_msg=label)


def test_device_arrays_are_accepted() -> None:
    torch_xp = _torch_xp()
    import torch

    x = images(2, 3, 32)
    params = draw(
        np.random.default_rng(0),
        2,
        (32, 32),
        None,
        AugmentConfig.for_dataset("cifar10"),
        channels=3,
    )
    out = apply(torch_xp, torch.from_numpy(x), params, device=torch.device("cpu"))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), apply(np_xp, x, params), atol=1e-5)


def test_apply_traces_under_jax_jit() -> None:
    jnp = _jax_xp()
    import jax

    x = images(3, 3, 32)
    params = draw(
        np.random.default_rng(0),
        3,
        (32, 32),
        None,
        AugmentConfig.for_dataset("cifar10"),
        channels=3,
    )
    jitted = jax.jit(lambda im: apply(jnp, im, params, (0.5,) * 3, (0.2,) * 3))
    np.testing.assert_allclose(
        np.asarray(jitted(x)), apply(np_xp, x, params, (0.5,) * 3, (0.2,) * 3), atol=1e-5
    )


def test_params_must_match_the_batch() -> None:
    params = draw(np.random.default_rng(0), 2, (8, 8), None, AugmentConfig())
    with pytest.raises(ValueError, match="drawn for 2 images of 8x8"):
        apply(np_xp, images(3, 1, 8), params)
    with pytest.raises(ValueError, match="drawn for"):
        apply(np_xp, images(2, 1, 9), params)


# --- conveniences and presets ------------------------------------------------------------


def test_two_views(xp: Any) -> None:
    x = images(4, 3, 32)
    rng = np.random.default_rng(0)
    config = AugmentConfig.for_dataset("cifar10")
    a, b = two_views(xp, x, rng, config, (0.5,) * 3, (0.25,) * 3)
    assert host(a).shape == host(b).shape == (4, 3, 32, 32)
    assert not np.allclose(host(a), host(b))
    again = two_views(xp, x, np.random.default_rng(0), config, (0.5,) * 3, (0.25,) * 3)
    np.testing.assert_array_equal(host(again[0]), host(a))
    # Asymmetric: the second view unchanged.
    _, plain = two_views(xp, x, rng, (config, AugmentConfig()))
    np.testing.assert_array_equal(host(plain), to_float(x))


def test_center(xp: Any) -> None:
    x = images(2, 3, 12)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    out = host(center(xp, x, mean, std))
    expected = (to_float(x) - np.array(mean, np.float32)[:, None, None]) / np.array(
        std, np.float32
    )[:, None, None]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert host(center(xp, x, out_hw=(6, 6))).shape == (2, 3, 6, 6)
    np.testing.assert_array_equal(host(center(xp, x)), to_float(x))


def test_presets() -> None:
    cifar = AugmentConfig.for_dataset("cifar10")
    assert cifar.crop_scale == (0.2, 1.0) and cifar.flip_p == 0.5 and cifar.uses_colour
    assert cifar.jitter_p == 0.8 and cifar.gray_p == 0.2
    assert AugmentConfig.for_dataset("cifar100-coarse") == AugmentConfig.for_dataset("cifar100")
    stl = AugmentConfig.for_dataset("stl10")
    assert stl.crop_scale == (0.08, 1.0) and stl.blur_p == 0.5 and stl.out_hw == (96, 96)
    for name in ("digits", "mnist5k"):
        config = AugmentConfig.for_dataset(name)
        assert config.flip_p == 0 and not config.uses_colour and config.noise_std > 0
    assert AugmentConfig.for_dataset("mnist5k-rgb32").out_hw == (32, 32)
    canvas = AugmentConfig.for_dataset("mnist5k-canvas48")
    assert canvas.out_hw == (48, 48) and canvas.flip_p == 0 and not canvas.uses_colour
    # Shifts as large as the digits' spread over the canvas (0 to 20 px), and crops that
    # can still hold a whole 28 px digit.
    assert canvas.translate * 48 >= 10
    assert canvas.crop_scale is not None
    assert canvas.crop_scale[0] * canvas.crop_ratio[0] * 48**2 >= 28**2
    with pytest.raises(ValueError, match="no augmentation preset"):
        AugmentConfig.for_dataset("imagenet")


@pytest.mark.parametrize(
    "changes",
    [
        {"flip_p": 1.5},
        {"crop_scale": (0.0, 1.0)},
        {"crop_scale": (0.5, 0.2)},
        {"hue": 0.6},
        {"brightness": -0.1},
        {"crop_ratio": (2.0, 1.0)},
        {"out_hw": (0, 4)},
    ],
)
def test_config_validation(changes: dict) -> None:
    with pytest.raises(ValueError):
        AugmentConfig(**changes)


def test_crop_boxes_follow_the_config() -> None:
    config = AugmentConfig(crop_scale=(0.2, 0.5), crop_ratio=(0.5, 2.0))
    params = draw(np.random.default_rng(0), 400, (30, 40), None, config)
    top, left, h, w = params.boxes.T
    area = h * w / (30 * 40)
    assert area.min() >= 0.2 - 1e-9 and area.max() <= 0.5 + 1e-9
    assert np.all(w / h >= 0.5 - 1e-9) and np.all(w / h <= 2.0 + 1e-9)
    assert np.all(top >= 0) and np.all(top + h <= 30 + 1e-9)
    assert np.all(left >= 0) and np.all(left + w <= 40 + 1e-9)


def _geometry_only(ry: np.ndarray, rx: np.ndarray) -> AugmentParams:
    batch = len(ry)
    return AugmentParams(
        ry=ry,
        rx=rx,
        colour=None,
        colour_mean=None,
        noise=None,
        boxes=np.zeros((batch, 4)),
        flipped=np.zeros(batch, bool),
        factors=np.tile([1.0, 1.0, 1.0, 0.0], (batch, 1)),
        gray=np.zeros(batch, bool),
        sigma=np.zeros(batch),
    )
