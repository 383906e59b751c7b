"""``glf-train``: train a reference SSL model; the only module that reads ``sys.argv``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any

from glf_losses import ADC
from reference_training.config import RunConfig, adc_fields, load_config_file


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glf-train",
        description="Train an encoder with a GLF method (optionally + ADC) and report its "
        "linear-probe and kNN accuracy beside random-encoder and raw-pixel baselines.",
    )
    parser.add_argument("--config", help="a TOML or JSON file of settings (flags override it)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    for field in dataclasses.fields(RunConfig):
        if field.name in ("extra", "loss_options", "adc_settings"):
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
            continue
        kind: Any = {"int": int, "float": float}.get(str(field.type), str)
        if "float | None" in str(field.type):
            kind = float
        parser.add_argument(flag, type=kind, default=None, metavar=field.name.upper())
    parser.add_argument(
        "--loss-option", action="append", default=[], metavar="NAME=VALUE",
        type=_loss_option,
        help="a hyperparameter of the method's loss (e.g. temperature=0.1, lambd=0.005) or "
        "a size of its front-end (n_prototypes=3000); repeat for several",
    )
    # ADC's settings: one flag per field of glf_losses.ADC, with its help sentence.
    hints = typing.get_type_hints(ADC)
    for field in adc_fields():
        flag = "--adc-" + field.name.replace("_", "-")
        kind = hints[field.name]
        if kind is bool:
            parser.add_argument(
                flag, dest="adc_" + field.name, action=argparse.BooleanOptionalAction,
                default=None, help=field.metadata["help"] + f" (default {field.default})",
            )
            continue
        parser.add_argument(
            flag, dest="adc_" + field.name, default=None, metavar=field.name.upper(),
            type=int if kind is int else _number_or_word,
            help=field.metadata["help"] + " (default: "
            + ("the method's recommendation" if field.name in ("nu", "upsilon")
               else repr(field.default)) + ")",
        )
    return parser


def _number_or_word(text: str) -> float | str:
    """A float where the text is one, else the text (bandwidth modes such as 'median')."""
    try:
        return float(text)
    except ValueError:
        return text


def _loss_option(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    parsed: Any = value
    if value.lower() in ("true", "false"):
        parsed = value.lower() == "true"
    else:
        for kind in (int, float):
            try:
                parsed = kind(value)
                break
            except ValueError:
                continue
    return name.strip(), parsed


def parse_config(argv: list[str] | None = None) -> tuple[RunConfig, bool]:
    """Defaults, then the config file, then flags; validated."""
    args = _parser().parse_args(argv)
    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    for field in dataclasses.fields(RunConfig):
        flag_value = getattr(args, field.name, None)
        if flag_value is not None and field.name not in ("loss_options", "adc_settings"):
            values[field.name] = flag_value
    for field in adc_fields():
        flag_value = getattr(args, "adc_" + field.name)
        if flag_value is not None:
            values["adc_" + field.name] = flag_value
    if args.loss_option:
        values["loss_options"] = {**values.get("loss_options", {}), **dict(args.loss_option)}
    return RunConfig.from_dict(values).validate(), bool(args.resume)


def main(argv: list[str] | None = None) -> int:
    try:
        config, resume = parse_config(argv)
        from reference_training.loop import train

        train(config, resume=resume)
    except (ValueError, FileNotFoundError, RuntimeError, NotImplementedError) as err:
        print(f"glf-train: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
