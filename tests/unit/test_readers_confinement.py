"""`prepare-data` reads only inside the dataset folder: names with `..` or absolute paths in any caption
format, and symlinks to outside (unless --follow-symlinks), are skipped with the reason; a folder
called `x.png` is listed, not passed over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from latentdiff import cli
from latentdiff.config import PrepareDataConfig
from latentdiff.data.prepared import open_prepared
from latentdiff.errors import UserError
from latentdiff.stages import prepare_data

LEAVES = "path leaves the dataset folder"
LINK_OUT = "symlink to outside the dataset folder"
FOLDER = "a folder, not an image file"


@pytest.fixture
def secret(tmp_path) -> Path:
    """An image outside the dataset folder that must never end up in the prepared dataset."""
    path = tmp_path / "elsewhere" / "secret.jpg"
    path.parent.mkdir()
    Image.new("RGB", (20, 20), (255, 0, 255)).save(path)
    (path.parent / "secret.txt").write_text("a private caption\n")
    return path


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), (30, 120, 200)).save(path)


def prepare(source: str, root: Path, out: Path, follow_symlinks: bool = False) -> tuple[set[str], dict[str, str]]:
    """(ids of the prepared images, skipped item -> reason)."""
    manifest = prepare_data.run(PrepareDataConfig(source=source, path=str(root), out=str(out), image_size=16,
                                                  follow_symlinks=follow_symlinks))
    ds = open_prepared(out)
    ids = {r.id for split in ("train", "validation", "test") for r in ds.records(split)}
    return ids, {s["item"]: s["reason"] for s in manifest["skipped"]}


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_metadata_jsonl_names_and_links_that_leave_the_folder_are_skipped(tmp_path, secret):
    root = tmp_path / "ds"
    _image(root / "good.jpg")
    (root / "inner.jpg").symlink_to(root / "good.jpg")  # a link that stays inside is fine
    (root / "link.jpg").symlink_to(secret)
    (root / "dir.png").mkdir()
    _jsonl(root / "metadata.jsonl", [
        {"file_name": "good.jpg", "text": "kept"}, {"file_name": "inner.jpg", "text": "kept too"},
        {"file_name": "../elsewhere/secret.jpg", "text": "climbs out"},
        {"file_name": str(secret), "text": "absolute"},
        {"file_name": "link.jpg", "text": "links out"}, {"file_name": "dir.png", "text": "a folder"}])
    ids, skipped = prepare("folder", root, tmp_path / "out")
    assert ids == {"good.jpg", "inner.jpg"}
    reasons = sorted(skipped.values())
    assert [r.split(" (")[0].split(";")[0] for r in reasons] == [FOLDER, LEAVES, LEAVES, LINK_OUT]
    assert "--follow-symlinks" in skipped["link.jpg"]
    # --follow-symlinks lets the link in; '..' and absolute names stay out.
    ids, skipped = prepare("folder", root, tmp_path / "out2", follow_symlinks=True)
    assert ids == {"good.jpg", "inner.jpg", "link.jpg"}
    assert sorted(r.split(";")[0] for r in skipped.values() if not r.startswith(FOLDER)) == [LEAVES, LEAVES]


def test_csv_names_that_leave_the_folder_are_skipped(tmp_path, secret):
    root = tmp_path / "ds"
    _image(root / "good.jpg")
    (root / "metadata.csv").write_text(f"file_name,text\ngood.jpg,kept\n../elsewhere/secret.jpg,out\n{secret},abs\n")
    ids, skipped = prepare("folder", root, tmp_path / "out")
    assert ids == {"good.jpg"}
    assert len(skipped) == 2 and all(r.startswith(LEAVES) for r in skipped.values())


def test_sidecar_layout_skips_linked_images_and_captions_and_lists_image_named_folders(tmp_path, secret):
    root = tmp_path / "ds"
    _image(root / "a.jpg")
    (root / "a.txt").write_text("kept\n")
    (root / "link.jpg").symlink_to(secret)
    (root / "link.txt").write_text("an image from elsewhere\n")
    _image(root / "b.jpg")
    (root / "b.txt").symlink_to(secret.parent / "secret.txt")
    (root / "x.png").mkdir()
    ids, skipped = prepare("folder", root, tmp_path / "out")
    assert ids == {"a.jpg"}
    assert sorted(skipped) == ["b.jpg", "link.jpg", "x.png"]
    assert skipped["link.jpg"].startswith(LINK_OUT) and skipped["b.jpg"].startswith(f"caption file: {LINK_OUT}")
    assert skipped["x.png"].startswith(FOLDER)
    out = tmp_path / "out2"
    assert cli.main(["prepare-data", "folder", str(root), "--out", str(out), "--image-size", "16",
                     "--follow-symlinks"]) == 0
    assert {r.id for split in ("train", "validation", "test") for r in open_prepared(out).records(split)} == {
        "a.jpg", "b.jpg", "link.jpg"}


def test_a_metadata_file_linked_from_outside_is_one_sentence(tmp_path, secret, capsys):
    root = tmp_path / "ds"
    _image(root / "good.jpg")
    _jsonl(secret.parent / "metadata.jsonl", [{"file_name": "good.jpg", "text": "hi"}])
    (root / "metadata.jsonl").symlink_to(secret.parent / "metadata.jsonl")
    assert cli.main(["prepare-data", "folder", str(root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "outside the dataset folder" in err and "--follow-symlinks" in err and len(err.splitlines()) == 1
    ids, _ = prepare("folder", root, tmp_path / "out", follow_symlinks=True)
    assert ids == {"good.jpg"}


def test_coco_file_names_that_leave_the_image_folder_are_skipped(tmp_path, secret):
    root = tmp_path / "ds"
    _image(root / "val2017" / "000000000001.jpg")
    images = [{"id": 1, "file_name": "000000000001.jpg"}, {"id": 2, "file_name": "../../elsewhere/secret.jpg"},
              {"id": 3, "file_name": str(secret)}]
    annotations = [{"id": i, "image_id": i, "caption": f"caption {i}"} for i in (1, 2, 3)]
    (root / "annotations").mkdir()
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    ids, skipped = prepare("coco", root, tmp_path / "out")
    assert ids == {"000000000001.jpg"}
    assert len(skipped) == 2 and all(r.startswith(LEAVES) for r in skipped.values())


@pytest.mark.parametrize("layout", ["official", "karpathy", "kaggle"])
def test_flickr8k_names_that_leave_the_image_folder_are_skipped(tmp_path, secret, layout):
    root = tmp_path / "ds"
    _image(root / "Images" / "1000_a.jpg")
    names = ["1000_a.jpg", "../../elsewhere/secret.jpg", str(secret)]
    if layout == "official":
        (root / "Flickr8k.token.txt").write_text("".join(f"{n}#0\tA caption .\n" for n in names))
    elif layout == "kaggle":
        (root / "captions.txt").write_text("image,caption\n" + "".join(f"{n},A caption .\n" for n in names))
    else:
        images = [{"filename": n, "split": "train", "sentences": [{"raw": "A caption ."}]} for n in names]
        (root / "dataset_flickr8k.json").write_text(json.dumps({"images": images}))
    ids, skipped = prepare("flickr8k", root, tmp_path / "out")
    assert ids == {"1000_a.jpg"}
    assert len(skipped) == 2 and all(r.startswith(LEAVES) for r in skipped.values()), skipped


def test_an_image_folder_linked_from_elsewhere_needs_follow_symlinks(tmp_path, secret):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "Images").symlink_to(secret.parent, target_is_directory=True)
    (root / "Flickr8k.token.txt").write_text("secret.jpg#0\tA caption .\n")
    with pytest.raises(UserError, match="follow-symlinks"):  # nothing usable: the first reason says what to do
        prepare("flickr8k", root, tmp_path / "out")
    ids, _ = prepare("flickr8k", root, tmp_path / "out", follow_symlinks=True)
    assert ids == {"secret.jpg"}
