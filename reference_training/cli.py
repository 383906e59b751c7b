"""``glf-train``: train a reference SSL model; the only module that reads ``sys.argv``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from reference_training.config import RunConfig, load_config_file


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glf-train",
        description="Train an encoder with a GLF method (optionally + ADC) and report its "
        "linear-probe and kNN accuracy beside random-encoder and raw-pixel baselines.",
    )
    parser.add_argument("--config", help="a TOML or JSON file of settings (flags override it)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    for field in dataclasses.fields(RunConfig):
        if field.name == "extra":
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
            continue
        kind: Any = {"int": int, "float": float}.get(str(field.type), str)
        if "float | None" in str(field.type):
            kind = float
        parser.add_argument(flag, type=kind, default=None, metavar=field.name.upper())
    return parser


def parse_config(argv: list[str] | None = None) -> tuple[RunConfig, bool]:
    """Defaults, then the config file, then flags; validated."""
    args = _parser().parse_args(argv)
    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    for field in dataclasses.fields(RunConfig):
        flag_value = getattr(args, field.name, None)
        if flag_value is not None:
            values[field.name] = flag_value
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
