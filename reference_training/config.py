"""One dataclass for a run; saved whole in ``summary.json`` and in every checkpoint."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from reference_training.data import DATASETS

METHODS = ("barlow_twins", "byol", "simclr", "swav")
BACKENDS = ("torch", "jax", "tensorflow")
BANDWIDTHS = ("median", "perplexity")


def _flag(name: str) -> str:
    """The command-line flag of a field, as error messages name it."""
    return "--" + name.replace("_", "-")


@dataclass
class RunConfig:
    """Everything that determines a run. Two runs with equal configs train identically."""

    backend: str = "torch"
    method: str = "barlow_twins"
    dataset: str = "digits"
    data_root: str | None = None
    epochs: int = 10
    batch_size: int = 256
    seed: int = 0
    device: str = "cpu"
    # data parallelism: the global batch (``batch_size``) is split over this many devices
    devices: int = 1
    out: str = "runs/default"
    # optimisation
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-5
    warmup_epochs: int = 1
    # model
    arch: str = "auto"
    cnn_width: int = 32
    proj_hidden: int = 512
    proj_dim: int = 128
    pred_hidden: int = 512
    # methods
    lambd: float = 0.0051
    temperature: float = 0.2
    swav_temperature: float = 0.1
    swav_prototypes: int = 64
    swav_epsilon: float = 0.05
    swav_sinkhorn_iters: int = 3
    swav_freeze_prototypes_epochs: int = 1
    swav_queue: int = 0
    byol_tau_base: float = 0.99
    # ADC
    adc: bool = False
    # None: the weights glf_losses.adc.method_weights recommends for the method
    adc_nu: float | None = None
    adc_upsilon: float | None = None
    adc_rho: float = 3.0
    adc_bandwidth: str = "perplexity"
    adc_prior_bandwidth: str = "perplexity"
    adc_perplexity: float = 30.0
    adc_prior_perplexity: float | None = None
    adc_prior: str = "pixels"
    adc_prior_other_view: bool = False
    # a control arm of the ADC study: this weight times the uniformity term
    # (glf_losses.constrain.uniformity at --temperature) added to the constraining part
    uniformity_weight: float = 0.0
    # views: the smallest crop area (fraction of the image) instead of the dataset preset's;
    # the aspect ratio then spans [3/4, 4/3], as in the usual random-resized crop
    crop_min_area: float | None = None
    # running
    compile: str = "auto"
    precision: str = "auto"
    eval_every: int = 1
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> RunConfig:
        """Raise ``ValueError`` naming the first bad field."""
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
