"""folder_kinds tells a pipeline, a run, a CLIP, a VAE and a U-Net folder apart from their marker files."""

from __future__ import annotations

import json

from latentdiff.folder_kinds import folder_kind


def test_each_kind_of_folder_is_told_by_its_marker_file(tmp_path):
    def folder(name: str, files: dict[str, object]):
        path = tmp_path / name
        for rel, content in files.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    assert folder_kind(folder("pipe", {"model_index.json": {}})) == "pipeline"
    assert folder_kind(folder("run", {"pipeline/model_index.json": {}, "clip/config.json": {"model_type": "clip"}})) == "run"
    assert folder_kind(folder("clip", {"config.json": {"model_type": "clip"}})) == "clip"
    assert folder_kind(folder("vae", {"config.json": {"_class_name": "AutoencoderKL"}})) == "vae"
    assert folder_kind(folder("unet", {"config.json": {"_class_name": "UNet2DConditionModel"}})) == "unet"
    assert folder_kind(folder("other", {"config.json": {"_class_name": "ControlNetModel"}})) is None
    assert folder_kind(folder("broken", {"config.json": "{not json"})) is None
    assert folder_kind(folder("empty", {"notes.txt": "hi"})) is None
    assert folder_kind(tmp_path / "missing") is None
    assert folder_kind(tmp_path / "empty" / "notes.txt") is None  # a file
