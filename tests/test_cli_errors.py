"""Every mistake on the command line is one line naming the culprit, exit 2, before any work: argparse's own
errors (an unknown choice, a non-positive count) as much as the checks of the tasks (eps, severities, amount).

The targets here do not exist: a request that is wrong in itself is refused before a run is even looked for, so
the message names the request, not the missing run, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sharpvision.cli import main

# (argv, what the one line must name)
ARGPARSE = [
    pytest.param(["eval", "run", "--attack", "cw", "--eps", "0.1"], ["--attack", "'cw'", "'fgsm', 'pgd'"],
                 id="attack-cw"),
    pytest.param(["eval", "run", "--attack", "pgd", "--eps", "0.1", "--norm", "l3"], ["--norm", "'l3'"],
                 id="norm-l3"),
    pytest.param(["eval", "run", "--attack", "pgd", "--eps", "0.1", "--steps", "0"], ["--steps", "0 is not"],
                 id="steps-0"),
    pytest.param(["eval", "run", "--attack", "pgd", "--eps", "0.1", "--restarts", "0"], ["--restarts", "0 is not"],
                 id="restarts-0"),
    pytest.param(["eval", "run", "--attack", "pgd", "--eps", "0.1", "--subset", "0"], ["--subset", "0 is not"],
                 id="subset-0"),
    pytest.param(["eval", "run", "--subset", "two"], ["--subset", "'two' is not a positive integer"],
                 id="subset-word"),
    pytest.param(["eval"], ["the following arguments are required: target"], id="eval-without-target"),
    pytest.param([], ["the following arguments are required: command"], id="no-command"),
    pytest.param(["trian"], ["invalid choice: 'trian'"], id="unknown-subcommand"),
    pytest.param(["train", "tiny.yaml", "--bogus"], ["unrecognized arguments: --bogus"], id="unknown-flag"),
    pytest.param(["finetune", "run", "--mode", "half"], ["--mode", "'half'"], id="finetune-mode"),
    pytest.param(["reproduce", "paper-tiny", "--timeout-min", "0"], ["--timeout-min", "0 is not"],
                 id="reproduce-timeout"),
    pytest.param(["analyze", "run", "--dtype", "float16"], ["--dtype", "'float16'"], id="analyze-dtype"),
    pytest.param(["demo", "--quiet", "--bogus"], ["unrecognized arguments: --bogus"], id="demo-unknown-flag"),
]

# checks of the request itself, made before the run is loaded (the target does not exist)
REQUEST = [
    pytest.param(["eval", "run", "--attack", "pgd", "--eps", "1.5"], ["eps 1.5", "linf", "<= 1"], id="linf-eps-1.5"),
    pytest.param(["eval", "run", "--attack", "fgsm", "--eps", "0.1,2"], ["eps 2.0", "<= 1"], id="fgsm-eps-2"),
    pytest.param(["eval", "run", "--attack", "pgd", "--eps", "inf"], ["eps inf", "finite"], id="eps-inf"),
    pytest.param(["eval", "run", "--attack", "pgd", "--norm", "l2", "--eps", "inf"], ["eps inf", "finite"],
                 id="l2-eps-inf"),
    pytest.param(["eval", "run", "--attack", "pgd", "--eps", "nan"], ["eps nan"], id="eps-nan"),
    pytest.param(["eval", "run", "--attack", "autoattack", "--eps", "1.01"], ["eps 1.01", "<= 1"],
                 id="autoattack-eps"),
    pytest.param(["eval", "run", "--corruptions", "--severities", "2.5"], ["--severities", "'2.5'", "1-5"],
                 id="severity-2.5"),
    pytest.param(["eval", "run", "--corruptions", "--severities", "1,5.0"], ["--severities", "'5.0'"],
                 id="severity-5.0"),
    pytest.param(["eval", "run", "--corruptions", "--severities", "6"], ["severity 6"], id="severity-6"),
    pytest.param(["eval", "run", "--corruptions", "fog", "--attack", "pgd", "--eps", "-0.1"], ["eps must be >= 0"],
                 id="corruptions-then-bad-eps"),
    pytest.param(["eval", "run", "--corruptions", "fog", "--mnist-c", "snow"], ["MNIST-C corruption 'snow'"],
                 id="corruptions-then-bad-mnist-c"),
    pytest.param(["eval", "run", "--mnist-c", "rotate", "--attack", "pgd", "--eps", "-0.1"], ["eps must be >= 0"],
                 id="mnist-c-then-bad-eps"),
    pytest.param(["train", "tiny.yaml", "adv.method=pgd", "adv.eps=1.5"], ["adv.eps", "1.5"], id="train-adv-eps"),
    pytest.param(["prune", "run", "--amount", "nan"], ["--amount", "nan", "(0, 1)"], id="prune-nan"),
    pytest.param(["prune", "run", "--amount", "inf"], ["--amount", "inf", "(0, 1)"], id="prune-inf"),
    pytest.param(["prune", "run", "--amount", "1.5"], ["--amount", "1.5", "(0, 1)"], id="prune-1.5"),
    pytest.param(["prune", "run", "--amount", "half"], ["--amount", "'half'"], id="prune-word"),
]


def run_cli(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    captured = capsys.readouterr()
    assert captured.out == ""
    return rc, captured.err.splitlines()


@pytest.mark.parametrize("argv, culprits", [*ARGPARSE, *REQUEST])
def test_a_mistake_is_one_line_naming_it_exit_2_and_nothing_written(argv: list[str], culprits: list[str],
                                                                    tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    rc, err = run_cli(capsys, argv)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("sharpvision") and "error: " in err[0], err
    for culprit in culprits:
        assert culprit in err[0], (culprit, err[0])
    assert list(tmp_path.iterdir()) == []


def test_the_one_line_points_to_the_subcommands_help(capsys) -> None:
    rc, err = run_cli(capsys, ["eval", "run", "--norm", "l3"])
    assert rc == 2 and err == ["sharpvision eval: error: argument --norm: invalid choice: 'l3' (choose from 'linf', "
                               "'l2'); see sharpvision eval --help"]
