"""README.md stands alone: it sends no reader out of the repo, and its commands run as written in a fresh clone."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_the_readme_sends_no_reader_outside_the_repository() -> None:
    assert "../shared" not in README and "CONTRACT.md" not in README


def test_every_command_runs_the_projects_python_not_a_bare_one() -> None:
    bare = re.findall(r"^(?:.*\| *)?python3? server\.py.*$", README, re.M)
    assert bare == []
    assert ".venv/bin/python server.py report" in README


def test_the_history_durability_of_each_bus_is_said() -> None:
    section = README.split("### How long the history lasts")[1].split("\n#")[0]
    for bus in ("`--data-file FILE`", "no `--data-file`", "Redis (`--redis-url`)"):
        assert bus in section, bus
