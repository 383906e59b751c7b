"""Hand-written native implementations of the benchmarked losses, one module per framework.

``natives.torch``, ``natives.jax`` and ``natives.tensorflow`` each define ``NATIVES``, a
dict from term name (``byol``, ``barlow_twins``, ``swav``, ``simclr``, ``adc``, and the
zoo's ``simsiam``, ``vicreg``, ``wmse``, ``moco``, ``mocov3``, ``dcl``, ``dclw``,
``alignment_uniformity``, ``tico``, ``mmcr``, ``nnclr``, ``dino``, ``koleo``) to a
function of the framework's arrays computing exactly glf-losses' formula (docs/glf.md,
docs/adc.md, docs/zoo.md), as one would write it without glf-losses from the official
code, plus ``swav_score``, the scoring ``n(z) W^T`` that both contenders share so that
SwAV's gradient reaches the projections.

Conventions shared by the three: masked diagonals are removed with the official Barlow
Twins off-diagonal view (flatten, drop one, view (M-1, M+1), drop a column), so that
softmaxes and KL divergences run on (M, M-1) rows with no mask. SwAV's Sinkhorn is the
official code's (in place in PyTorch, under ``no_grad``). ADC's fixed-count bisection is
each framework's usual loop: a Python loop in PyTorch, ``jax.lax.fori_loop`` in JAX, a
``tf.range`` loop (a ``tf.while_loop`` under ``tf.function``) in TensorFlow.

The zoo follows each method's official code (docs/zoo.md names the files): cross-entropy
with integer labels for the InfoNCE family (MoCo v2 with label 0 over ``[l_pos, l_neg]``,
MoCo v3 and NNCLR with ``arange`` labels), the decoupled losses as a log-sum-exp over
the concatenated cross-view and same-view similarities with the diagonals at -inf,
W-MSE's whitening as a Cholesky factor and a triangular solve per contiguous sub-batch
(batched), alignment-uniformity over the pairs ``i < j`` (``torch.pdist``), MMCR as the
singular values of the two views' centroids, DINO as the two-crop loop of
``DINOLoss`` written out, KoLeo with the neighbour index under no gradient.

Importing this package imports no framework; each module imports its own.
"""

# Hyperparameters: the library's defaults, spelled out for the native versions.
LAMBD, BN_EPS = 0.0051, 1e-5
SIMCLR_T = 0.2
SWAV_T, SWAV_EPS, SWAV_ITERS = 0.1, 0.05, 3
ADC_NU, ADC_UPSILON, ADC_RHO, ADC_PERPLEXITY, ADC_STEPS = 1.0, 10.0, 3.0, 30.0, 20
TINY = 1e-12

# The zoo (docs/zoo.md): each method's defaults.
VICREG_SIM, VICREG_STD, VICREG_COV, VICREG_EPS = 25.0, 25.0, 1.0, 1e-4
MOCO_T, MOCOV3_T, NNCLR_T = 0.2, 1.0, 0.1
DCL_T, DCLW_SIGMA = 0.1, 0.5
AU_ALPHA, AU_T = 2.0, 2.0
TICO_BETA, TICO_RHO = 0.9, 20.0
DINO_STUDENT_T, DINO_TEACHER_T = 0.1, 0.04
KOLEO_EPS = 1e-8
