"""Script-friendly behaviour: results alone on stdout, --quiet, NO_COLOR, completion, light imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY, run_cli


def _segcli(args: list, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segcli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300)


def test_train_stdout_is_only_the_run_path(binary_data: Path, tmp_path: Path) -> None:
    p = _segcli(["train", binary_data, "--epochs", "1", *TINY], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout == str(Path("runs/train/exp")) + "\n"
    # not a terminal: one plain line per epoch on stderr, no live bar, no escape codes
    assert "epoch 1/1" in p.stderr and "\x1b[" not in p.stderr and "\r" not in p.stderr


def test_per_command_quiet(binary_data: Path, tmp_path: Path) -> None:
    r = run_cli(["train", binary_data, "--epochs", "1", *TINY, "-q"], cwd=tmp_path)
    assert r.code == 0, r.err
    assert r.out.strip() == str(Path("runs/train/exp"))
    assert "epoch" not in r.err and "training finished" not in r.err and "run folder" not in r.err
    loud = run_cli(["check", binary_data])  # -q does not stick to later commands in the same process
    assert "no problems found" in loud.out


def test_no_color_is_honoured(binary_data: Path) -> None:
    forced = _segcli(["check", binary_data], FORCE_COLOR="1")
    assert forced.returncode == 0 and "\x1b[" in forced.stdout  # styled when colour is forced
    plain = _segcli(["check", binary_data], FORCE_COLOR="1", NO_COLOR="1")
    assert plain.returncode == 0 and "\x1b[" not in plain.stdout + plain.stderr
    assert "no problems found" in plain.stdout


def test_json_outputs_parse_whole(trained_binary: Path, binary_data: Path) -> None:
    for args in (["check", binary_data, "--json"], ["info", "--json"]):
        p = _segcli(args, cwd=trained_binary, FORCE_COLOR="1")
        assert p.returncode == 0, p.stderr
        assert isinstance(json.loads(p.stdout), dict)


def test_shell_completion() -> None:
    p = _segcli([], _SEGCLI_COMPLETE="complete_bash", COMP_WORDS="segcli ch", COMP_CWORD="1")
    assert p.returncode == 0 and "check" in p.stdout.split()
    # typer detects the shell from the parent process (an argument after the flag is ignored when
    # shellingham is installed), so run it from bash; not a single command, which bash would exec
    p = subprocess.run(["bash", "-c", f"'{sys.executable}' -m segcli --show-completion; exit $?"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "_segcli_completion" in p.stdout, p.stderr
    p = _segcli(["--help"])
    assert "--install-completion" in p.stdout


def test_import_and_help_stay_light() -> None:
    code = ("import sys, segcli; from segcli.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert callable(segcli.load)\nprint('light')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("light") and "check" in p.stdout and "info" in p.stdout
