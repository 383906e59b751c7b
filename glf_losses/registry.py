"""The method registry: one declaration per SSL method, read by everything else.

A [`Method`][glf_losses.registry.Method] says what a method's loss is (its ``<name>_parts`` function
of the
spec), which arrays it takes, its hyperparameters and their defaults, the arrays a
framework front-end owns for it (SwAV's prototypes), the networks a trainer builds around
it (predictor, momentum target, projector depth), the per-step values the training loop
hands it (the EMA rate, whether owned arrays may move), and ADC's weights beside it.

From these declarations, and from nothing else:

- ``glf_losses.backends.torch`` builds its ``torch.nn.Module`` losses,
  ``glf_losses.backends.tensorflow`` its Keras layers and ``glf_losses.backends.jax`` its
  jitted functions (``BarlowTwinsLoss``, ``barlow_twins_loss``, ...);
- the three reference trainers build their heads, state and loss;
- [`glf_losses.adc.method_weights`][glf_losses.adc.method_weights] reads ADC's recommended weights.

Adding a method is: its terms in [`glf_losses.align`][glf_losses.align] /
[`glf_losses.constrain`][glf_losses.constrain],
its ``<name>_parts``/``<name>_loss`` in [`glf_losses.methods`][glf_losses.methods], one
[`register`][glf_losses.registry.register]
call below, and its tests (``docs/adding-a-method.md`` walks through one).

Examples:
  >>> from glf_losses import registry
  >>> entry = registry.get("barlow_twins")
  >>> entry.inputs, dict(entry.hyperparameters)["lambd"]
  (('z_a', 'z_b'), 0.0051)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from glf_losses import methods
from glf_losses._lib import GLFParts
from glf_losses.typing import Array

__all__ = [
    "EMA_RATE",
    "PARAMETERS_ACTIVE",
    "Method",
    "Parameter",
    "get",
    "method_parts",
    "names",
    "register",
    "unregister",
]

# The per-step host inputs a method may ask the training loop for.
EMA_RATE = "ema_rate"  # the momentum target's EMA rate this step (BYOL's tau)
PARAMETERS_ACTIVE = "parameters_active"  # 0 or 1: whether owned arrays may move this step


@dataclass(frozen=True)
class Parameter:
    """An array a method's front-end owns and trains beside the network.

    Attributes:
      name: the keyword of the method's parts function that receives it.
      shape: the names of the front-end's size arguments giving its shape, e.g.
        ``("n_prototypes", "dim")``.
      unit_rows: rows are drawn from a standard normal, L2-normalised, and projected back
        onto the unit sphere after every optimiser step (``after_step()``).
      min_rows: the fewest rows that make sense (SwAV: one prototype gives every sample
        the code 1, a loss identically 0).
    """

    name: str
    shape: tuple[str, ...]
    unit_rows: bool = False
    min_rows: int = 1


# Compared and hashed by identity: a declaration is a static argument of jitted functions.
@dataclass(frozen=True, eq=False)
class Method:
    """One SSL method, declared once.

    Attributes:
      name: the registry key, the trainer's ``--method`` and the stem of the spec's
        ``<name>_loss``/``<name>_parts`` and of the front-ends' names.
      parts: the spec function ``parts(*inputs, *optional_inputs, **parameters,
        **hyperparameters) -> GLFParts``.
      inputs: names of the arrays the loss takes, in order (network outputs).
      adc_inputs: the two inputs ADC acts on (the views' outputs that carry gradient).
      hyperparameters: keyword -> default of the loss's settings (the official ones).
      optional_inputs: names of further arrays the loss may take (SwAV's queue).
      parameters: arrays the front-end owns and trains (SwAV's prototypes).
      sizes: the front-end's size arguments (positional, in this order) with trainer
        defaults for those that are not the projection width ``dim``.
      predictor: a trainer puts a predictor head on the online branch; the first two
        inputs are then its outputs and the next two the target's projections.
      momentum_target: a trainer keeps an EMA copy of the online network as the target.
      projector_layers: depth of the projection head the method's authors use.
      host_inputs: per-step values the loop computes ([`EMA_RATE`][glf_losses.registry.EMA_RATE],
        [`PARAMETERS_ACTIVE`][glf_losses.registry.PARAMETERS_ACTIVE]).
      adc_weights: ``(nu, upsilon)`` that give ADC a comparable share of the gradient
        beside this method's loss (``docs/adc.md``).
      title: the method's name as papers write it.
      paper: the paper that introduced it.
      source: the official code the spec follows (repository and file).
    """

    name: str
    parts: Callable[..., GLFParts]
    inputs: tuple[str, ...]
    adc_inputs: tuple[str, str]
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    optional_inputs: tuple[str, ...] = ()
    parameters: tuple[Parameter, ...] = ()
    sizes: Mapping[str, int | None] = field(default_factory=dict)
    predictor: bool = False
    momentum_target: bool = False
    projector_layers: int = 2
    host_inputs: frozenset[str] = frozenset()
    adc_weights: tuple[float, float] = (1.0, 10.0)
    title: str = ""
    paper: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        # Read-only views: a declaration is shared by every front-end built from it.
        object.__setattr__(self, "hyperparameters", MappingProxyType(dict(self.hyperparameters)))
        object.__setattr__(self, "sizes", MappingProxyType(dict(self.sizes)))
        missing = set(self.adc_inputs) - set(self.inputs)
        if missing:
            raise ValueError(f"{self.name}: adc_inputs {sorted(missing)} are not among inputs")

    @property
    def class_name(self) -> str:
        """The front-ends' class name: ``barlow_twins`` -> ``BarlowTwinsLoss``."""
        words = {
            "byol": "BYOL",
            "simclr": "SimCLR",
            "swav": "SwAV",
            "adc": "ADC",
            "simsiam": "SimSiam",
            "vicreg": "VICReg",
            "dcl": "DCL",
            "dclw": "DCLW",
        }
        return "".join(words.get(w, w.capitalize()) for w in self.name.split("_")) + "Loss"

    def hyperparameter_values(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults updated by ``given``; an unknown name is refused, naming the known."""
        unknown = sorted(set(given) - set(self.hyperparameters))
        if unknown:
            known = ", ".join(self.hyperparameters) or "none"
            raise TypeError(
                f"{self.name} has no hyperparameter {', '.join(map(repr, unknown))}; its "
                f"hyperparameters are: {known}"
            )
        return {**self.hyperparameters, **given}

    def adc_pair(self, inputs: tuple[Any, ...]) -> tuple[Any, Any]:
        """The two arrays among ``inputs`` that ADC acts on."""
        a, b = (self.inputs.index(n) for n in self.adc_inputs)
        return inputs[a], inputs[b]


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method``; a name already taken is refused (call
    [`unregister`][glf_losses.registry.unregister] first)."""
    if method.name in _REGISTRY:
        raise ValueError(f"a method named {method.name!r} is registered already")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> Method:
    """Remove and return the method ``name`` (for tests that declare a toy method)."""
    return _REGISTRY.pop(get(name).name)


def get(name: str | Method) -> Method:
    """The declaration of ``name``; an unknown name is refused with the known ones."""
    if isinstance(name, Method):
        return name
    if name not in _REGISTRY:
        raise ValueError(
            f"method must be one of {', '.join(names())}, got {name!r}: pass one of them, or "
            "declare the method with registry.register(Method(...)) (docs/adding-a-method.md)"
        )
    return _REGISTRY[name]


def names() -> tuple[str, ...]:
    """The registered methods' names, sorted."""
    return tuple(sorted(_REGISTRY))


def method_parts(
    method: str | Method,
    *inputs: Array,
    prior: Array = None,
    adc: Any = None,
    **kwargs: Any,
) -> GLFParts:
    """A method's ``GLFParts`` from its inputs, with ADC in the constraining part if set.

    The one composition every front-end calls: ``inputs`` are the method's
    [`Method.inputs`][glf_losses.registry.Method.inputs] (then optional inputs, ``None`` for absent
    ones); ``kwargs`` hold
    its owned arrays (``prototypes=``) and hyperparameters. With ``adc`` (an
    [`glf_losses.ADC`][glf_losses.ADC]) the ADC term on
    [`Method.adc_inputs`][glf_losses.registry.Method.adc_inputs] joins the
    constraining part, and ``prior`` must be given.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import ADC, registry
      >>> z = np.random.default_rng(0).normal(size=(2, 8, 4))
      >>> parts = registry.method_parts("simclr", z[0], z[1], temperature=0.5,
      ...                               adc=ADC(perplexity=4.0), prior=z[0])
      >>> bool(np.isfinite(parts.total))
      True
    """
    entry = get(method)
    n_required, n_all = len(entry.inputs), len(entry.inputs) + len(entry.optional_inputs)
    if not n_required <= len(inputs) <= n_all:
        raise TypeError(
            f"{entry.name} takes the inputs ({', '.join(entry.inputs + entry.optional_inputs)})"
            f"{' (the last optional)' if entry.optional_inputs else ''}, got {len(inputs)} arrays"
        )
    owned = {p.name for p in entry.parameters}
    missing = sorted(owned - set(kwargs))
    if missing:
        raise TypeError(f"{entry.name} needs {', '.join(missing)}= (arrays the front-end owns)")
    settings = entry.hyperparameter_values({k: v for k, v in kwargs.items() if k not in owned})
    arrays = {k: v for k, v in kwargs.items() if k in owned}
    # Optional inputs by name: the parts function takes owned arrays before them.
    optional = dict(zip(entry.optional_inputs, inputs[n_required:], strict=False))
    parts = entry.parts(*inputs[:n_required], **optional, **arrays, **settings)
    return methods.with_adc(parts, adc, *entry.adc_pair(inputs[:n_required]), prior)


# --- the methods ---------------------------------------------------------------------------

register(Method(
    name="byol",
    parts=methods.byol_parts,
    inputs=("p_a", "p_b", "z_a", "z_b"),
    # The online predictions: BYOL's only outputs that carry gradient.
    adc_inputs=("p_a", "p_b"),
    predictor=True,
    momentum_target=True,
    host_inputs=frozenset({EMA_RATE}),
    title="BYOL",
    paper="Grill et al., Bootstrap Your Own Latent, NeurIPS 2020 (arXiv 2006.07733)",
    source="google-deepmind/deepmind-research: byol/byol_experiment.py",
))

register(Method(
    name="barlow_twins",
    parts=methods.barlow_twins_parts,
    inputs=("z_a", "z_b"),
    adc_inputs=("z_a", "z_b"),
    hyperparameters={"lambd": 0.0051, "eps": 1e-5, "scale": 1.0},
    projector_layers=3,
    # Its loss sums D^2 terms and is ~100x the others': ADC's weights scale with it so
    # that its gradient share is comparable (81% at D = 128, docs/study.md).
    adc_weights=(100.0, 1000.0),
    title="Barlow Twins",
    paper="Zbontar et al., Barlow Twins, ICML 2021 (arXiv 2103.03230)",
    source="facebookresearch/barlowtwins: main.py",
))

register(Method(
    name="simclr",
    parts=methods.simclr_parts,
    inputs=("z_a", "z_b"),
    adc_inputs=("z_a", "z_b"),
    hyperparameters={"temperature": 0.2},
    title="SimCLR",
    paper="Chen et al., A Simple Framework for Contrastive Learning, ICML 2020 "
    "(arXiv 2002.05709)",
    source="google-research/simclr: tf2/objective.py",
))

register(Method(
    name="swav",
    parts=methods.swav_prototype_parts,
    inputs=("z_a", "z_b"),
    optional_inputs=("queue_a", "queue_b"),
    adc_inputs=("z_a", "z_b"),
    hyperparameters={"temperature": 0.1, "epsilon": 0.05, "sinkhorn_iters": 3},
    parameters=(Parameter("prototypes", ("n_prototypes", "dim"), unit_rows=True, min_rows=2),),
    sizes={"dim": None, "n_prototypes": 64},
    host_inputs=frozenset({PARAMETERS_ACTIVE}),
    title="SwAV",
    paper="Caron et al., Unsupervised Learning of Visual Features by Contrasting Cluster "
    "Assignments, NeurIPS 2020 (arXiv 2006.09882)",
    source="facebookresearch/swav: main_swav.py",
))

register(Method(
    name="simsiam",
    parts=methods.simsiam_parts,
    inputs=("p_a", "p_b", "z_a", "z_b"),
    # The predictions: the outputs that carry gradient (the targets are stop-gradient).
    adc_inputs=("p_a", "p_b"),
    predictor=True,
    projector_layers=3,
    title="SimSiam",
    paper="Chen and He, Exploring Simple Siamese Representation Learning, CVPR 2021 "
    "(arXiv 2011.10566)",
    source="facebookresearch/simsiam: main_simsiam.py",
))

register(Method(
    name="vicreg",
    parts=methods.vicreg_parts,
    inputs=("z_a", "z_b"),
    adc_inputs=("z_a", "z_b"),
    hyperparameters={"sim_coeff": 25.0, "std_coeff": 25.0, "cov_coeff": 1.0, "eps": 1e-4},
    projector_layers=3,
    title="VICReg",
    paper="Bardes, Ponce and LeCun, VICReg, ICLR 2022 (arXiv 2105.04906)",
    source="facebookresearch/vicreg: main_vicreg.py",
))

register(Method(
    name="dcl",
    parts=methods.dcl_parts,
    inputs=("z_a", "z_b"),
    adc_inputs=("z_a", "z_b"),
    hyperparameters={"temperature": 0.1},
    title="DCL",
    paper="Yeh et al., Decoupled Contrastive Learning, ECCV 2022 (arXiv 2110.06848)",
    source="no authors' code: the paper, as raminnakhli/Decoupled-Contrastive-Learning: "
    "loss/dcl.py",
))

register(Method(
    name="dclw",
    parts=methods.dclw_parts,
    inputs=("z_a", "z_b"),
    adc_inputs=("z_a", "z_b"),
    hyperparameters={"temperature": 0.1, "sigma": 0.5},
    title="DCLW",
    paper="Yeh et al., Decoupled Contrastive Learning, ECCV 2022 (arXiv 2110.06848)",
    source="no authors' code: the paper; weights as lightly's negative_mises_fisher_weights",
))

register(Method(
    name="alignment_uniformity",
    parts=methods.alignment_uniformity_parts,
    inputs=("z_a", "z_b"),
    adc_inputs=("z_a", "z_b"),
    hyperparameters={"alpha": 2.0, "t": 2.0, "align_weight": 1.0, "uniform_weight": 1.0},
    title="Alignment and uniformity",
    paper="Wang and Isola, Understanding Contrastive Representation Learning through "
    "Alignment and Uniformity on the Hypersphere, ICML 2020 (arXiv 2005.10242)",
    source="SsnL/align_uniform: main.py",
))
