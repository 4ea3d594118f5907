"""`prepare-data --out`: only an earlier prepared dataset is ever replaced. The source, a folder holding it,
and any folder with files prepare-data did not write are refused up front with one sentence, untouched;
an `--out` that is a link to a folder is written where it points."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from latentdiff import cli
from latentdiff.data import cache
from latentdiff.data.writer import SourceItem, SourceResult, write_prepared_dataset
from latentdiff.errors import UserError
from latentdiff.stages import prepare_data

SMALL_RUN = ["prepare-data", "shapes", "--num-images", "12", "--image-size", "32"]


def tree(root: Path) -> dict[str, str]:
    """Every file under `root` (links not followed) with a digest of its bytes."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def users_folder(root: Path) -> Path:
    """The reviewer's repro: captioned images, the user's own manifest.json and a document."""
    root.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (16, 16), (60 * i, 20, 200)).save(root / f"img{i}.png")
        (root / f"img{i}.txt").write_text(f"a picture number {i}\n", encoding="utf-8")
    (root / "manifest.json").write_text(json.dumps({"name": "my holiday pictures"}), encoding="utf-8")
    (root / "notes.docx").write_bytes(b"PK\x03\x04 the user's notes")
    return root


def refused(capsys, argv: list[str], *words: str) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "choose an empty or new --out folder" in err, err
    for word in words:
        assert word in err, err
    return err


def temp_dirs(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.glob(".*.tmp-*"))


def test_the_source_folder_as_out_is_refused_and_nothing_in_it_is_lost(tmp_path, capsys):
    mine = users_folder(tmp_path / "mine")
    before = tree(mine)
    refused(capsys, ["prepare-data", "folder", str(mine), "--out", str(mine)], str(mine), "being read")
    assert tree(mine) == before  # was: only latentdiff_config.json manifest.json test train validation left
    assert temp_dirs(tmp_path) == []


def test_a_folder_holding_the_source_as_out_is_refused(tmp_path, capsys):
    mine = users_folder(tmp_path / "photos" / "mine")
    before = tree(tmp_path)
    refused(capsys, ["prepare-data", "folder", str(mine), "--out", str(tmp_path / "photos")], "being read")
    assert tree(tmp_path) == before


def test_the_out_check_comes_before_reading_the_source(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setitem(prepare_data.BUILTIN_SOURCES, "shapes", lambda cfg: calls.append(cfg))
    mine = users_folder(tmp_path / "mine")
    refused(capsys, [*SMALL_RUN, "--out", str(mine)])
    assert calls == []


@pytest.mark.parametrize("case", ["users manifest", "no manifest", "manifest of ours plus a document",
                                  "manifest not json"])
def test_a_folder_prepare_data_did_not_write_is_refused_untouched(tmp_path, capsys, case):
    mine = users_folder(tmp_path / "mine")
    if case == "no manifest":
        (mine / "manifest.json").unlink()
    elif case == "manifest not json":
        (mine / "manifest.json").write_text("{not json", encoding="utf-8")
    elif case == "manifest of ours plus a document":
        for path in mine.glob("img*"):
            path.unlink()
        (mine / "manifest.json").write_text(json.dumps({"version": 1, "source": "shapes", "counts": {"train": 1}}))
    before = tree(mine)
    refused(capsys, [*SMALL_RUN, "--out", str(mine)], str(mine), "not a dataset prepare-data wrote")
    assert tree(mine) == before
    assert temp_dirs(tmp_path) == []


@pytest.mark.parametrize("extra", ["my_runs/ckpt.txt", "train/my_notes.txt", "README.md"])
def test_a_prepared_dataset_holding_the_users_files_is_not_replaced(tmp_path, capsys, extra):
    out = tmp_path / "out"
    assert cli.main([*SMALL_RUN, "--out", str(out)]) == 0
    (out / extra).parent.mkdir(parents=True, exist_ok=True)
    (out / extra).write_text("the user's own file\n", encoding="utf-8")
    before = tree(out)
    capsys.readouterr()
    err = refused(capsys, [*SMALL_RUN, "--seed", "1", "--out", str(out)], str(out))
    assert extra.split("/")[0] in err  # says what is in the way
    assert tree(out) == before  # was: my_runs/ckpt.txt deleted with the old dataset


@pytest.mark.parametrize("first, second", [("imagefolder", "imagefolder"), ("imagefolder", "webdataset"),
                                           ("webdataset", "imagefolder")])
def test_a_rerun_replaces_an_earlier_prepared_dataset(tmp_path, capsys, first, second):
    out = tmp_path / "out"
    assert cli.main([*SMALL_RUN, "--format", first, "--out", str(out)]) == 0
    # The latent cache training keeps inside the dataset is stale once the data is replaced.
    (out / cache.DEFAULT_CACHE_SUBDIR).mkdir()
    (out / cache.DEFAULT_CACHE_SUBDIR / "train-0123.safetensors").write_bytes(b"latents")
    assert cli.main([*SMALL_RUN[:-4], "--num-images", "15", "--image-size", "32", "--format", second,
                     "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(manifest["counts"].values()) == 15
    assert not (out / cache.DEFAULT_CACHE_SUBDIR).exists()
    assert (out / "index.json").exists() == (second == "webdataset")
    assert temp_dirs(tmp_path) == []


def test_the_writer_knows_the_latent_cache_folder():
    from latentdiff.data.writer import OUTPUT_CACHE_DIR  # a copy: the writer does not import torch

    assert OUTPUT_CACHE_DIR == cache.DEFAULT_CACHE_SUBDIR


def test_an_out_link_to_a_folder_is_written_where_it_points(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert cli.main([*SMALL_RUN, "--out", str(link)]) == 0
    assert link.is_symlink() and link.resolve() == real.resolve()
    first = json.loads((real / "manifest.json").read_text())
    assert (real / "latentdiff_config.json").exists()
    # A re-run through the link replaces the dataset there (was: "Cannot call rmtree on a symbolic link").
    assert cli.main([*SMALL_RUN, "--seed", "3", "--out", str(link)]) == 0
    assert link.is_symlink() and link.resolve() == real.resolve()
    second = json.loads((real / "manifest.json").read_text())
    assert (first["seed"], second["seed"]) == (0, 3)
    assert "Could not read or write" not in capsys.readouterr().err
    assert temp_dirs(tmp_path) == []


def test_an_out_link_to_the_users_folder_is_refused_untouched(tmp_path, capsys):
    mine = users_folder(tmp_path / "mine")
    link = tmp_path / "link"
    link.symlink_to(mine, target_is_directory=True)
    before = tree(mine)
    refused(capsys, [*SMALL_RUN, "--out", str(link)], str(link))
    assert tree(mine) == before and link.is_symlink()


def test_files_put_into_out_while_the_run_works_keep_it_from_being_replaced(tmp_path):
    out = tmp_path / "out"

    def items(arrives: bool):
        yield SourceItem("a", lambda: Image.new("RGB", (8, 8)), ["a caption"])
        if arrives:
            (out / "arrived.txt").write_text("written during the run\n")
        yield SourceItem("b", lambda: Image.new("RGB", (8, 8), (9, 9, 9)), ["another caption"])

    write_prepared_dataset(SourceResult("test", items(False)), out, 8)
    before = tree(out)
    with pytest.raises(UserError, match="it holds arrived.txt"):
        write_prepared_dataset(SourceResult("test", items(True)), out, 8, seed=1)
    assert tree(out) == {**before, "arrived.txt": hashlib.sha256(b"written during the run\n").hexdigest()}
    assert temp_dirs(tmp_path) == []
