"""Hand-written native implementations of the benchmarked losses, one module per framework.

``natives.torch``, ``natives.jax`` and ``natives.tensorflow`` each define ``NATIVES``, a
dict from term name (``byol``, ``barlow_twins``, ``swav``, ``simclr``, ``adc``) to a
function of the framework's arrays computing exactly glf-losses' formula (docs/glf.md,
docs/adc.md), as one would write it without glf-losses, plus ``swav_score``, the
scoring ``n(z) W^T`` that both contenders share so that SwAV's gradient reaches the
projections.

Conventions shared by the three: masked diagonals are removed with the official Barlow
Twins off-diagonal view (flatten, drop one, view (M-1, M+1), drop a column), so that
softmaxes and KL divergences run on (M, M-1) rows with no mask. SwAV's Sinkhorn is the
official code's (in place in PyTorch, under ``no_grad``). ADC's fixed-count bisection is
each framework's usual loop: a Python loop in PyTorch, ``jax.lax.fori_loop`` in JAX, a
``tf.range`` loop (a ``tf.while_loop`` under ``tf.function``) in TensorFlow.

Importing this package imports no framework; each module imports its own.
"""

# Hyperparameters: the library's defaults, spelled out for the native versions.
LAMBD, BN_EPS = 0.0051, 1e-5
SIMCLR_T = 0.2
SWAV_T, SWAV_EPS, SWAV_ITERS = 0.1, 0.05, 3
ADC_NU, ADC_UPSILON, ADC_RHO, ADC_PERPLEXITY, ADC_STEPS = 1.0, 10.0, 3.0, 30.0, 20
TINY = 1e-12
