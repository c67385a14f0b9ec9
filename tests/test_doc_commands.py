"""Every command the README and the docs show keeps working: each parses as written, its subcommand's --help runs,
the recipe of each `train` loads with its overrides, and the suite of each `reproduce` loads. All in-process (no
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


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `sharpvision`) for each command in a shell block (not ```python) of the pages: lines joined
    at a trailing backslash, comments and pipes dropped, optional [bracketed] parts left out."""
    found = []
    for page in PAGES:
        for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", page.read_text(), re.S | re.M):
            if lang not in ("", "bash", "sh", "shell"):
                continue
            for line in re.sub(r"\\\n\s*", " ", body).splitlines():
                line = re.sub(r"\s+#(\s.*)?$", "", line).split(" | ")[0].strip()
                match = re.match(r"^(?:python -m |torchrun (?:\S+ )*?-m )?sharpvision(?: (.*))?$", line)
                rest = re.sub(r"(?:^|\s)\[[^\]]*\]", "", match[1] or "") if match else ""
                if not match or "..." in rest:
                    continue
                argv = shlex.split(rest)
                found.append((f"{page.relative_to(ROOT)}: {line}", argv))
    return found


COMMANDS = documented_commands()
SUBCOMMANDS = sorted({argv[0] for _, argv in COMMANDS})


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
