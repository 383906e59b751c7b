"""One dataclass for a run; saved whole in ``summary.json`` and in every checkpoint."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomllib
from glf_train.data import DATASETS, MAX_VAL_FRACTION

BACKENDS = ("torch", "jax", "tensorflow")

# Keys of configurations written before the method registry: the method's hyperparameters
# had flags of their own. Read into ``loss_options`` for the method they belonged to.
_LEGACY_OPTIONS = {
    "lambd": ("barlow_twins", "lambd"),
    "temperature": ("simclr", "temperature"),
    "swav_temperature": ("swav", "temperature"),
    "swav_epsilon": ("swav", "epsilon"),
    "swav_sinkhorn_iters": ("swav", "sinkhorn_iters"),
    "swav_prototypes": ("swav", "n_prototypes"),
}
_ADC_PREFIX = "adc_"


def methods() -> tuple[str, ...]:
    """The methods ``--method`` accepts: every entry of ``glf_losses.registry``."""
    from glf_losses import registry

    return registry.names()


def local_crop_methods() -> tuple[str, ...]:
    """The methods ``--local-crops`` accepts: those whose registry entry takes local crops."""
    from glf_losses import registry

    return registry.local_crop_methods()


def adc_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The fields of ``glf_losses.ADC``: each is a ``--adc-<field>`` flag and config key."""
    from glf_losses import ADC

    return dataclasses.fields(ADC)


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
    """A [`RunConfig`][reference_training.config.RunConfig] field with what ``glf-train --help``
    says about it: a help
    sentence, its choices, and how its default reads where the value itself would not
    explain it (``None`` meaning "the method's")."""
    metadata = {"help": help, "choices": choices, "shown_default": shown_default}
    return field(default=default, metadata=metadata)


