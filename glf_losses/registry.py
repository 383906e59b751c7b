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
    "SOURCES",
    "Method",
    "Parameter",
    "State",
    "get",
    "local_crop_methods",
    "method_parts",
    "method_state",
    "names",
    "register",
    "unregister",
]

# The per-step host inputs a method may ask the training loop for.
EMA_RATE = "ema_rate"  # the momentum target's EMA rate this step (BYOL's tau)
PARAMETERS_ACTIVE = "parameters_active"  # 0 or 1: whether owned arrays may move this step

# What a trainer feeds each of a method's inputs: the online network's projection of a
# view, the predictor's output on it, or the target's projection of it (the momentum
# target's when the method has one, else the online projection, which the loss takes
# under stop-gradient).
SOURCES = frozenset(
    f"{branch}_{view}" for branch in ("online", "predicted", "target") for view in "ab"
)


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


@dataclass(frozen=True)
class State:
    """An array a method carries from one step to the next, outside the gradient.

    MoCo's queue of keys, NNCLR's support set, TiCo's running covariance: the spec stays
    functional (the state goes into the loss as an argument, and ``update`` returns the
    next one); the framework front-ends hold it (torch buffers, Keras non-trainable
    weights, a JAX pytree the caller threads through its step).

    Attributes:
      name: the keyword of the method's parts function that receives it.
      shape: the names of the front-end's size arguments giving its shape, e.g.
        ``("queue_size", "dim")``.
      init: ``"zeros"``, or ``"unit_rows"`` (rows drawn from a standard normal and
        L2-normalised, as MoCo's official queue starts).
      update: ``update(state, **inputs, **parameters, **hyperparameters) -> new state``:
        the method's inputs, parameters and hyperparameters by name (it takes the ones it
        needs and ignores the rest); global under ``glf_losses.data_parallel()``.
    """

    name: str
    shape: tuple[str, ...]
    update: Callable[..., Array]
    init: str = "zeros"

    def __post_init__(self) -> None:
        if self.init not in ("zeros", "unit_rows"):
            raise ValueError(f"State {self.name}: init must be 'zeros' or 'unit_rows', got "
                             f"{self.init!r}")


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
      states: arrays the front-end carries between steps without gradient (MoCo's
        queue), each with its update.
      sources: what a trainer feeds each input (one of `SOURCES` per input):
        ``"online_a"``, ``"predicted_b"``, ``"target_b"``, ... By default the predictions
        then the targets of both views with a predictor, else the online projections.
      sizes: the front-end's size arguments (positional, in this order) with trainer
        defaults for those that are not the projection width ``dim``.
      predictor: a trainer puts a predictor head on the online branch; the first two
        inputs are then its outputs and the next two the target's projections.
      momentum_target: a trainer keeps an EMA copy of the online network as the target.
      projector_layers: depth of the projection head the method's authors use.
      projector_last_bn: the head ends in a BatchNorm without affine parameters, as
        SimSiam's and MoCo v3's authors' heads do.
      host_inputs: per-step values the loop computes ([`EMA_RATE`][glf_losses.registry.EMA_RATE],
        [`PARAMETERS_ACTIVE`][glf_losses.registry.PARAMETERS_ACTIVE]).
      adc_weights: ``(nu, upsilon)`` that give ADC a comparable share of the gradient
        beside this method's loss (``docs/adc.md``).
      title: the method's name as papers write it.
      paper: the paper that introduced it.
      source: the official code the spec follows (repository and file).
      local_input: the keyword of ``parts`` that takes the (L, N, D) online projections
        of L local crops (multi-crop: SwAV's and DINO's ``local_z``), or ``None`` for a
        method trained on the two views only. A trainer's ``--local-crops`` needs it.
    """

    name: str
    parts: Callable[..., GLFParts]
    inputs: tuple[str, ...]
    adc_inputs: tuple[str, str]
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    optional_inputs: tuple[str, ...] = ()
    parameters: tuple[Parameter, ...] = ()
    states: tuple[State, ...] = ()
    sources: tuple[str, ...] = ()
    sizes: Mapping[str, int | None] = field(default_factory=dict)
    predictor: bool = False
    momentum_target: bool = False
    projector_layers: int = 2
    projector_last_bn: bool = False
    host_inputs: frozenset[str] = frozenset()
    adc_weights: tuple[float, float] = (1.0, 10.0)
    title: str = ""
    paper: str = ""
    source: str = ""
    local_input: str | None = None

    def __post_init__(self) -> None:
        # Read-only views: a declaration is shared by every front-end built from it.
        object.__setattr__(self, "hyperparameters", MappingProxyType(dict(self.hyperparameters)))
        object.__setattr__(self, "sizes", MappingProxyType(dict(self.sizes)))
        missing = set(self.adc_inputs) - set(self.inputs)
        if missing:
            raise ValueError(f"{self.name}: adc_inputs {sorted(missing)} are not among inputs")
        if not self.sources:
            default = ("predicted_a", "predicted_b", "target_a", "target_b") if self.predictor \
                else ("online_a", "online_b")
            object.__setattr__(self, "sources", default[: len(self.inputs)])
        if len(self.sources) != len(self.inputs) or not set(self.sources) <= SOURCES:
            raise ValueError(
                f"{self.name}: sources must name one of {sorted(SOURCES)} per input "
                f"({len(self.inputs)}), got {self.sources}"
            )
        if self.predictor != any(s.startswith("predicted") for s in self.sources):
            raise ValueError(f"{self.name}: predictor=True if and only if a source is predicted_*")
        held = [*self.inputs, *self.optional_inputs, *(p.name for p in self.parameters),
                *(s.name for s in self.states), *([self.local_input] if self.local_input else [])]
        if len(set(held)) != len(held):
            raise ValueError(f"{self.name}: inputs, parameters, states and the local input "
                             f"must have distinct names, got {held}")

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
            "moco": "MoCo",
            "mocov3": "MoCoV3",
            "nnclr": "NNCLR",
            "tico": "TiCo",
            "wmse": "WMSE",
            "mmcr": "MMCR",
            "dino": "DINO",
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

    @property
    def held(self) -> tuple[str, ...]:
        """The names of the arrays a front-end holds: its parameters, then its states."""
        return (*(p.name for p in self.parameters), *(s.name for s in self.states))

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


def local_crop_methods() -> tuple[str, ...]:
    """The registered methods that take local crops (a
    [`Method.local_input`][glf_losses.registry.Method.local_input]), sorted."""
    return tuple(n for n in names() if _REGISTRY[n].local_input is not None)


def _local_crops(entry: Method, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the local crops' projections from ``kwargs``: ``{entry.local_input: array}``, or
    ``{}``; a local-crop keyword given to a method without local crops is refused."""
    keywords = {get(n).local_input for n in local_crop_methods()} | {entry.local_input}
    given = {k: kwargs.pop(k) for k in sorted(k for k in keywords if k and k in kwargs)}
    if entry.local_input is None and any(v is not None for v in given.values()):
        raise TypeError(
            f"{entry.name} takes no local crops ({', '.join(given)}=): only "
            f"{', '.join(local_crop_methods()) or 'no registered method'} do; train "
            f"{entry.name} on the two views alone"
        )
    return {k: v for k, v in given.items() if v is not None}


