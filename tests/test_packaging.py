"""Packaging: the console scripts in pyproject.toml and the README's quick start point at real things."""

from __future__ import annotations

import importlib
import os
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_target_is_callable(name: str) -> None:
    """Each `[project.scripts]` entry names an importable module and a callable in it."""
    module_name, _, attribute = SCRIPTS[name].partition(":")
    target = getattr(importlib.import_module(module_name), attribute)
    assert callable(target)


def test_quick_start_is_two_executable_scripts() -> None:
    """The README's quick start holds exactly two commands, each an executable file of the repository."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
        for line in block.splitlines()
        if line.strip()
    ]
    assert len(commands) == 2, commands
    for command in commands:
        path = ROOT / command.split()[0]
        assert path.is_file() and os.access(path, os.X_OK), command
