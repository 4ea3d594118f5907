"""`latentdiff prepare-data` as a user meets it: help, a loadable imagefolder, same bytes, clear errors."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from latentdiff import cli
from latentdiff.stages import prepare_data


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_help_lists_the_stage_and_the_sources(capsys):
    assert cli.main(["--help"]) == 0
    assert "prepare-data" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["prepare-data", "--help"])
    assert exit_info.value.code == 0
    text = re.sub(r"-\n\s*", "-", capsys.readouterr().out)  # argparse wraps lines after a hyphen
    for word in ("--out", "--image-size", "--languages", "--max-images", "--num-images", "--seed",
                 "shapes", "emoji", "clipart", "fashion-mnist"):
        assert word in text
    assert set(prepare_data.BUILTIN_SOURCES) == {"shapes", "emoji", "clipart", "fashion-mnist"}


def test_imagefolder_loads_all_three_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "shapes"
    assert cli.main(["prepare-data", "shapes", "--out", str(out), "--num-images", "120", "--seed", "1"]) == 0
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out))
    assert set(loaded) == {"train", "validation", "test"}
    assert sum(len(loaded[split]) for split in loaded) == 120
    row = loaded["test"][0]
    assert row["image"].size == (64, 64)
    assert isinstance(row["text"], list) and row["text"]
    assert row["attributes"]["objects"][0]["color"] in row["text"][0]
    assert (out / "latentdiff_config.json").exists()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    out = tmp_path / "d"
    argv = ["prepare-data", "shapes", "--out", str(out), "--num-images", "40", "--image-size", "32"]
    assert cli.main(argv + ["--seed", "5"]) == 0
    first = tree_digest(out)
    assert cli.main(argv + ["--seed", "5"]) == 0  # rewritten in place
    assert tree_digest(out) == first
    assert cli.main(argv + ["--seed", "6"]) == 0
    assert tree_digest(out) != first


@pytest.mark.parametrize("argv, words", [
    (["prepare-data", "nonsense", "--out", "OUT"], "Unknown source 'nonsense'"),
    (["prepare-data", "shapes"], "--out"),
    (["prepare-data", "emoji", "--out", "OUT", "--languages", "en,xx"], "xx"),
    (["prepare-data", "shapes", "some/folder", "--out", "OUT"], "takes no PATH"),
])
def test_user_mistakes_exit_2_with_one_sentence(tmp_path, capsys, argv, words):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