def method_parts(
    method: str | Method,
    *inputs: Array,
    prior: Array = None,
    adc: Any = None,
    **kwargs: Any,
) -> GLFParts:
    """A method's ``GLFParts`` from its inputs, with ADC in the constraining part if set.

    The one composition every front-end calls: ``inputs`` are the method's
    [`Method.inputs`][glf_losses.registry.Method.inputs] (then optional inputs, ``None``
    for absent ones); ``kwargs`` hold the arrays its front-end holds (``prototypes=``,
    ``queue=``), hyperparameters and, for a method with a
    [`Method.local_input`][glf_losses.registry.Method.local_input], the local crops'
    projections under that keyword (``local_z=``). With ``adc`` (an
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
    local = _local_crops(entry, kwargs)
    n_required, n_all = len(entry.inputs), len(entry.inputs) + len(entry.optional_inputs)
    if not n_required <= len(inputs) <= n_all:
        raise TypeError(
            f"{entry.name} takes the inputs ({', '.join(entry.inputs + entry.optional_inputs)})"
            f"{' (the last optional)' if entry.optional_inputs else ''}, got {len(inputs)} arrays"
        )
    owned = set(entry.held)
    missing = sorted(owned - set(kwargs))
    if missing:
        raise TypeError(f"{entry.name} needs {', '.join(missing)}= (arrays the front-end holds)")
    settings = entry.hyperparameter_values({k: v for k, v in kwargs.items() if k not in owned})
    arrays = {k: v for k, v in kwargs.items() if k in owned}
    # Optional inputs by name: the parts function takes owned arrays before them.
    optional = dict(zip(entry.optional_inputs, inputs[n_required:], strict=False))
    # ADC acts on the two views' outputs only, never on the local crops.
    parts = entry.parts(*inputs[:n_required], **optional, **arrays, **settings, **local)
    return methods.with_adc(parts, adc, *entry.adc_pair(inputs[:n_required]), prior)


def method_state(
    method: str | Method, states: Mapping[str, Array], *inputs: Array, **kwargs: Any
) -> dict[str, Array]:
    """A method's states after a step: ``{name: update(states[name], inputs, settings)}``.

    ``inputs`` are the method's [`Method.inputs`][glf_losses.registry.Method.inputs] of the
    step (the same arrays its loss saw); ``kwargs`` hold the method's parameters by name
    (DINO's prototypes, which its centre update reads) and hyperparameters that override
    the declared defaults. The new states carry no gradient.

    Examples:
      >>> import numpy as np
      >>> from glf_losses import registry
      >>> q, k = np.eye(2), np.eye(2)[::-1]
      >>> new = registry.method_state("moco", {"queue": np.zeros((3, 2))}, q, k)
      >>> new["queue"].tolist()
      [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    """
    entry = get(method)
    if len(inputs) != len(entry.inputs):
        raise TypeError(
            f"{entry.name} states update from its inputs ({', '.join(entry.inputs)}), got "
            f"{len(inputs)} arrays"
        )
    missing = sorted({s.name for s in entry.states} - set(states))
    if missing:
        raise TypeError(f"{entry.name} needs its states {', '.join(missing)}")
    owned = {p.name for p in entry.parameters}
    missing = sorted(owned - set(kwargs))
    if missing:
        raise TypeError(f"{entry.name} states update with its parameters {', '.join(missing)}=")
    settings = entry.hyperparameter_values({k: v for k, v in kwargs.items() if k not in owned})
    named = {**dict(zip(entry.inputs, inputs, strict=True)),
             **{k: v for k, v in kwargs.items() if k in owned}}
    return {s.name: s.update(states[s.name], **named, **settings) for s in entry.states}


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
    # Measured in training (94% of the gradient at initialisation, docs/adc.md).
    adc_weights=(1.0, 10.0),
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
    # The reference: ADC's share 76% in training (docs/adc.md), 61% in the benchmark.
    adc_weights=(1.0, 10.0),
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
    # Measured in training (95% of the gradient at initialisation, docs/adc.md).
    adc_weights=(1.0, 10.0),
    title="SwAV",
    paper="Caron et al., Unsupervised Learning of Visual Features by Contrasting Cluster "
    "Assignments, NeurIPS 2020 (arXiv 2006.09882)",
    source="facebookresearch/swav: main_swav.py",
    # Codes from the two global crops only; every crop predicts them (main_swav.py).
    local_input="local_z",
))

register(Method(
    name="simsiam",
    parts=methods.simsiam_parts,
    inputs=("p_a", "p_b", "z_a", "z_b"),
    # The predictions: the outputs that carry gradient (the targets are stop-gradient).
    adc_inputs=("p_a", "p_b"),
    predictor=True,
    projector_layers=3,
    projector_last_bn=True,
    # ADC's share 55% (SimCLR's: 61%) in benchmarks/adc_gradient_share.py.
    adc_weights=(0.1, 1.0),
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
    # (10, 100) gave ADC a 51% share (SimCLR's: 61%) in benchmarks/adc_gradient_share.py,
    # but 99% of the gradient in training; the ADC study's validation split chose 3x less
    # (docs/study.md, "Defaults").
    adc_weights=(3.0, 30.0),
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
    # ADC's share 51% (SimCLR's: 61%) in benchmarks/adc_gradient_share.py.
    adc_weights=(3.0, 30.0),
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
    # ADC's share 51% (SimCLR's: 61%) in benchmarks/adc_gradient_share.py.
    adc_weights=(3.0, 30.0),
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
    # ADC's share 51% (SimCLR's: 61%) in benchmarks/adc_gradient_share.py.
    adc_weights=(0.3, 3.0),
    title="Alignment and uniformity",
    paper="Wang and Isola, Understanding Contrastive Representation Learning through "
    "Alignment and Uniformity on the Hypersphere, ICML 2020 (arXiv 2005.10242)",
    source="SsnL/align_uniform: main.py",
))

register(Method(
    name="wmse",
    parts=methods.wmse_parts,
    inputs=("z_a", "z_b"),
    # The trainer's batches are already shuffled, so contiguous sub-batches are a random
    # partition, as the official torch.randperm gives (one whitening iteration).
    optional_inputs=("permutations",),
    adc_inputs=("z_a", "z_b"),
    hyperparameters={"w_size": 128, "eps": 0.0},
    # ADC's share 64% (SimCLR's: 61%) in benchmarks/adc_gradient_share.py.
    adc_weights=(1.0, 10.0),
    title="W-MSE",
    paper="Ermolov et al., Whitening for Self-Supervised Representation Learning, ICML 2021 "
    "(arXiv 2007.06346)",
    source="htdt/self-supervised: methods/w_mse.py, methods/whitening.py",
))

register(Method(
    name="moco",
    parts=methods.moco_parts,
    inputs=("q", "k"),
    # The query from the online network on one view, the key from the momentum target on
    # the other, as the official (asymmetric) loss.
    sources=("online_a", "target_b"),
    adc_inputs=("q", "k"),
    hyperparameters={"temperature": 0.2},
    states=(State("queue", ("queue_size", "dim"),
                  update=lambda queue, k, **_: methods.moco_enqueue(queue, k),
                  init="unit_rows"),),
    # 65536 keys officially (ImageNet); the trainer's default fits small datasets.
    sizes={"dim": None, "queue_size": 4096},
    momentum_target=True,
    host_inputs=frozenset({EMA_RATE}),
    # ADC's share 59% (SimCLR's: 61%) in benchmarks/adc_gradient_share.py.
    adc_weights=(1.0, 10.0),
    title="MoCo v2",
    paper="Chen, Fan, Girshick and He, Improved Baselines with Momentum Contrastive Learning, "
    "arXiv 2003.04297",
    source="facebookresearch/moco: moco/builder.py",
))

register(Method(
    name="mocov3",
    parts=methods.mocov3_parts,
    inputs=("q_a", "q_b", "k_a", "k_b"),
    adc_inputs=("q_a", "q_b"),
    hyperparameters={"temperature": 1.0},
    predictor=True,
    momentum_target=True,
    projector_layers=3,
    projector_last_bn=True,
    host_inputs=frozenset({EMA_RATE}),
    # ADC's share 48% (SimCLR's: 61%) in benchmarks/adc_gradient_share.py.
    adc_weights=(0.3, 3.0),
    title="MoCo v3",
    paper="Chen, Xie and He, An Empirical Study of Training Self-Supervised Vision "
    "Transformers, ICCV 2021 (arXiv 2104.02057)",
    source="facebookresearch/moco-v3: moco/builder.py",
))

register(Method(
    name="nnclr",
    parts=methods.nnclr_parts,
    inputs=("p_a", "p_b", "z_a", "z_b"),
    adc_inputs=("p_a", "p_b"),
    hyperparameters={"temperature": 0.1},
    states=(State("support", ("support_size", "dim"),
                  update=lambda support, z_a, **_: methods.nnclr_enqueue(support, z_a),
                  init="unit_rows"),),
    # 98304 in the paper (ImageNet); the trainer's default fits small datasets.
    sizes={"dim": None, "support_size": 4096},
    predictor=True,
    projector_layers=3,
    # ADC's share 48% (SimCLR's: 61%) in benchmarks/adc_gradient_share.py.
    adc_weights=(1.0, 10.0),
    title="NNCLR",
    paper="Dwibedi et al., With a Little Help from My Friends: Nearest-Neighbor Contrastive "
    "Learning of Visual Representations, ICCV 2021 (arXiv 2104.14548)",
    source="no authors' code: the paper's eq. 3 (as solo-learn's nnclr_loss_func)",
))

register(Method(
    name="tico",
    parts=methods.tico_parts,
    inputs=("z_a", "z_b"),
    adc_inputs=("z_a", "z_b"),
    hyperparameters={"beta": 0.9, "rho": 20.0},
    states=(State("covariance", ("dim", "dim"),
                  update=lambda covariance, z_a, beta, **_: methods.tico_covariance(
                      z_a, covariance, beta)),),
    sizes={"dim": None},
    projector_layers=3,
    # ADC's share 68% (SimCLR's: 61%) in benchmarks/adc_gradient_share.py.
    adc_weights=(0.3, 3.0),
    title="TiCo",
    paper="Zhu et al., TiCo: Transformation Invariance and Covariance Contrast for "
    "Self-Supervised Visual Representation Learning, arXiv 2206.10698",
    source="no authors' code: the paper's Algorithm 1",
))

register(Method(
    name="mmcr",
    parts=methods.mmcr_pair_parts,
    inputs=("z_a", "z_b"),
    adc_inputs=("z_a", "z_b"),
    hyperparameters={"lmbda": 0.0},
    # ADC's share 50% (SimCLR's: 61%) in benchmarks/adc_gradient_share.py.
    adc_weights=(10.0, 100.0),
    title="MMCR",
    paper="Yerxa et al., Learning Efficient Coding of Natural Images with Maximum Manifold "
    "Capacity Representations, NeurIPS 2023 (arXiv 2303.03307)",
    source="ThomasYerxa/mmcr: mmcr/cifar_stl/loss_mmcr.py",
))

register(Method(
    name="dino",
    parts=methods.dino_prototype_parts,
    inputs=("z_a", "z_b", "t_a", "t_b"),
    # The student's projections of both global crops, the momentum teacher's of both.
    sources=("online_a", "online_b", "target_a", "target_b"),
    adc_inputs=("z_a", "z_b"),
    hyperparameters={"student_temperature": 0.1, "teacher_temperature": 0.04,
                     "center_momentum": 0.9},
    parameters=(Parameter("prototypes", ("n_prototypes", "dim"), unit_rows=True, min_rows=2),),
    states=(State("center", ("n_prototypes",),
                  update=lambda center, t_a, t_b, prototypes, center_momentum, **_:
                  methods.dino_prototype_center(center, t_a, t_b, prototypes,
                                                center_momentum)),),
    # 65536 outputs officially (ImageNet); the trainer's default fits small datasets.
    sizes={"dim": None, "n_prototypes": 1024},
    momentum_target=True,
    projector_layers=3,
    host_inputs=frozenset({EMA_RATE}),
    # ADC's share 56% (SimCLR's: 61%) in benchmarks/adc_gradient_share.py.
    adc_weights=(0.3, 3.0),
    title="DINO",
    paper="Caron et al., Emerging Properties in Self-Supervised Vision Transformers, "
    "ICCV 2021 (arXiv 2104.14294)",
    source="facebookresearch/dino: main_dino.py (DINOLoss, DINOHead)",
    # The student sees every crop, the teacher the two global ones (main_dino.py).
    local_input="local_z",
))
