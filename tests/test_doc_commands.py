"""Every command the README and the docs show keeps working: each parses as written, its subcommand's --help runs,
the recipe of each `train` loads with its overrides, the suite of each `reproduce` loads, and each script they give
to run (`python benchmarks/NAME.py`, `python studies/NAME.py`) is there and takes the flags shown. All in-process (no
subprocess, no training), so the whole file takes seconds."""

import re
import shlex
from pathlib import Path

import pytest

from sharpvision import cli, config, experiments

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# a documented placeholder, not a file a user has: commands naming one are parsed but not loaded
PLACEHOLDERS = re.compile(r"^(my_|runs/|/shared/|report/|data/)|\.\.\.")


def shell_lines(page: Path) -> list[str]:
    """The command lines of the page's shell blocks (not ```python): lines joined at a trailing backslash, comments
    and pipes dropped."""
    lines = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", page.read_text(), re.S | re.M):
        if lang in ("", "bash", "sh", "shell"):
            lines += [re.sub(r"\s+#(\s.*)?$", "", line).split(" | ")[0].strip()
                      for line in re.sub(r"\\\n\s*", " ", body).splitlines()]
    return lines


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `sharpvision`) for each command in a shell block of the pages, optional [bracketed] parts
    left out."""
    found = []
    for page in PAGES:
        for line in shell_lines(page):
            match = re.match(r"^(?:python -m |torchrun (?:\S+ )*?-m )?sharpvision(?: (.*))?$", line)
            rest = re.sub(r"(?:^|\s)\[[^\]]*\]", "", match[1] or "") if match else ""
            if not match or "..." in rest:
                continue
            argv = shlex.split(rest)
            found.append((f"{page.relative_to(ROOT)}: {line}", argv))
    return found


def documented_scripts() -> list[tuple[str, str, list[str]]]:
    """(where, script, its arguments) for each `python benchmarks/NAME.py` or `python studies/NAME.py` that the pages
    and the two folders' READMEs give to run: a line of a shell block, or a command in backticks in a table row."""
    found = []
    for page in [*PAGES, ROOT / "benchmarks" / "README.md", ROOT / "studies" / "README.md"]:
        rows = [row for row in page.read_text().splitlines() if row.startswith("|")]
        for line in [*shell_lines(page), *(cmd for row in rows for cmd in re.findall(r"`(python [^`]+)`", row))]:
            match = re.match(r"^python ((?:benchmarks|studies)/\w+\.py)(?:\s+(.*))?$", line)
            if match:
                found.append((f"{page.relative_to(ROOT)}: {line}", match[1], shlex.split(match[2] or "")))
    return found


COMMANDS = documented_commands()
SUBCOMMANDS = sorted({argv[0] for _, argv in COMMANDS})
SCRIPTS = documented_scripts()


def test_the_pages_show_commands_of_every_subcommand() -> None:
    """The extraction finds the commands it must (a regex that finds nothing would pass every test below)."""
    assert len(COMMANDS) > 40
    assert set(SUBCOMMANDS) == {"models", "train", "finetune", "prune", "eval", "analyze", "demo", "reproduce",
                                "report"}


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_each_documented_subcommand_has_help(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([sub, "--help"])
    assert exit_.value.code == 0 and f"usage: sharpvision {sub}" in capsys.readouterr().out


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_each_documented_command_parses_and_its_recipe_or_suite_loads(where: str, argv: list[str]) -> None:
    args, extra = cli.parser().parse_known_args(argv)  # argparse exits 2 on a flag or choice that is gone
    assert all("=" in x and not x.startswith("-") for x in extra), f"{where}: unknown arguments {extra}"
    overrides = getattr(args, "overrides", []) + extra
    if args.command == "train" and not PLACEHOLDERS.search(args.recipe):
        config.load(args.recipe, overrides)  # a renamed field or a moved recipe fails here
    if args.command == "demo":
        config.load(args.recipe, overrides)
    if args.command == "reproduce" and not PLACEHOLDERS.search(args.suite):
        experiments.load_suite(args.suite)


def test_the_pages_show_the_scripts_of_both_folders() -> None:
    """benchmarks/ times; studies/ trains, evaluates or tabulates: the extraction finds the commands of both."""
    assert {script.split("/")[0] for _, script, _ in SCRIPTS} == {"benchmarks", "studies"} and len(SCRIPTS) > 20


@pytest.mark.parametrize(("where", "script", "args"), SCRIPTS, ids=[w for w, _, _ in SCRIPTS])
def test_each_documented_script_is_where_the_page_says_and_takes_its_flags(where: str, script: str,
                                                                          args: list[str]) -> None:
    """A script moved between benchmarks/ and studies/, or a flag it no longer takes, fails here (read, not run; the
    studies' --help runs in tests/test_studies.py)."""
    path = ROOT / script
    assert path.is_file(), f"{where}: there is no {script}"
    source = path.read_text()
    siblings = [path.parent / f"{name}.py" for name in re.findall(r"^from (\w+) import", source, re.M)]
    source += "".join(s.read_text() for s in siblings if s.is_file())  # a parser shared with others (settings_grid)
    for flag in (a.split("=")[0] for a in args if a.startswith("--")):
        assert f'"{flag}"' in source or f'"--{flag.removeprefix("--no-")}"' in source, f"{where}: no {flag}"
