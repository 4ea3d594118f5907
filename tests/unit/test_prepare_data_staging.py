"""`prepare-data` output folders: normal permissions, and no temp folders piling up after killed runs."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latentdiff import cli
from latentdiff.data import staging

SMALL_RUN = ["prepare-data", "shapes", "--num-images", "12", "--image-size", "32"]


def temp_dirs(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f".{out.name}.tmp-*"))


def mode_bits(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_output_folders_and_files_follow_the_umask_like_mkdir(tmp_path, umask_027):
    out = tmp_path / "data"
    assert cli.main([*SMALL_RUN, "--out", str(out)]) == 0
    assert mode_bits(out) == 0o750  # was 0700 (tempfile.mkdtemp), whatever the umask
    assert mode_bits(out / "train") == 0o750
    assert mode_bits(out / "manifest.json") == 0o640
    assert mode_bits(next((out / "train").glob("*.png"))) == 0o640


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _leftover(parent: Path, name: str, age_s: float = 0.0) -> Path:
    folder = parent / name
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "000000.png").write_bytes(b"half written")
    if age_s:
        then = time.time() - age_s
        os.utime(folder, (then, then))
    return folder


def test_a_rerun_removes_only_temp_folders_whose_writer_is_gone(tmp_path):
    out = tmp_path / "data"
    host, day = staging._host(), staging.STALE_AFTER_S
    dead = _leftover(tmp_path, f".data.tmp-{host}-{_dead_pid()}-0a1b2c3d")
    old_format_stale = _leftover(tmp_path, ".data.tmp-k3j_x9az", age_s=day + 60)  # mkdtemp's names
    other_host_stale = _leftover(tmp_path, f".data.tmp-otherbox-{os.getpid()}-00ff00ff", age_s=day + 60)
    # A concurrent run (its process is alive), a recent folder of unknown writer, another OUT's folder.
    live = _leftover(tmp_path, f".data.tmp-{host}-{os.getppid()}-12345678")
    old_format_recent = _leftover(tmp_path, ".data.tmp-q8w_e7rt")
    other_host_recent = _leftover(tmp_path, f".data.tmp-otherbox-{os.getpid()}-abcdef01")
    other_out = _leftover(tmp_path, f".data2.tmp-{host}-{_dead_pid()}-0a1b2c3d")
    assert cli.main([*SMALL_RUN, "--out", str(out)]) == 0
    for gone in (dead, old_format_stale, other_host_stale):
        assert not gone.exists(), gone.name
    for kept in (live, old_format_recent, other_host_recent, other_out):
        assert (kept / "train" / "000000.png").exists(), kept.name
    assert (out / "manifest.json").exists()


def test_the_temp_folder_of_a_killed_run_is_gone_after_the_next_run(tmp_path):
    out = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.Popen([sys.executable, "-m", "latentdiff", "prepare-data", "shapes", "--num-images", "100000",
                            "--image-size", "32", "--out", str(out)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".data.tmp-*/train/*.png")):  # killed in the middle of writing
        assert run.poll() is None and time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert len(temp_dirs(out)) == 1
    assert cli.main([*SMALL_RUN, "--out", str(out)]) == 0
    assert temp_dirs(out) == []  # each kill used to leave one more behind, forever
