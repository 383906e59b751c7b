"""TensorFlow backend: its array-API namespace, the losses on TF tensors, Keras layers.

Values are checked against NumPy float64; gradients against central finite differences;
``tf.function`` and XLA against eager.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import glf_losses
from glf_losses import adc, align, constrain

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
tfb = pytest.importorskip("glf_losses.backends.tensorflow")

xp = tfb.xp

keras_on_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="Keras runs on another backend"
)


def _np(x):
    return tfb.to_numpy(x)


def assert_close(actual, expected, rtol=1e-12, atol=0.0):
    """Values (and shapes) of a TF result against a NumPy one."""
    actual, expected = _np(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# --- the namespace ----------------------------------------------------------------------

MIXED = np.array([[-2.5, -0.5, 0.5], [1.5, 2.5, 3.7]])
POSITIVE = np.array([[0.1, 0.5, 1.0], [2.0, 3.0, 7.5]])


@pytest.mark.parametrize(
    ("name", "data", "ref"),
    [
        ("exp", MIXED, np.exp),
        ("log", POSITIVE, np.log),
        ("log1p", POSITIVE, np.log1p),
        ("sqrt", POSITIVE, np.sqrt),
    ],
)
def test_unary_matches_numpy(name, data, ref):
    # The namespace holds what the spec and the trainer's augmentation use, and no more.
    assert_close(getattr(xp, name)(tf.constant(data)), ref(data))


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_match_numpy(name, axis, keepdims):
    got = getattr(xp, name)(tf.constant(MIXED), axis=axis, keepdims=keepdims)
    assert_close(got, getattr(np, name)(MIXED, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("name", ["argmax"])
@pytest.mark.parametrize(("axis", "keepdims"), [(None, False), (None, True), (0, False), (1, True)])
def test_arg_reductions(name, axis, keepdims):
    got = getattr(xp, name)(tf.constant(MIXED), axis=axis, keepdims=keepdims)
    assert_close(got, getattr(np, name)(MIXED, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float32, tf.float64])
def test_python_scalars_take_the_tensor_dtype(dtype):
    x = tf.constant([-1.0, 0.5, 2.0], dtype)
    cond = x > 0
    for out in (
        xp.where(cond, x, 0.0),
        xp.where(cond, 1.0, x),
        xp.where(cond, x, -math.inf),
        xp.clip(x, min=0.0),
        xp.clip(x, max=1),
        xp.clip(x, min=-0.5, max=1.0),
    ):
        assert out.dtype == dtype
    assert_close(xp.where(cond, x, -math.inf), [-np.inf, 0.5, 2.0])
    assert_close(xp.clip(x, min=-0.5, max=1.0), [-0.5, 0.5, 1.0])


def test_clip_with_array_bounds():
    x = tf.constant(MIXED)
    lo, hi = tf.constant([0.0, -1.0, 1.0], tf.float64), tf.constant(2.0, tf.float64)
    assert_close(xp.clip(x, min=lo, max=hi), np.clip(MIXED, [0.0, -1.0, 1.0], 2.0))
    assert_close(xp.clip(x), MIXED)


def test_logical_and():
    a, b = tf.constant([True, True, False]), tf.constant([True, False, False])
    assert_close(xp.logical_and(a, b), [True, False, False])
    assert_close(xp.logical_and(a, True), [True, True, False])


@pytest.mark.parametrize(
    ("dtype", "kind", "expected"),
    [
        (tf.float32, "real floating", True),
        (tf.bfloat16, "real floating", True),
        (tf.float16, "numeric", True),
        (tf.int32, "real floating", False),
        (tf.int64, "integral", True),
        (tf.int32, "signed integer", True),
        (tf.uint8, "signed integer", False),
        (tf.uint8, "unsigned integer", True),
        (tf.uint8, "integral", True),
        (tf.bool, "bool", True),
        (tf.bool, "integral", False),
        (tf.bool, "numeric", False),
        (tf.int32, ("real floating", "integral"), True),
        (tf.bool, ("real floating", "integral"), False),
        (tf.float64, tf.float64, True),
        (tf.float64, tf.float32, False),
        (tf.float32, ("bool", tf.float32), True),
    ],
)
def test_isdtype(dtype, kind, expected):
    assert xp.isdtype(dtype, kind) is expected


def test_isdtype_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown dtype kind"):
        xp.isdtype(tf.float32, "floating")


def test_creation():
    assert _np(xp.asarray([0.1], dtype=xp.float64))[0] == 0.1  # not rounded via float32
    assert xp.asarray(np.ones(2)).dtype == tf.float64
    assert xp.asarray(tf.ones(2), dtype=xp.float64).dtype == tf.float64
    assert xp.asarray(tf.Variable([1.0])).dtype == tf.float32
    assert_close(xp.arange(4), np.arange(4))
    assert_close(xp.arange(1, 7, 2, dtype=xp.int64), np.arange(1, 7, 2))
    assert_close(xp.arange(0.0, 1.0, 0.25, dtype=xp.float64), np.arange(0.0, 1.0, 0.25))
    assert xp.zeros((), dtype=xp.float64).shape == ()
    assert xp.zeros((2, 3)).dtype == tf.float32
    assert_close(xp.ones((2,), dtype=xp.float64), np.ones(2))
    assert xp.ones_like(tf.zeros((2, 3), dtype=tf.float64)).dtype == tf.float64
    assert_close(xp.ones_like(tf.zeros((2, 3))), np.ones((2, 3)))
    assert_close(xp.eye(3), np.eye(3))
    assert_close(xp.eye(2, 4, k=1, dtype=xp.float64), np.eye(2, 4, k=1))
    assert_close(xp.eye(3, k=-1), np.eye(3, k=-1))
    dev = tfb.device(tf.ones(1))
    assert xp.zeros((2,), device=dev).shape == (2,)


def test_manipulation():
    x, y = tf.constant(MIXED), tf.constant(POSITIVE)
    assert_close(xp.reshape(x, (3, -1)), MIXED.reshape(3, -1))
    assert_close(xp.concat([x, y]), np.concatenate([MIXED, POSITIVE]))
    assert_close(xp.concat((x, y), axis=1), np.concatenate([MIXED, POSITIVE], axis=1))
    assert_close(xp.concat([x, y], axis=None), np.concatenate([MIXED.ravel(), POSITIVE.ravel()]))
    assert_close(xp.stack([x, y], axis=1), np.stack([MIXED, POSITIVE], axis=1))
    assert_close(xp.squeeze(xp.expand_dims(x, axis=1), axis=1), MIXED)
    assert xp.expand_dims(x, axis=-1).shape == (2, 3, 1)
    assert_close(xp.matrix_transpose(x), MIXED.T)


@pytest.mark.parametrize(
    ("sa", "sb"),
    [((2, 3), (3, 4)), ((3,), (3, 4)), ((2, 3), (3,)), ((3,), (3,)), ((5, 2, 3), (3, 4)),
     ((3,), (5, 3, 4))],
)
def test_matmul(sa, sb):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=sa), rng.normal(size=sb)
    assert_close(xp.matmul(tf.constant(a), tf.constant(b)), np.matmul(a, b), rtol=1e-12)


def test_sorting_and_indexing():
    x = tf.constant(MIXED)
    assert_close(xp.sort(x), np.sort(MIXED))
    assert_close(xp.sort(x, axis=0, descending=True), -np.sort(-MIXED, axis=0))
    assert_close(xp.take(x, [2, 0], axis=1), np.take(MIXED, [2, 0], axis=1))
    assert_close(xp.take(x, tf.constant([4, 1])), np.take(MIXED, [4, 1]))


def test_tensor_operators_follow_the_standard():
    x = tf.constant([1.0, 2.0, 4.0], tf.float64)
    idx = xp.arange(3)
    assert_close(idx[:, None] != idx[None, :], ~np.eye(3, dtype=bool))
    assert_close(x[1], 2.0)
    assert_close(2.0 * x - 1 + x / 2, [1.5, 4.0, 9.0])
    assert_close((1.0 - x) ** 2, [0.0, 1.0, 9.0])
    assert_close(-x, [-1.0, -2.0, -4.0])
    m = tf.constant(MIXED)
    assert_close(m @ xp.matrix_transpose(m), MIXED @ MIXED.T)
    assert (x * 3).dtype == tf.float64


def test_array_api_version():
    assert xp.__array_api_version__ == "2023.12"
    assert glf_losses.get_namespace(tf.ones(1)) is xp


# --- backend operations -----------------------------------------------------------------


@pytest.mark.parametrize("ks", [(0,), (3,), (2, 3), (0, 6, 11)])
def test_select_kth(ks):
    v = np.random.default_rng(1).normal(size=12)
    expected = np.sort(v)[list(ks)]
    assert_close(tfb.select_kth(tf.constant(v), ks), expected)
    jitted = tf.function(lambda t: tfb.select_kth(t, ks), jit_compile=True)
    assert_close(jitted(tf.constant(v)), expected)


def test_logsumexp_stop_gradient_device_to_numpy():
    assert_close(tfb.logsumexp(tf.constant(MIXED), axis=1),
                 np.log(np.exp(MIXED).sum(axis=1)))
    assert tfb.logsumexp(tf.constant(MIXED), axis=0, keepdims=True).shape == (1, 3)
    x = tf.constant(MIXED)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(tfb.stop_gradient(x) * x)
    assert_close(tape.gradient(y, x), MIXED)
    assert tfb.device(tf.ones(1))
    seen = []

    @tf.function
    def probe(t):
        seen.append(tfb.device(t))  # runs once, while tracing
        return t

    probe(x)
    assert seen == [None]
    out = tfb.to_numpy(tf.constant([1.5], tf.bfloat16))
    assert out.dtype == np.float32 and out[0] == 1.5
    assert tfb.name == "tensorflow"


# --- every loss term on TF tensors ------------------------------------------------------

N, D, K = 6, 4, 5


def _unit(v):
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _softmax(v):
    e = np.exp(v - v.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        **{f"z{i}": rng.normal(size=(N, D)) for i in range(4)},
        **{f"s{i}": _unit(rng.normal(size=(N, D))) @ _unit(rng.normal(size=(K, D))).T
           for i in range(2)},
        **{f"q{i}": _softmax(rng.normal(size=(N, K))) for i in range(2)},
        "prior": rng.integers(0, 256, size=(N, 2, 3)),
    }


ARRAYS = _arrays()

# name -> (function, the names of its arguments in ARRAYS)
CASES = {
    "byol_loss": (glf_losses.byol_loss, ("z0", "z1", "z2", "z3")),
    "byol_parts": (glf_losses.byol_parts, ("z0", "z1", "z2", "z3")),
    "barlow_twins_loss": (glf_losses.barlow_twins_loss, ("z0", "z1")),
    "barlow_twins_scaled": (
        functools.partial(glf_losses.barlow_twins_loss, lambd=0.02, eps=1e-3, scale=0.5),
        ("z0", "z1"),
    ),
    "barlow_twins_parts": (glf_losses.barlow_twins_parts, ("z0", "z1")),
    "swav_loss": (glf_losses.swav_loss, ("s0", "s1")),
    "swav_parts": (glf_losses.swav_parts, ("s0", "s1")),
    "simclr_loss": (glf_losses.simclr_loss, ("z0", "z1")),
    "simclr_parts": (functools.partial(glf_losses.simclr_parts, temperature=0.5), ("z0", "z1")),
    "align.normalized_mse": (align.normalized_mse, ("z0", "z1")),
    "align.invariance": (align.invariance, ("z0", "z1")),
    "align.infonce_alignment": (align.infonce_alignment, ("z0", "z1")),
    "align.swapped_prediction": (align.swapped_prediction, ("s0", "s1", "q0", "q1")),
    "constrain.redundancy_reduction": (constrain.redundancy_reduction, ("z0", "z1")),
    "constrain.uniformity": (constrain.uniformity, ("z0", "z1")),
    "constrain.sinkhorn": (constrain.sinkhorn, ("s0",)),
    "adc_loss.perplexity": (
        # Few bisection steps: each is unrolled, and XLA's compile time grows with them.
        functools.partial(adc.adc_loss, perplexity=4.0, perplexity_steps=5),
        ("z0", "z1", "prior"),
    ),
    "adc_parts.median": (
        functools.partial(adc.adc_parts, bandwidth="median", prior_bandwidth="median"),
        ("z0", "z1", "prior"),
    ),
}


def _flat(out):
    return tuple(out) if isinstance(out, tuple) else (out,)


def _tf_args(keys, dtype=tf.float64):
    return [
        tf.constant(ARRAYS[k]) if k == "prior" else tf.constant(ARRAYS[k], dtype) for k in keys
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_float64_matches_numpy(case):
    fn, keys = CASES[case]
    got = _flat(fn(*_tf_args(keys)))
    expected = _flat(fn(*(ARRAYS[k] for k in keys)))
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == tf.float64
        assert_close(g, e, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
@pytest.mark.parametrize("case", sorted(CASES))
def test_low_precision_computes_in_float32(case, dtype):
    fn, keys = CASES[case]
    expected = _flat(fn(*(ARRAYS[k] for k in keys)))
    for g, e in zip(_flat(fn(*_tf_args(keys, dtype))), expected, strict=True):
        assert g.dtype == tf.float32
        # Only the rounding of the inputs separates the results.
        assert_close(g, e, rtol=0.1, atol=0.1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_tf_function_and_xla_match_eager(case):
    fn, keys = CASES[case]
    args = _tf_args(keys)
    eager = _flat(fn(*args))
    for compiled in (tf.function(fn), tf.function(fn, jit_compile=True)):
        for c, e in zip(_flat(compiled(*args)), eager, strict=True):
            assert c.dtype == e.dtype
            assert_close(c, _np(e), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("case", sorted(set(CASES) - {"constrain.sinkhorn"}))
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_gradients_are_finite(case, dtype):
    fn, keys = CASES[case]
    args = _tf_args(keys, dtype)
    with tf.GradientTape() as tape:
        tape.watch(args)
        total = tf.add_n(list(_flat(fn(*args))))
    for g in tape.gradient(total, args):
        assert g is None or np.all(np.isfinite(_np(g)))


def _central_differences(f, arrays, wrt, h=1e-6):
    """d f / d arrays[i] for i in ``wrt``, by central differences in NumPy float64."""
    grads = []
    for i in wrt:
        g = np.zeros_like(arrays[i])
        for idx in np.ndindex(arrays[i].shape):
            shifted = []
            for sign in (1.0, -1.0):
                moved = [a.copy() for a in arrays]
                moved[i][idx] += sign * h
                shifted.append(float(f(*moved)))
            g[idx] = (shifted[0] - shifted[1]) / (2 * h)
        grads.append(g)
    return grads


def _swav_with_fixed_codes(s_a, s_b):
    # The codes are under stop-gradient, so the loss's gradient is that of the swapped
    # prediction with the codes held at their value at the evaluation point.
    codes_a, codes_b = constrain.sinkhorn(ARRAYS["s0"]), constrain.sinkhorn(ARRAYS["s1"])
    return align.swapped_prediction(s_a, s_b, codes_a, codes_b)


# name -> (TF function, NumPy function with the same gradient, argument names, the
# arguments to differentiate). ADC is not here: its bandwidths and calibration target
# depend on the features but are under stop-gradient, so no plain function of the
# inputs has its gradient.
GRADIENT_CASES = {
    "byol": (glf_losses.byol_loss, glf_losses.byol_loss, ("z0", "z1", "z2", "z3"), (0, 1)),
    "barlow_twins": (glf_losses.barlow_twins_loss, glf_losses.barlow_twins_loss,
                     ("z0", "z1"), (0, 1)),
    "simclr": (glf_losses.simclr_loss, glf_losses.simclr_loss, ("z0", "z1"), (0, 1)),
    "swav": (glf_losses.swav_loss, _swav_with_fixed_codes, ("s0", "s1"), (0, 1)),
    "swapped_prediction": (align.swapped_prediction, align.swapped_prediction,
                           ("s0", "s1", "q0", "q1"), (0, 1, 2, 3)),
}


@pytest.mark.parametrize("case", sorted(GRADIENT_CASES))
def test_gradients_match_finite_differences(case):
    tf_fn, np_fn, keys, wrt = GRADIENT_CASES[case]
    args = _tf_args(keys)
    with tf.GradientTape() as tape:
        tape.watch(args)
        loss = tf_fn(*args)
    grads = tape.gradient(loss, args)
    arrays = [np.asarray(ARRAYS[k], dtype=np.float64) for k in keys]
    expected = _central_differences(np_fn, arrays, wrt)
    for g, e in zip([grads[i] for i in wrt], expected, strict=True):
        assert_close(g, e, rtol=1e-5, atol=1e-7)
    if case == "byol":  # the targets are under stop-gradient
        assert grads[2] is None and grads[3] is None


# --- Keras layers -----------------------------------------------------------------------


@keras_on_tensorflow
def test_layers_equal_the_functions():
    z_a, z_b = _tf_args(("z0", "z1"))
    p_a, p_b = _tf_args(("z2", "z3"))
    pairs = [
        (tfb.BYOLLoss(), (p_a, p_b, z_a, z_b), glf_losses.byol_parts(p_a, p_b, z_a, z_b)),
        (tfb.BarlowTwinsLoss(lambd=0.01, scale=2.0), (z_a, z_b),
         glf_losses.barlow_twins_parts(z_a, z_b, lambd=0.01, scale=2.0)),
        (tfb.SimCLRLoss(temperature=0.3), (z_a, z_b),
         glf_losses.simclr_parts(z_a, z_b, temperature=0.3)),
    ]
    for layer, args, expected in pairs:
        assert_close(layer(*args), _np(expected.total))
        for g, e in zip(layer.parts(*args), expected, strict=True):
            assert_close(g, _np(e))
    # NumPy inputs are converted, keeping their dtype: a loss layer does not autocast.
    assert tfb.SimCLRLoss()(ARRAYS["z0"], ARRAYS["z1"]).dtype == tf.float64


@keras_on_tensorflow
def test_layers_with_adc():
    z_a, z_b, prior = _tf_args(("z0", "z1", "prior"))
    rule = glf_losses.ADC(perplexity=4.0)
    loss = tfb.SimCLRLoss(adc=rule)(z_a, z_b, prior=prior)
    assert_close(loss, _np(glf_losses.simclr_loss(z_a, z_b) + rule(z_a, z_b, prior)))
    assert_close(tfb.ADCLoss(rule)(z_a, z_b, prior), _np(rule(z_a, z_b, prior)))
    with pytest.raises(ValueError, match="prior is required"):
        tfb.SimCLRLoss(adc=rule)(z_a, z_b)


@keras_on_tensorflow
def test_swav_layer():
    layer = tfb.SwAVLoss(D, K, temperature=0.2)
    w = _np(layer.prototypes)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, rtol=1e-6)
    z_a, z_b = (ARRAYS[k] for k in ("z0", "z1"))
    w64 = _unit(w.astype(np.float64))
    expected = glf_losses.swav_loss(_unit(z_a) @ w64.T, _unit(z_b) @ w64.T, temperature=0.2)
    assert_close(layer(tf.constant(z_a), tf.constant(z_b)), expected, rtol=1e-10)
    assert layer.parts(tf.constant(z_a), tf.constant(z_b)).constrain.dtype == tf.float64
    layer.prototypes.assign(3.0 * layer.prototypes)
    layer.after_step()
    np.testing.assert_allclose(_np(layer.prototypes), w, rtol=1e-6)
    with tf.GradientTape() as tape:
        loss = layer(tf.constant(z_a, tf.float32), tf.constant(z_b, tf.float32))
    (grad,) = tape.gradient(loss, layer.trainable_variables)
    assert grad.shape == (K, D) and np.all(np.isfinite(_np(grad)))


class _ToyModel(keras.Model):
    """A linear encoder (and BYOL predictor) trained by one of the loss layers."""

    def __init__(self, loss_layer):
        super().__init__()
        self.encoder = keras.layers.Dense(8)
        self.predictor = keras.layers.Dense(8)
        self.loss_layer = loss_layer

    def loss_of(self, x_a, x_b):
        z_a, z_b = self.encoder(x_a), self.encoder(x_b)
        if isinstance(self.loss_layer, tfb.BYOLLoss):
            return self.loss_layer(self.predictor(z_a), self.predictor(z_b), z_a, z_b)
        return self.loss_layer(z_a, z_b)

    def train_step(self, data):
        x_a, x_b = data  # fit(x=view a, y=view b)
        with tf.GradientTape() as tape:
            loss = self.loss_of(x_a, x_b)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        if isinstance(self.loss_layer, tfb.SwAVLoss):
            self.loss_layer.after_step()
        # Not "loss": fit reports that key from the compiled loss tracker, unused here.
        return {"ssl_loss": loss}


@keras_on_tensorflow
@pytest.mark.parametrize(
    "make_layer",
    [tfb.BYOLLoss, tfb.BarlowTwinsLoss, tfb.SimCLRLoss, lambda: tfb.SwAVLoss(8, 4)],
    ids=["byol", "barlow_twins", "simclr", "swav"],
)
def test_keras_train_step_lowers_the_loss(make_layer):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 10)).astype(np.float32)
    x_a = x + 0.1 * rng.normal(size=x.shape).astype(np.float32)
    x_b = x + 0.1 * rng.normal(size=x.shape).astype(np.float32)
    model = _ToyModel(make_layer())
    model.compile(optimizer=keras.optimizers.Adam(0.01), jit_compile=True)
    history = model.fit(x_a, x_b, epochs=15, batch_size=32, shuffle=False, verbose=0)
    losses = history.history["ssl_loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]


# --- an unknown batch size ----------------------------------------------------------------
#
# Under tf.function(input_signature=[tf.TensorSpec([None, D])]), with reduce_retracing once
# a second batch size arrives, and in Keras fit (whose datasets have a None batch
# dimension), the batch size is None when tracing: every loss must take it from the
# tensor at run time.

UNKNOWN_BATCH_CASES = {
    **CASES,
    "swav_loss.queue": (
        lambda s0, s1, q0, q1: glf_losses.swav_loss(s0, s1, queue_a=q0, queue_b=q1),
        ("s0", "s1", "s1", "s0"),
    ),
    "adc_loss.float_bandwidths": (
        functools.partial(adc.adc_loss, bandwidth=0.3, prior_bandwidth=5e3),
        ("z0", "z1", "prior"),
    ),
    "adc_loss.other_view_in_prior": (
        functools.partial(adc.adc_loss, perplexity=3.0, perplexity_steps=5,
                          prior_other_view=True, normalize=False),
        ("z0", "z1", "prior"),
    ),
    "adc.dcm": (functools.partial(adc.dcm, perplexity=3.0, perplexity_steps=5),
                ("z0", "z1", "prior")),
    "adc.lpm": (functools.partial(adc.lpm, bandwidth="median", prior_perplexity=3.0),
                ("z0", "z1", "prior")),
    "adc.feature_distances": (adc.feature_distances, ("z0", "z1")),
    "adc.prior_distances": (adc.prior_distances, ("prior",)),
}


def _batch_spec(key, dtype=tf.float64):
    """A TensorSpec of ARRAYS[key] with the batch size left unknown."""
    a = ARRAYS[key]
    return tf.TensorSpec([None, *a.shape[1:]], tf.int64 if key == "prior" else dtype)


def _first_rows(keys, n):
    return [tf.constant(ARRAYS[k][:n]) for k in keys]


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("case", sorted(UNKNOWN_BATCH_CASES))
def test_unknown_batch_size_in_the_signature(case, jit_compile):
    fn, keys = UNKNOWN_BATCH_CASES[case]
    traced = tf.function(
        fn, input_signature=[_batch_spec(k) for k in keys], jit_compile=jit_compile
    )
    for n in (N, N - 2):  # one trace serves both batch sizes
        args = _first_rows(keys, n)
        for got, want in zip(_flat(traced(*args)), _flat(fn(*args)), strict=True):
            assert got.dtype == want.dtype
            # An integer prior's distances are float32 (they have no projections' dtype).
            rtol = 1e-10 if want.dtype == tf.float64 else 1e-6
            assert_close(got, _np(want), rtol=rtol, atol=1e-14)
    assert traced.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("case", ["simclr_loss", "adc_loss.perplexity", "swav_loss.queue"])
def test_reduce_retracing_with_a_second_batch_size(case):
    fn, keys = UNKNOWN_BATCH_CASES[case]
    traced = tf.function(fn, reduce_retracing=True)
    for n in (N, N - 2, N - 1):  # the second call traces with the batch size unknown
        args = _first_rows(keys, n)
        assert_close(traced(*args), _np(fn(*args)), rtol=1e-10, atol=1e-14)


def test_unknown_batch_size_still_checks_what_it_can():
    # The perplexity's upper bound needs M; its lower bound does not.
    spec = [_batch_spec("z0"), _batch_spec("z1"), _batch_spec("prior")]
    args = _first_rows(("z0", "z1", "prior"), N)
    with pytest.raises(ValueError, match=r"perplexity must be > 1 .*got 1\.0"):
        tf.function(functools.partial(adc.adc_loss, perplexity=1.0), input_signature=spec)(
            *args
        )
    wide = tf.TensorSpec([None, D + 1], tf.float64)
    with pytest.raises(ValueError, match=r"z_a and z_b must have the same shape"):
        tf.function(glf_losses.simclr_loss, input_signature=[spec[0], wide]).get_concrete_function()


# (M, M) matrices of unknown size M, as ADC's helpers receive them.
SQUARE_CASES = {
    "median_bandwidth": adc.median_bandwidth,
    "perplexity_bandwidth": functools.partial(adc.perplexity_bandwidth, perplexity=3.0),
    "bandwidth.prior": functools.partial(adc.bandwidth, mode="median", kind="prior"),
    "calibration_distribution": lambda d: adc.calibration_distribution(d, 0.4),
    "data_distribution": lambda d: adc.data_distribution(d, 0.4),
    "prior_distribution": lambda d: adc.prior_distribution(d, 0.4),
    "anchor_weights": lambda d: adc.anchor_weights(adc.prior_distribution(d, 0.4)),
}


@pytest.mark.parametrize("case", sorted(SQUARE_CASES))
def test_adc_helpers_with_an_unknown_size(case):
    fn = SQUARE_CASES[case]
    traced = tf.function(fn, input_signature=[tf.TensorSpec([None, None], tf.float64)])
    for n in (N, N - 2):
        d = adc.feature_distances(*_first_rows(("z0", "z1"), n))
        assert_close(traced(d), _np(fn(d)), rtol=1e-10, atol=1e-14)


class _PriorModel(_ToyModel):
    """:class:`_ToyModel` with ADC: view a's raw inputs are the prior."""

    def loss_of(self, x_a, x_b):
        z_a, z_b = self.encoder(x_a), self.encoder(x_b)
        if isinstance(self.loss_layer, tfb.ADCLoss):
            return self.loss_layer(z_a, z_b, x_a)
        if isinstance(self.loss_layer, tfb.BYOLLoss):
            p_a, p_b = self.predictor(z_a), self.predictor(z_b)
            return self.loss_layer(p_a, p_b, z_a, z_b, prior=x_a)
        return self.loss_layer(z_a, z_b, prior=x_a)


