"""Loss-step parity of the three trainers on identical network outputs.

The same fixed projections (float32; BYOL's predictions and target projections) and the
same prior go through each trainer's loss (PyTorch front-end, the JAX trainer's jitted
``loss_parts``, the TensorFlow trainer's ``loss_parts`` under XLA), with ADC on. Prints,
per method, the largest relative difference of the loss values from PyTorch's and of the
gradients with respect to the outputs (and SwAV's prototypes), relative to the largest
gradient entry.

Run: ``python benchmarks/trainer_parity.py [--n 64]``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

METHODS = ("barlow_twins", "byol", "simclr", "swav")


def _rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import tensorflow as tf
    import torch
    from glf_train.config import RunConfig
    from glf_train.data import load_dataset
    from glf_train.jax.step import loss_parts
    from glf_train.tensorflow.step import TensorFlowTrainer
    from glf_train.torch.step import TorchTrainer

    digits = load_dataset("digits")
    prior = digits.x_train[: args.n]
    print(f"N = {args.n}, float32, ADC on (perplexity 10); relative to PyTorch\n")
    print("| method | JAX loss | JAX gradients | TensorFlow loss | TensorFlow gradients |")
    print("|---|---:|---:|---:|---:|")
    for method in METHODS:
        config = RunConfig.from_dict({
            "method": method, "adc": True, "adc_perplexity": 10.0, "proj_dim": 32,
            "proj_hidden": 64, "pred_hidden": 64, "cnn_width": 8, "swav_prototypes": 16,
            "out": str(Path("/nonexistent")),
        })
        rng = np.random.default_rng(0)
        outputs = [rng.normal(size=(args.n, config.proj_dim)).astype(np.float32)
                   for _ in range(4 if method == "byol" else 2)]
        loss_fn = TorchTrainer(config, digits).loss_fn
        t_out = [torch.tensor(o, requires_grad=True) for o in outputs]
        t_total = loss_fn.parts(*t_out, prior=torch.from_numpy(prior)).total
        t_total.backward()
        t_grads = [np.zeros_like(o) if t.grad is None else t.grad.numpy()
                   for o, t in zip(outputs, t_out, strict=True)]
        w = None
        if method == "swav":
            w = loss_fn.prototypes.detach().numpy().copy()
            t_grads.append(loss_fn.prototypes.grad.numpy())

        def total(outs: list[Any], prototypes: Any, cfg: RunConfig = config) -> Any:
            owned = None if prototypes is None else {"prototypes": prototypes}
            return loss_parts(cfg, outs, jnp.asarray(prior), owned).total

        j_value, j_grads = jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(
            [jnp.asarray(o) for o in outputs], None if w is None else jnp.asarray(w)
        )
        j_flat = [*j_grads[0], *([] if w is None else [j_grads[1]])]

        trainer = TensorFlowTrainer(
            RunConfig.from_dict({**config.to_dict(), "backend": "tensorflow"}), digits
        )
        if w is not None:
            trainer.loss_fn.prototypes.assign(w)

        @tf.function(jit_compile=True)
        def tf_step(*outs: Any, tr: Any = trainer, swav: bool = w is not None) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(outs)
                value = tr.loss_parts(*outs, prior=tf.constant(prior)).total
            wrt = [*outs, *([tr.loss_fn.prototypes] if swav else [])]
            return value, tape.gradient(value, wrt)

        f_value, f_grads = tf_step(*[tf.constant(o) for o in outputs])
        f_flat = [np.zeros_like(o) if g is None else g.numpy()
                  for o, g in zip([*outputs, *([w] if w is not None else [])], f_grads,
                                  strict=True)]
        t_value = float(t_total.detach())
        row = [
            abs(float(j_value) - t_value) / abs(t_value),
            max(_rel(g, t) for g, t in zip(j_flat, t_grads, strict=True)),
            abs(float(f_value) - t_value) / abs(t_value),
            max(_rel(g, t) for g, t in zip(f_flat, t_grads, strict=True)),
        ]
        print(f"| {method} | " + " | ".join(f"{v:.1e}" for v in row) + " |")


if __name__ == "__main__":
    main()
