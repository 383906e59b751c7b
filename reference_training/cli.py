"""``glf-train``: train a reference SSL model; the only module that reads ``sys.argv``."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import sys
from collections.abc import Iterable
from typing import Any, NamedTuple

from reference_training.config import RunConfig, load_config_file


class Option(NamedTuple):
    """One ``--flag`` of ``glf-train``: what the argparse builder needs to know of it.

    ``default`` is what ``--help`` shows (the value, or a phrase such as "the method's");
    ``choices`` are listed in ``--help`` and enforced by :meth:`RunConfig.validate`, so a
    bad value gets the same message from a flag as from a config file.
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None


# A field's annotation -> the type argparse converts the flag's text to.
_FLAG_TYPES: dict[str, type] = {
    "int": int, "float": float, "bool": bool, "str": str, "float | None": float,
    "str | None": str,
}


def config_options() -> list[Option]:
    """The options of every :class:`RunConfig` field, from the fields' metadata."""
    options = []
    for field in dataclasses.fields(RunConfig):
        if field.name == "extra":  # free-form, config files only
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
        "--overwrite", action="store_true",
        help="start a new run in an --out that holds another run, deleting that run's "
        "checkpoints, metrics, summary and plots (default: off)",
    )
    add_options(parser, config_options())
    return parser


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
        if flag_value is not None:
            values[field.name] = flag_value
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
        from reference_training.loop import train

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