@dataclass
class RunConfig:
    """Everything that determines a run. Two runs with equal configs train identically.

    Each field's metadata holds its ``--help`` sentence and choices (see
    `glf_train.cli.config_options`).
    """

    backend: str = _option("torch", "the framework that trains the model", BACKENDS)
    method: str = _option(
        "barlow_twins", "the self-supervised method (any entry of glf_losses.registry)",
        methods(),
    )
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
    weight_decay: float = _option(
        1e-5, "weight decay (decoupled for adamw) of weight matrices and kernels; BatchNorm "
        "parameters and biases are not decayed")
    warmup_epochs: int = _option(1, "epochs of linear learning-rate warm-up")
    # model
    arch: str = _option(
        "auto", "the encoder (auto: small_cnn below 32 px or for one channel, else resnet18)",
        ("auto", "small_cnn", "resnet18"),
    )
    cnn_width: int = _option(32, "channels of the small CNN's first layer")
    proj_hidden: int = _option(512, "hidden width of the projector")
    proj_dim: int = _option(128, "output width of the projector (the embedding)")
    pred_hidden: int = _option(512, "hidden width of the predictor (methods that have one)")
    # methods: hyperparameters of the method's loss (and its front-end's sizes, such as
    # SwAV's n_prototypes), by name; the rest keep the registry's defaults
    loss_options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "the method's loss hyperparameters, by name (--loss-option NAME=VALUE)"
    })
    swav_freeze_prototypes_epochs: int = _option(
        1, "epochs during which SwAV's prototypes do not move"
    )
    swav_queue: int = _option(0, "SwAV's queue of earlier projections per view (0: none)")
    byol_tau_base: float = _option(
        0.99, "initial EMA rate of the momentum target (methods that have one)"
    )
    # ADC
    adc: bool = _option(False, "add ADC (adaptive distribution calibration) to the loss")
    # ADC's settings given for this run (--adc-<field>), by ADC field name; the others are
    # ADC.for_method(method)'s (the method's recommended weights, ADC's defaults)
    adc_settings: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "ADC's settings, by field of glf_losses.ADC (--adc-<field>)"
    })
    adc_prior: str = _option(
        "pixels", "ADC's prior: the raw batch or a frozen copy of the initial encoder",
        ("pixels", "frozen_encoder"),
    )
    # a control arm of the ADC study: this weight times the uniformity term
    # (glf_losses.constrain.uniformity at uniformity_temperature) of the outputs ADC would
    # act on, added to the constraining part
    uniformity_weight: float = _option(
        0.0, "weight of the uniformity term of the outputs ADC would act on, added to the "
        "constraining part (a control of the ADC study)"
    )
    uniformity_temperature: float = _option(0.2, "temperature of that uniformity term")
    # a control of the ADC study: the method's own loss (both parts) scaled by this weight
    # before ADC and the uniformity term are added; 0 with --adc trains ADC alone, a
    # parametric neighbour embedding of the prior
    method_weight: float = _option(
        1.0, "weight of the method's own loss, its aligning and constraining parts, beside "
        "ADC (0 with --adc: ADC alone, a control of the ADC study)"
    )
    # views: the smallest crop area (fraction of the image) instead of the dataset preset's;
    # the aspect ratio then spans [3/4, 4/3], as in the usual random-resized crop
    crop_min_area: float | None = _option(
        None, "smallest crop area (a fraction) of the views", shown_default="the dataset's"
    )
    # multi-crop (methods with a local input: swav, dino): this many small crops of each
    # image beside the two views, seen by the online network only
    local_crops: int = _option(
        0, "local crops per image beside the two global views (multi-crop; "
        f"{', '.join(local_crop_methods())} only; 0: the two views alone)"
    )
    local_crop_size: int | None = _option(
        None, "side of the local crops in pixels", shown_default="96/224 of the views' side, "
        "rounded"
    )
    local_crop_min_area: float = _option(
        0.05, "smallest area (a fraction of the image) of a local crop"
    )
    local_crop_max_area: float = _option(
        0.14, "largest area (a fraction of the image) of a local crop"
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
        1, "record the kNN accuracy on the validation split every N epochs and at the last "
        "(0: never during training)"
    )
    # evaluation only: the fraction of the labelled training images held out (stratified,
    # fixed seed) to choose the probes' settings on; the training itself uses them all
    val_fraction: float = _option(
        0.1, "fraction of the training images held out as the evaluation's validation "
        "split, on which the linear probe's C is chosen (0: none)"
    )
    quiet: bool = _option(False, "print nothing but errors")
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> RunConfig:
        """Raise ``ValueError`` naming the first bad field (its type first, then its value).

        Integers given for float fields become floats; nothing else is converted.
        """
        self._check_types()
        choices = {
            "method": methods(),
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
        for name in ("epochs", "batch_size", "cnn_width", "proj_hidden", "proj_dim", "pred_hidden"):
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
        for name in ("lr", "uniformity_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{_flag(name)} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "warmup_epochs", "uniformity_weight", "method_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.method_weight == 0 and not self.adc and not self.uniformity_weight:
            raise ValueError(
                "--method-weight 0 leaves nothing to train: it removes the method's loss, "
                "so add --adc (ADC alone) or give a positive --method-weight"
            )
        if not 0 <= self.val_fraction <= MAX_VAL_FRACTION:
            raise ValueError(
                f"--val-fraction must be in [0, {MAX_VAL_FRACTION}], got {self.val_fraction} "
                "(0 disables the validation split)"
            )
        if self.crop_min_area is not None and not 0 < self.crop_min_area <= 1:
            raise ValueError(f"--crop-min-area must be in (0, 1], got {self.crop_min_area}")
        entry = self.method_entry()
        self._check_local_crops(entry)
        if self.swav_queue < 0:
            raise ValueError(f"--swav-queue must be >= 0, got {self.swav_queue}")
        if self.swav_queue and "queue_a" not in entry.optional_inputs:
            raise ValueError(f"--swav-queue: {self.method} has no queue (only swav has one)")
        if self.swav_queue and self.devices > 1:
            raise ValueError("--swav-queue is not supported with --devices > 1 yet")
        if not 0 <= self.byol_tau_base < 1:
            raise ValueError(f"--byol-tau-base must be in [0, 1), got {self.byol_tau_base}")
        self.loss_settings()  # refuses options the method does not have, naming them
        adc = self.adc_config(checked=True)
        if adc is not None and adc.perplexity > 2 * self.batch_size - 1:
            raise ValueError(
                f"--adc-perplexity must be <= 2 * batch size - 1 = {2 * self.batch_size - 1}, "
                f"got {adc.perplexity}: lower it or raise --batch-size"
            )
        return self

    def _check_local_crops(self, entry: Any) -> None:
        """The multi-crop settings: counts and sizes in range, and a method that takes
        local crops when there are any."""
        if self.local_crops < 0:
            raise ValueError(
                f"--local-crops must be >= 0, got {self.local_crops} (0: the two views alone)"
            )
        if self.local_crops and entry.local_input is None:
            raise ValueError(
                f"--local-crops {self.local_crops}: {self.method} takes no local crops; "
                f"only {', '.join(local_crop_methods())} do. Drop --local-crops "
                "or choose one of them"
            )
        if self.local_crop_size is not None:
            from glf_train.augment import AugmentConfig

            # Local crops are small crops: larger than the views they would be global ones.
            out_hw = AugmentConfig.for_dataset(self.dataset).out_hw
            side = min(out_hw) if out_hw else None
            if not 1 <= self.local_crop_size <= (side or self.local_crop_size):
                raise ValueError(
                    f"--local-crop-size must be in [1, {side}] pixels (at most the side of "
                    f"the views of {self.dataset}), got {self.local_crop_size}"
                )
        lo, hi = self.local_crop_min_area, self.local_crop_max_area
        if not 0 < lo <= 1:
            raise ValueError(f"--local-crop-min-area must be in (0, 1], got {lo}")
        if not lo <= hi <= 1:
            raise ValueError(
                f"--local-crop-max-area must be in [--local-crop-min-area, 1] = [{lo}, 1], "
                f"got {hi}"
            )

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


    # --- what the run trains, from glf_losses' declarations -------------------------------


    def method_entry(self) -> Any:
        """The method's ``glf_losses.registry.Method``."""
        from glf_losses import registry

        return registry.get(self.method)

    def loss_settings(self) -> tuple[tuple[int, ...], dict[str, Any]]:
        """The front-end's size arguments and the loss's hyperparameters for this run.

        Sizes: ``dim`` is ``--proj-dim``, others come from ``loss_options`` or the
        registry's trainer defaults; hyperparameters from ``loss_options`` over the
        registry's defaults. An option the method does not have is refused.
        """
        entry = self.method_entry()
        options = dict(self.loss_options)
        sizes = []
        for name, default in entry.sizes.items():
            value = self.proj_dim if name == "dim" else options.pop(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--loss-option {name} must be an int >= 1, got {value!r}")
            sizes.append(value)
        known = [*entry.hyperparameters, *(n for n in entry.sizes if n != "dim")]
        for name, value in options.items():
            if name not in entry.hyperparameters:
                raise ValueError(
                    f"--loss-option {name}: {self.method} has no such option; its options "
                    f"are: {', '.join(known) or 'none'}"
                )
            default = entry.hyperparameters[name]
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if isinstance(default, bool) != isinstance(value, bool) or (
                isinstance(default, (int, float)) and not isinstance(default, bool)
                and not (numeric and (isinstance(default, float) or isinstance(value, int)))
            ):
                raise ValueError(
                    f"--loss-option {name} must be a {type(default).__name__} like its "
                    f"default {default!r}, got {value!r}"
                )
        return tuple(sizes), options

    def adc_config(self, checked: bool = False) -> Any:
        """This run's ``glf_losses.ADC`` (``None`` without ``--adc``): the method's
        recommended weights and ADC's defaults, under the ``--adc-*`` settings given."""
        from glf_losses import ADC

        if not self.adc and not checked:
            return None
        try:
            adc = ADC.for_method(self.method, **self.adc_settings)
        except (TypeError, ValueError) as err:
            # "rho must be > 2 ..." -> "--adc-rho must be > 2 ...": the flag, not the field.
            name, _, rest = str(err).partition(" ")
            raise ValueError(f"--adc-{name.replace('_', '-')} {rest}") from None
        return adc if self.adc else None

    def to_dict(self) -> dict[str, Any]:
        """Every setting, ADC's flat as ``adc_<field>`` keys (None: the default), as the
        command line and config files name them;
        [`from_dict`][reference_training.config.RunConfig.from_dict] reads it back."""
        values = dataclasses.asdict(self)
        settings = values.pop("adc_settings")
        for f in adc_fields():
            values[_ADC_PREFIX + f.name] = settings.get(f.name)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """A config from [`to_dict`][reference_training.config.RunConfig.to_dict]'s form, a config
        file or older runs' summaries."""
        values = dict(values)
        adc_names = {f.name for f in adc_fields()}
        settings = dict(values.pop("adc_settings", None) or {})
        for name in adc_names:
            value = values.pop(_ADC_PREFIX + name, None)
            if value is not None:
                settings[name] = value
        values["adc_settings"] = settings
        method = values.get("method", cls.method)
        options = dict(values.get("loss_options") or {})
        for key, (owner, option) in _LEGACY_OPTIONS.items():
            if key not in values:
                continue
            value = values.pop(key)
            if owner == method and option not in options:
                from glf_losses import registry

                entry = registry.get(owner)
                default = {**entry.hyperparameters, **entry.sizes}.get(option)
                if value != default:
                    options[option] = value
        values["loss_options"] = options
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
