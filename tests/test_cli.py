"""The `space` command: help on every subcommand, recipe printing, clear errors for bad overrides."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app

COMMANDS = ["run", "bootstrap-model", "curate", "train", "recipe", "recipes", "bench", "export"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_recipe_prints_resolved_yaml_with_overrides():
    result = CliRunner().invoke(app, ["recipe", "--set", "train.epochs=7"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["train"]["epochs"] == 7


def test_bad_override_exits_2_naming_the_key():
    result = CliRunner().invoke(app, ["recipe", "--set", "train.epoks=7"])
    assert result.exit_code == 2
    assert "train.epoks" in result.output


def test_recipes_lists_shipped_recipes():
    result = CliRunner().invoke(app, ["recipes"])
    assert {"builtin", "uniform-full", "random-subset", "smollm2"} <= set(result.output.split())


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "space"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "bootstrap-model" in out.stdout and "curate" in out.stdout


def test_bench_with_a_bad_spec_exits_2_naming_the_key(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: b\nseeds: [0]\narms:\n  - name: uniform-full\n    recipe: uniform-full\n    sett: []\n")
    result = CliRunner().invoke(app, ["bench", str(spec)])
    assert result.exit_code == 2
    assert "arms.0.sett" in result.output
