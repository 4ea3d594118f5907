"""README.md's command blocks run top to bottom, as written, and print what the README shows (as doctests do).

Block kinds: ```console (`$ command` lines, each followed by the output it prints; a `...` line stands for
any number of lines; progress bars are left out), ```sh (commands that must exit 0), ```python (run as
a script; `>>>` blocks as a doctest). A block preceded by `<!-- readme-test: skip (why) -->` is not run;
the training it skips is stood in for by a random tiny pipeline. Plain ``` blocks are pictures and trees.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import latentdiff
from latentdiff import keep_alive, processes

README = Path(__file__).resolve().parents[2] / "README.md"
SKIP_MARK = re.compile(r"<!-- readme-test: skip \((.+)\) -->")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
ELISION = "..."
COMMAND_TIMEOUT_S = 600
WORKER_BIND_TIMEOUT_S = 30  # the keep-alive worker binds its socket before its slow imports


@dataclass
class Block:
    kind: str  # console, sh, python or "" (not a command)
    text: str
    line: int
    skip_reason: str | None


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP_MARK.fullmatch(before.strip())
        blocks.append(Block(match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1,
                            skip.group(1) if skip else None))
    return blocks


def console_steps(text: str) -> list[tuple[str, list[str]]]:
    """`$ command` lines with the output lines after each."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"console output before any `$ command`: {line!r}"
            steps[-1][1].append(line)
    return steps


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line, where a `...` line matches any run of lines (none included) and `...` inside a line
    any text (a path that differs per machine), as doctest's ELLIPSIS does."""
    if not expected:
        return not actual
    if expected[0] == ELISION:
        return any(output_matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and line_matches(expected[0], actual[0]) and output_matches(expected[1:], actual[1:])


def line_matches(expected: str, actual: str) -> bool:
    if ELISION not in expected:
        return expected == actual
    return re.fullmatch(".*".join(re.escape(part) for part in expected.split(ELISION)), actual) is not None


def printed_lines(output: str) -> list[str]:
    # tqdm redraws its bar with carriage returns: a line holding one is a progress bar, not shown in the README
    # (split on "\n" only: str.splitlines would also split at each "\r")
    return [line.rstrip() for line in output.rstrip("\n").split("\n") if "\r" not in line]


def test_readme_marks_every_command_block():
    """A command in an unmarked ``` block would never run: every command block says its kind."""
    for block in readme_blocks(README.read_text()):
        if block.kind == "":
            first_words = [line.split(" ", 1)[0] for line in block.text.splitlines()]
            assert not {"$", "latentdiff", "make", "python"} & set(first_words), \
                f"README.md line {block.line}: a command block needs ```console, ```sh or ```python"
    assert any(b.kind == "console" and b.skip_reason is None for b in readme_blocks(README.read_text()))


def test_readme_output_matcher():
    assert output_matches(["a", ELISION, "d"], ["a", "b", "c", "d"])
    assert output_matches(["a", ELISION], ["a"])
    assert not output_matches(["a", "d"], ["a", "b", "d"])
    assert not output_matches(["a"], ["a", "b"])
    assert output_matches(["saved to .../model.onnx."], ["saved to /tmp/x/model.onnx."])
    assert not output_matches(["saved to .../model.onnx."], ["saved to /tmp/x/model.onnx, twice."])


@pytest.fixture
def readme_shell(tmp_path, monkeypatch):
    """A folder like a fresh clone's, with `latentdiff` and `python` on PATH as the set-up's venv gives them,
    and keep-alive workers (which the README shows) in a private runtime folder, stopped afterwards."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, command in (("latentdiff", f'"{sys.executable}" -m latentdiff'), ("python", f'"{sys.executable}"')):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        (bin_dir / name).chmod(0o755)
    runtime = Path(tempfile.mkdtemp(prefix="ld-", dir="/tmp"))  # short: sockets paths are limited to ~100 bytes
    monkeypatch.setenv(processes.RUNTIME_DIR_ENV, str(runtime))
    monkeypatch.delenv(keep_alive.KEEP_ALIVE_ENV, raising=False)
    monkeypatch.delenv("LATENTDIFF_BACKEND", raising=False)  # the README shows the default backend
    src = str(Path(latentdiff.__file__).resolve().parents[1])
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    work = tmp_path / "clone"
    work.mkdir()
    yield work, env
    deadline = time.monotonic() + WORKER_BIND_TIMEOUT_S
    while any(runtime.glob("*.lock")) and not any(runtime.glob("*.sock")) and time.monotonic() < deadline:
        time.sleep(0.2)
    keep_alive.stop_other_workers("")
    shutil.rmtree(runtime, ignore_errors=True)


def run_block(block: Block, work: Path, env: dict[str, str]) -> None:
    where = f"README.md line {block.line}"
    if block.kind == "console":
        for command, expected in console_steps(block.text):
            done = subprocess.run(["bash", "-c", command], cwd=work, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT_S)
            # both streams, in the order a terminal shows them; bytes, as text mode would turn "\r" into "\n"
            actual = printed_lines(done.stdout.decode())
            assert output_matches(expected, actual), (
                f"{where}: `{command}` printed\n" + "\n".join(actual) + "\nbut the README shows\n" + "\n".join(expected))
    elif block.kind == "sh":
        done = subprocess.run(["bash", "-e", "-c", block.text], cwd=work, env=env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)
        assert done.returncode == 0, f"{where} failed:\n{done.stdout}{done.stderr}"
    elif block.kind == "python" and ">>>" in block.text:
        script = ("import doctest, sys\nparser = doctest.DocTestParser()\n"
                  f"test = parser.get_doctest({block.text!r}, {{}}, 'README', 'README.md', {block.line})\n"
                  "runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)\n"
                  "sys.exit(bool(runner.run(test).failed))\n")
        done = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)
        assert done.returncode == 0, f"{where}:\n{done.stdout}{done.stderr}"
    elif block.kind == "python":
        done = subprocess.run([sys.executable, "-c", block.text], cwd=work, env=env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)
        assert done.returncode == 0, f"{where} failed:\n{done.stdout}{done.stderr}"


@pytest.mark.slow  # runs the README walkthrough (prepare-data, generate, evaluate): about 1-2 minutes on 2 cores
def test_readme_commands_run_in_order_and_print_what_the_readme_shows(readme_shell):
    from helpers.random_pipeline import build_random_pipeline

    work, env = readme_shell
    ran = 0
    for block in readme_blocks(README.read_text()):
        if block.skip_reason is not None:
            if "runs/shapes/pipeline" in block.skip_reason:  # the training it skips, stood in for
                build_random_pipeline(work / "runs" / "shapes" / "pipeline", "tiny", seed=0)
            continue
        if block.kind:
            run_block(block, work, env)
            ran += 1
    assert ran >= 5
    assert (work / "eval" / "report.md").is_file()