_ADC = glf_losses.ADC(perplexity=3.0, perplexity_steps=5)


_LAYERS = {
    "byol": lambda: tfb.BYOLLoss(adc=_ADC),
    "barlow_twins": lambda: tfb.BarlowTwinsLoss(adc=_ADC),
    "simclr": lambda: tfb.SimCLRLoss(adc=_ADC),
    "swav": lambda: tfb.SwAVLoss(8, 4, adc=_ADC),
    "adc": lambda: tfb.ADCLoss(_ADC),
}


@keras_on_tensorflow
@pytest.mark.parametrize(
    ("layer_name", "jit_compile"),
    # XLA compiles each batch shape apart (~25 s a model here): once is enough.
    [*((name, False) for name in _LAYERS), ("adc", True)],
    ids=[*(f"{name}-graph" for name in _LAYERS), "adc-xla"],
)
def test_keras_fit_with_a_partial_last_batch(layer_name, jit_compile):
    # 20 samples at batch size 8: batches of 8, 8 and 4, traced with a None batch size.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 10)).astype(np.float32)
    x_a = x + 0.1 * rng.normal(size=x.shape).astype(np.float32)
    x_b = x + 0.1 * rng.normal(size=x.shape).astype(np.float32)
    model = _PriorModel(_LAYERS[layer_name]())
    # A zero learning rate keeps the weights, so the reported loss (the last batch's) can
    # be recomputed eagerly on the last 4 rows.
    model.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=jit_compile)
    history = model.fit(x_a, x_b, epochs=2, batch_size=8, shuffle=False, verbose=0)
    reported = history.history["ssl_loss"]
    assert len(reported) == 2 and np.all(np.isfinite(reported))
    expected = model.loss_of(tf.constant(x_a[16:]), tf.constant(x_b[16:]))
    np.testing.assert_allclose(reported[-1], _np(expected), rtol=1e-4)
