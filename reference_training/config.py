"""One dataclass for a run; saved whole in ``summary.json`` and in every checkpoint."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from reference_training.data import DATASETS

METHODS = ("barlow_twins", "byol", "simclr", "swav")
BACKENDS = ("torch", "jax", "tensorflow")
BANDWIDTHS = ("median", "perplexity")


# A field's annotation -> (the Python types it admits, how an error message names it).
_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "str": (str, "a string"),
    "int": (int, "an integer"),
    "float": (float, "a number"),
    "bool": ((bool, np.bool_), "true or false"),
    "dict[str, Any]": (dict, "a table of settings"),
}


def _is_int(value: Any) -> bool:
    # bool is a subclass of int: "epochs": true must not mean 1 epoch.
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, (float, np.floating))


def _unquote_hint(value: Any, base: str) -> str:
    """Advice for a quoted number or boolean in a config file."""
    if not isinstance(value, str):
        return ""
    if base == "bool" and value.strip().lower() in ("true", "false"):
        return f"; write {value.strip().lower()} without quotes"
    if base in ("int", "float"):
        try:
            (int if base == "int" else float)(value)
        except ValueError:
            return ""
        return f"; write {value.strip()} without quotes"
    return ""


def _flag(name: str) -> str:
    """The command-line flag of a field, as error messages name it."""
    return "--" + name.replace("_", "-")


def _option(default: Any, help: str, choices: tuple[str, ...] | None = None,
            shown_default: str | None = None) -> Any:
    """A :class:`RunConfig` field with what ``glf-train --help`` says about it: a help
    sentence, its choices, and how its default reads where the value itself would not
    explain it (``None`` meaning "the method's")."""
    metadata = {"help": help, "choices": choices, "shown_default": shown_default}
    return field(default=default, metadata=metadata)


@dataclass
class RunConfig:
    """Everything that determines a run. Two runs with equal configs train identically.

    Each field's metadata holds its ``--help`` sentence and choices (see
    :func:`reference_training.cli.config_options`).
    """

    backend: str = _option("torch", "the framework that trains the model", BACKENDS)
    method: str = _option("barlow_twins", "the self-supervised method", METHODS)
    dataset: str = _option("digits", "the training and evaluation data", DATASETS)
    data_root: str | None = _option(
        None, "the directory holding the CIFAR or STL-10 files", shown_default="$GLF_DATA, "
        "else ~/data"
    )
    epochs: int = _option(10, "number of passes over the training images")
    batch_size: int = _option(256, "images per step, over all devices")
    seed: int = _option(0, "seeds the initial weights, the batch order and the views")
    device: str = _option("cpu", "where to train: cpu, cuda or cuda:N")
    # data parallelism: the global batch (``batch_size``) is split over this many devices
    devices: int = _option(1, "data-parallel devices the batch is split over")
    out: str = _option("runs/default", "the run's directory (checkpoint, metrics, summary, "
                       "plots)")
    # optimisation
    optimizer: str = _option("adamw", "the optimiser (sgd: momentum 0.9)", ("adamw", "sgd"))
    lr: float = _option(2e-3, "peak learning rate (cosine schedule after the warm-up)")
    weight_decay: float = _option(1e-5, "weight decay (decoupled for adamw)")
    warmup_epochs: int = _option(1, "epochs of linear learning-rate warm-up")
    # model
    arch: str = _option(
        "auto", "the encoder (auto: small_cnn below 32 px or for one channel, else resnet18)",
        ("auto", "small_cnn", "resnet18"),
    )
    cnn_width: int = _option(32, "channels of the small CNN's first layer")
    proj_hidden: int = _option(512, "hidden width of the projector")
    proj_dim: int = _option(128, "output width of the projector (the embedding)")
    pred_hidden: int = _option(512, "hidden width of BYOL's predictor")
    # methods
    lambd: float = _option(0.0051, "Barlow Twins' off-diagonal weight")
    temperature: float = _option(0.2, "SimCLR's temperature (and the uniformity term's)")
    swav_temperature: float = _option(0.1, "SwAV's softmax temperature")
    swav_prototypes: int = _option(64, "number of SwAV prototypes")
    swav_epsilon: float = _option(0.05, "SwAV's Sinkhorn entropy weight")
    swav_sinkhorn_iters: int = _option(3, "SwAV's Sinkhorn iterations")
    swav_freeze_prototypes_epochs: int = _option(
        1, "epochs during which SwAV's prototypes do not move"
    )
    swav_queue: int = _option(0, "SwAV's queue of earlier projections per view (0: none)")
    byol_tau_base: float = _option(0.99, "BYOL's initial EMA rate of the target network")
    # ADC
    adc: bool = _option(False, "add ADC (adaptive distribution calibration) to the loss")
    # None: the weights glf_losses.adc.method_weights recommends for the method
    adc_nu: float | None = _option(
        None, "ADC's weight nu", shown_default="the method's (100 for barlow_twins, else 1)"
    )
    adc_upsilon: float | None = _option(
        None, "ADC's weight upsilon",
        shown_default="the method's (1000 for barlow_twins, else 10)",
    )
    adc_rho: float = _option(3.0, "ADC's Student-t degrees of freedom (> 2)")
    adc_bandwidth: str = _option(
        "perplexity", "the embeddings' kernel bandwidth: median, perplexity or a number"
    )
    adc_prior_bandwidth: str = _option(
        "perplexity", "the prior's kernel bandwidth: median, perplexity or a number"
    )
    adc_perplexity: float = _option(30.0, "the embeddings' perplexity (<= 2 x batch - 1)")
    adc_prior_perplexity: float | None = _option(
        None, "the prior's perplexity", shown_default="--adc-perplexity"
    )
    adc_prior: str = _option(
        "pixels", "ADC's prior: the raw batch or a frozen copy of the initial encoder",
        ("pixels", "frozen_encoder"),
    )
    adc_prior_other_view: bool = _option(
        False, "count each anchor's other view in ADC's prior"
    )
    # a control arm of the ADC study: this weight times the uniformity term
    # (glf_losses.constrain.uniformity at --temperature) added to the constraining part
    uniformity_weight: float = _option(
        0.0, "weight of the uniformity term added to the constraining part (torch only)"
    )
    # views: the smallest crop area (fraction of the image) instead of the dataset preset's;
    # the aspect ratio then spans [3/4, 4/3], as in the usual random-resized crop
    crop_min_area: float | None = _option(
        None, "smallest crop area (a fraction) of the views", shown_default="the dataset's"
    )
    # running
    compile: str = _option(
        "auto", "compile the step (auto: on CUDA for torch, always for jax and tensorflow)",
        ("auto", "on", "off"),
    )
    precision: str = _option(
        "auto", "compute precision (auto: bfloat16 autocast on CUDA)",
        ("auto", "float32", "bfloat16"),
    )
    eval_every: int = _option(
        1, "record the kNN accuracy every N epochs and at the last (0: never during training)"
    )
    quiet: bool = _option(False, "print nothing but errors")
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> RunConfig:
        """Raise ``ValueError`` naming the first bad field (its type first, then its value).

        Integers given for float fields become floats; nothing else is converted.
        """
        self._check_types()
        choices = {
            "method": METHODS,
            "backend": BACKENDS,
            "dataset": DATASETS,
            "optimizer": ("adamw", "sgd"),
            "arch": ("auto", "small_cnn", "resnet18"),
            "compile": ("auto", "on", "off"),
            "precision": ("auto", "float32", "bfloat16"),
            "adc_prior": ("pixels", "frozen_encoder"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{_flag(name)} must be one of {allowed}, got {value!r}")
        for name in ("epochs", "batch_size", "cnn_width", "proj_hidden", "proj_dim", "pred_hidden",
                     "swav_prototypes", "swav_sinkhorn_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_flag(name)} must be >= 1, got {getattr(self, name)}")
        if self.devices < 1:
            raise ValueError(f"--devices must be >= 1, got {self.devices}")
        if self.batch_size % self.devices:
            raise ValueError(
                f"--batch-size {self.batch_size} must be divisible by --devices {self.devices} "
                "(every device holds an equal shard of the global batch)"
            )
        if self.batch_size < 2:
            raise ValueError(f"--batch-size must be >= 2 (batch statistics), got {self.batch_size}")
        for name in ("lr", "temperature", "swav_temperature", "swav_epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{_flag(name)} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "adc_nu", "adc_upsilon", "warmup_epochs",
                     "uniformity_weight"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.crop_min_area is not None and not 0 < self.crop_min_area <= 1:
            raise ValueError(f"--crop-min-area must be in (0, 1], got {self.crop_min_area}")
        if self.swav_queue < 0:
            raise ValueError(f"--swav-queue must be >= 0, got {self.swav_queue}")
        if self.uniformity_weight and self.backend != "torch":
            raise ValueError(
                f"--uniformity-weight (a study control) is implemented by the torch trainer "
                f"only, not by --backend {self.backend}"
            )
        if self.swav_queue and self.devices > 1:
            raise ValueError("--swav-queue is not supported with --devices > 1 yet")
        if not 0 <= self.byol_tau_base < 1:
            raise ValueError(f"--byol-tau-base must be in [0, 1), got {self.byol_tau_base}")
        if self.adc_rho <= 2:
            raise ValueError(f"--adc-rho must be > 2, got {self.adc_rho}")
        for name in ("adc_bandwidth", "adc_prior_bandwidth"):
            value = getattr(self, name)
            if value not in BANDWIDTHS:
                try:
                    if float(value) <= 0:
                        raise ValueError
                except ValueError:
                    raise ValueError(
                        f"{_flag(name)} must be 'median', 'perplexity' or a "
                        f"positive number, got {value!r}"
                    ) from None
        if self.adc and self.adc_perplexity > 2 * self.batch_size - 1:
            raise ValueError(
                f"--adc-perplexity must be <= 2 * batch size - 1 = {2 * self.batch_size - 1}, "
                f"got {self.adc_perplexity}"
            )
        return self

    def _check_types(self) -> None:
        # A config file's values arrive untyped: "ten", "0.1", true or "false" must be
        # refused here, not compared, truth-tested or counted further on.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = str(f.type)
            optional = kind.endswith(" | None")
            base = kind.removesuffix(" | None")
            if value is None and optional:
                continue
            if base == "float" and _is_number(value):
                setattr(self, f.name, float(value))
                continue
            wanted = _TYPES.get(base)
            if wanted is None or (base == "int" and _is_int(value)) or (
                base not in ("int", "float") and isinstance(value, wanted[0])
            ):
                continue
            expected = wanted[1] + (" or null" if optional else "")
            name = f"{_flag(f.name)} (config key {f.name!r})" if f.name != "extra" else \
                "config key 'extra'"
            article = "an" if type(value).__name__[0] in "aeiou" else "a"
            raise ValueError(
                f"{name} must be {expected}, got {value!r} ({article} "
                f"{type(value).__name__}){_unquote_hint(value, base)}"
            )

    def adc_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`glf_losses.adc_loss` for this run."""

        def bw(value: str) -> str | float:
            return value if value in BANDWIDTHS else float(value)

        from glf_losses.adc import method_weights

        nu, upsilon = method_weights(self.method)
        return {
            "nu": nu if self.adc_nu is None else self.adc_nu,
            "upsilon": upsilon if self.adc_upsilon is None else self.adc_upsilon,
            "rho": self.adc_rho,
            "bandwidth": bw(self.adc_bandwidth),
            "prior_bandwidth": bw(self.adc_prior_bandwidth),
            "perplexity": self.adc_perplexity,
            "prior_perplexity": self.adc_prior_perplexity,
            "prior_other_view": self.adc_prior_other_view,
        }

    def loss_front_end(self, backend: Any) -> Any:
        """This run's loss (ADC included) from a backend module's front-ends.

        ``backend`` is ``glf_losses.backends.torch`` (``nn.Module``s) or
        ``glf_losses.backends.tensorflow`` (Keras layers): the same class names in each.
        """
        import glf_losses

        adc = glf_losses.ADC(**self.adc_kwargs()) if self.adc else None
        if self.method == "byol":
            return backend.BYOLLoss(adc=adc)
        if self.method == "barlow_twins":
            return backend.BarlowTwinsLoss(lambd=self.lambd, adc=adc)
        if self.method == "simclr":
            return backend.SimCLRLoss(temperature=self.temperature, adc=adc)
        return backend.SwAVLoss(
            self.proj_dim, self.swav_prototypes, temperature=self.swav_temperature,
            epsilon=self.swav_epsilon, sinkhorn_iters=self.swav_sinkhorn_iters, adc=adc,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**values)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON configuration file into a dict of RunConfig fields."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config: no such file: {path}")
    text = path.read_text()
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--config: cannot parse {path}: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"--config: {path} must hold a table/object of settings")
    return {k.replace("-", "_"): v for k, v in values.items()}
