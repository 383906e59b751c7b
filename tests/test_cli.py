"""``glf-train --help`` documents every flag from the ``RunConfig`` fields' metadata."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
from glf_train import cli
from glf_train.config import BACKENDS, RunConfig, adc_fields, methods
from glf_train.data import DATASETS


def test_every_flag_has_a_sentence_and_its_default() -> None:
    parser = cli._parser()
    flags = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and len(action.help.split()) >= 3, action.option_strings
        assert "(default: " in action.help, action.option_strings
        flags[action.option_strings[0]] = action
    for field in dataclasses.fields(RunConfig):
        if field.name not in ("extra", "loss_options", "adc_settings"):
            assert "--" + field.name.replace("_", "-") in flags, field.name
    # The dict fields' flags: one per ADC field, and --loss-option.
    for field in adc_fields():
        assert "--adc-" + field.name.replace("_", "-") in flags, field.name
    for flag in ("--config", "--resume", "--allow-changes", "--overwrite", "--loss-option"):
        assert flag in flags


def test_help_lists_the_choices_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for names in (methods(), BACKENDS, DATASETS):
        assert "{" + ",".join(names) + "}" in text
    assert "--epochs EPOCHS number of passes over the training images (default: 10)" in text
    assert "--adc, --no-adc add ADC" in text and "(default: off)" in text
    assert "--adc-nu ADC_NU weight of DCM, the calibration term (>= 0) (default: the " \
        "method's recommendation)" in text


def test_the_builder_takes_generated_options() -> None:
    # Fields declared elsewhere (ADC settings, a method registry) plug in as Option tuples.
    parser = argparse.ArgumentParser()
    cli.add_options(parser, [
        cli.Option("toy_weight", float, 0.5, "a generated setting"),
        cli.Option("toy_kind", str, "a", "a generated choice", ("a", "b")),
        cli.Option("toy_switch", bool, False, "a generated switch"),
    ])
    args = parser.parse_args(["--toy-weight", "2", "--toy-kind", "b", "--toy-switch"])
    assert (args.toy_weight, args.toy_kind, args.toy_switch) == (2.0, "b", True)
    assert parser.parse_args([]).toy_weight is None  # unset: the config file decides
    text = parser.format_help()
    assert "{a,b}" in text and "a generated setting (default: 0.5)" in text


def test_a_field_without_help_is_a_declaration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass
    class Bare:
        epochs: int = 1

    monkeypatch.setattr(cli, "RunConfig", Bare)
    with pytest.raises(TypeError, match=r"RunConfig\.epochs has no help text"):
        cli.config_options()


def test_a_recipe_fills_what_the_user_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from glf_train import recipes

    book = {"digits": {
        "*": {"epochs": 7, "batch_size": 32},
        "simclr": {"epochs": 9, "proj_dim": 16, "loss_options": {"temperature": 0.3}},
    }}
    monkeypatch.setattr(recipes, "RECIPES", book)
    config = cli.parse_config(["--method", "simclr", "--dataset", "digits"]).config
    assert (config.epochs, config.batch_size, config.proj_dim) == (9, 32, 16)
    assert config.loss_options == {"temperature": 0.3}
    # A flag wins over the recipe, key by key for loss options.
    config = cli.parse_config([
        "--method", "simclr", "--dataset", "digits", "--epochs", "2",
        "--loss-option", "temperature=0.5",
    ]).config
    assert (config.epochs, config.batch_size, config.loss_options) == (2, 32, {"temperature": 0.5})
    # Another method gets the dataset's common values only; --no-recipe none of them.
    byol = cli.parse_config(["--method", "byol", "--dataset", "digits"]).config
    assert (byol.epochs, byol.proj_dim, byol.loss_options) == (7, RunConfig().proj_dim, {})
    plain = cli.parse_config(["--method", "simclr", "--dataset", "digits", "--no-recipe"])
    assert plain.config.epochs == RunConfig().epochs and plain.config.loss_options == {}
