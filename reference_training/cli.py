"""``glf-train``: train a reference SSL model; the only module that reads ``sys.argv``."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import sys
import typing
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from glf_train import recipes
from glf_train.config import RunConfig, adc_fields, load_config_file

from glf_losses import ADC


class Option(NamedTuple):
    """One ``--flag`` of ``glf-train``: what the argparse builder needs to know of it.

    ``default`` is what ``--help`` shows (the value, or a phrase such as "the method's");
    ``choices`` are listed in ``--help`` and enforced by :meth:`RunConfig.validate`, so a
    bad value gets the same message from a flag as from a config file.
    """

    name: str
    type: type | Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[str, ...] | None = None


# A field's annotation -> the type argparse converts the flag's text to.
_FLAG_TYPES: dict[str, type] = {
    "int": int, "float": float, "bool": bool, "str": str, "float | None": float,
    "str | None": str, "int | None": int,
}


def config_options() -> list[Option]:
    """The options of every :class:`RunConfig` field, from the fields' metadata."""
    options = []
    for field in dataclasses.fields(RunConfig):
        if field.name in ("extra", "loss_options", "adc_settings"):
            # extra: free-form, config files only; the others have flags of their own
            # (--loss-option, --adc-<field>)
            continue
        meta = field.metadata
        if "help" not in meta:
            raise TypeError(
                f"RunConfig.{field.name} has no help text: declare it with "
                "_option(default, help, choices)"
            )
        shown = meta.get("shown_default")
        options.append(Option(
            field.name, _FLAG_TYPES[str(field.type)],
            field.default if shown is None else shown, meta["help"], meta.get("choices"),
        ))
    return options


def _help_text(option: Option) -> str:
    # The choices are the flag's metavar, "{a,b,c}", shown beside it.
    text = option.help
    default = option.default
    if option.type is bool and isinstance(default, bool):
        default = "on" if default else "off"
    return f"{text} (default: {default})"


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """One flag per option, named ``--field-name``; the parsed default is ``None`` so
    that a flag left out does not override the config file."""
    for option in options:
        flag = "--" + option.name.replace("_", "-")
        if option.type is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None,
                help=_help_text(option),
            )
            continue
        metavar = "{" + ",".join(option.choices) + "}" if option.choices else \
            option.name.upper()
        parser.add_argument(
            flag, type=option.type, default=None, metavar=metavar, help=_help_text(option)
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glf-train",
        description="Train an encoder with a GLF method (optionally + ADC) and report its "
        "linear-probe and kNN accuracy beside random-encoder and raw-pixel baselines.",
    )
    parser.add_argument(
        "--config", metavar="FILE",
        help="a TOML or JSON file of settings; flags override it (default: none)",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the run in --out from its last checkpoint (default: off)",
    )
    parser.add_argument(
        "--allow-changes", action="store_true",
        help="with --resume, continue even though settings that change the training "
        "differ from the run's; summary.json records the old and new values (default: off)",
    )
    parser.add_argument(
        "--no-recipe", dest="recipe", action="store_false",
        help="use the plain defaults instead of the method's recipe for the dataset, "
        "see docs/training.md, Recipes (default: the recipe)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start a new run in an --out that holds another run, deleting that run's "
        "checkpoints, metrics, summary and plots (default: off)",
    )
    add_options(parser, config_options())
    add_options(parser, adc_options())
    parser.add_argument(
        "--loss-option", action="append", default=[], metavar="NAME=VALUE",
        type=_loss_option,
        help="a hyperparameter of the method's loss (e.g. temperature=0.1, lambd=0.005) or a "
        "size of its front-end (n_prototypes=3000), repeatable; the method's options are "
        "listed in docs/methods.md (default: the registry's)",
    )
    return parser


def adc_options() -> list[Option]:
    """``--adc-<field>`` for every field of ``glf_losses.ADC``, with its help sentence."""
    hints = typing.get_type_hints(ADC)
    options = []
    for field in adc_fields():
        kind = hints[field.name]
        default: Any = field.default
        if field.name in ("nu", "upsilon"):
            default = "the method's recommendation"
        elif field.name == "prior_perplexity":
            default = "--adc-perplexity"
        options.append(Option(
            "adc_" + field.name, bool if kind is bool else int if kind is int
            else _number_or_word, default, field.metadata["help"],
        ))
    return options


def _number_or_word(text: str) -> float | str:
    """A float where the text is one, else the text (bandwidth modes such as 'median')."""
    try:
        return float(text)
    except ValueError:
        return text


def _loss_option(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` with the value read as a bool, an int or a float where it is one."""
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


class Invocation(NamedTuple):
    """A parsed command line: the run's settings and how to treat ``--out``."""

    config: RunConfig
    resume: bool = False
    allow_changes: bool = False
    overwrite: bool = False


def parse_config(argv: list[str] | None = None) -> Invocation:
    """Defaults, then the config file, then flags; validated."""
    args = _parser().parse_args(argv)
    if args.overwrite and args.resume:
        raise ValueError(
            "--overwrite starts a new run and --resume continues one: give one of them"
        )
    if args.allow_changes and not args.resume:
        raise ValueError("--allow-changes applies to --resume only")
    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    for field in dataclasses.fields(RunConfig):
        flag_value = getattr(args, field.name, None)
        if flag_value is not None and field.name not in ("loss_options", "adc_settings"):
            values[field.name] = flag_value
    for option in adc_options():
        flag_value = getattr(args, option.name)
        if flag_value is not None:
            values[option.name] = flag_value
    if args.loss_option:
        values["loss_options"] = {**values.get("loss_options", {}), **dict(args.loss_option)}
    if args.recipe:
        defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
        values = recipes.with_recipe(values, defaults)
    return Invocation(
        RunConfig.from_dict(values).validate(), bool(args.resume), bool(args.allow_changes),
        bool(args.overwrite),
    )


def os_error_message(err: OSError) -> str:
    """What a failed file operation means for the run, and what to do about it."""
    where = err.filename if err.filename is not None else "--out"
    if err.errno == errno.ENOSPC:
        return (
            f"no space left on the device while writing {where}. Free some space (or choose "
            "an --out on another disk) and rerun with --resume: the last complete "
            "checkpoint is kept."
        )
    if err.errno == errno.EDQUOT:
        return f"disk quota exceeded while writing {where}: free some space, then --resume."
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"cannot write {where}: "
            f"{'the file system is read-only' if err.errno == errno.EROFS else 'permission denied'}"
            ". Choose an --out you can write to."
        )
    if err.errno == errno.EEXIST or err.errno == errno.ENOTDIR:
        return (
            f"{where}: a file stands where --out needs a directory. Choose another --out."
        )
    return f"{where}: {err.strerror or err}. Check --out and --data-root."


def main(argv: list[str] | None = None) -> int:
    try:
        invocation = parse_config(argv)
        from glf_train.loop import train

        train(
            invocation.config, resume=invocation.resume,
            allow_changes=invocation.allow_changes, overwrite=invocation.overwrite,
        )
    except (ValueError, FileNotFoundError, RuntimeError, NotImplementedError) as err:
        print(f"glf-train: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"glf-train: error: {os_error_message(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
