"""`latentdiff train-clip`: a tiny CLIP learns the tiny dataset, the folder loads with transformers,
`--init` fine-tunes from it, and user mistakes end in one sentence."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.clip_data import write_tiny_clip_dataset
from safetensors.torch import load_file

from latentdiff import checkpoint
from latentdiff.config import ClipTrainConfig
from latentdiff.errors import UserError
from latentdiff.stages import train_clip

STEPS = 30


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_clip_dataset(tmp_path_factory.mktemp("clipdata") / "data")


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("clip") / "clip"
    assert train_clip.main(["--data", str(data_dir), "--out", str(out), "--preset", "tiny", "--max-steps", str(STEPS),
                            "--batch-size", "16", "--lr", "2e-3", "--validate-every", "10", "--checkpoint-every", "10"]) == 0
    return out


def _logit_matrix(folder, data_dir):
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    rows = [json.loads(line) for line in (data_dir / "validation" / "metadata.jsonl").read_text().splitlines()][:8]
    images = [Image.open(data_dir / "validation" / r["file_name"]) for r in rows]
    captions = [r["text"][0] for r in rows]
    inputs = processor(text=captions, images=images, return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        return model(**inputs).logits_per_image  # (8 images, 8 captions)


def test_from_scratch_learns_beyond_chance_and_saves_a_standard_clip_folder(trained, data_dir):
    names = {p.name for p in trained.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json", "vocab.json",
            "merges.txt", "retrieval_metrics.json", "latentdiff_config.json"} <= names
    assert not any(name.endswith(".bin") for name in names)
    metrics = json.loads((trained / "retrieval_metrics.json").read_text())
    assert metrics["step"] == STEPS and metrics["num_images"] == 16 and metrics["num_captions"] == 32
    # chance: R@1 = 1/16 for text->image, mean rank 8.5; colours alone give 1/4 within two images
    assert metrics["text_to_image"]["R@1"] > 0.2
    assert metrics["text_to_image"]["mean_rank"] < 5.0
    assert metrics["image_to_text"]["mean_rank"] < 8.0
    # the saved folder, loaded with plain transformers, prefers each image's own caption
    logits = _logit_matrix(trained, data_dir)
    assert (logits.argmax(dim=1) == torch.arange(8)).float().mean() >= 0.5


def test_tokenizer_was_trained_on_all_caption_languages(trained):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(trained)
    vocab = tok.get_vocab()
    assert "red</w>" in vocab
    assert len(tok("红色的方块").input_ids) - 2 < len("红色的方块".encode())  # merged, not raw bytes


def test_rerun_of_a_finished_stage_does_nothing(trained, data_dir, capsys):
    before = (trained / "model.safetensors").read_bytes()
    assert train_clip.main(["--data", str(data_dir), "--out", str(trained), "--max-steps", str(STEPS)]) == 0
    assert "already holds a finished CLIP model" in capsys.readouterr().out
    assert (trained / "model.safetensors").read_bytes() == before


def test_init_fine_tunes_from_a_local_folder_with_recipe_defaults(trained, data_dir, tmp_path):
    out = tmp_path / "finetuned"
    assert train_clip.main(["--data", str(data_dir), "--out", str(out), "--init", str(trained), "--max-steps", "4",
                            "--validate-every", "0"]) == 0
    saved = json.loads((out / "latentdiff_config.json").read_text())["config"]
    assert (saved["batch_size"], saved["lr"], saved["epochs"]) == (8, 1e-5, 5)
    assert (out / "vocab.json").read_text() == (trained / "vocab.json").read_text()  # the checkpoint's tokenizer
    before, after = load_file(trained / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    deltas = [float((after[k] - before[k]).abs().max()) for k in before]
    assert 0 < max(deltas) < 1e-2  # moved, a little (lr 1e-5, 4 steps)
    assert checkpoint.is_stage_complete(out)


def test_user_errors_are_one_sentence(data_dir, tmp_path):
    with pytest.raises(UserError, match="not a prepared dataset"):
        train_clip.run(ClipTrainConfig(data=str(tmp_path), out=str(tmp_path / "o")))
    with pytest.raises(UserError, match="--data"):
        train_clip.run(ClipTrainConfig(out=str(tmp_path / "o")))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(UserError, match="pickled.*--allow-pickle"):
        train_clip.run(ClipTrainConfig(data=str(data_dir), out=str(tmp_path / "o"), init=str(pickled)))


def test_cli_reports_a_missing_dataset_without_traceback(tmp_path, capsys):
    assert train_clip.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "prepare-data" in err and "Traceback" not in err


def test_loading_a_clip_folder_prints_no_torchvision_advice_or_per_tensor_bar(trained):
    # train-unet, evaluate and train-clip --init all load a CLIP folder this way. Without torchvision (which the
    # CPU torch wheel cannot have beside it) transformers 5 told users to install it whenever CLIPImageProcessor
    # was named, and drew a "Loading weights" bar for a model that loads in a second.
    import subprocess
    import sys

    code = ("from latentdiff.models.clip import load_clip; "
            f"model, tokenizer, processor = load_clip({str(trained)!r}); print(type(processor).__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ImageProcessor" in done.stdout
    assert "torchvision" not in done.stderr and "Loading weights" not in done.stderr, done.stderr


def test_loading_a_clip_folder_with_a_missing_weight_still_says_so(trained, tmp_path):
    # Hiding the loading bar must not hide transformers' report of weights a checkpoint lacks (they are random).
    import shutil
    import subprocess
    import sys

    from safetensors.torch import save_file

    folder = tmp_path / "clip"
    shutil.copytree(trained, folder)
    weights = load_file(folder / "model.safetensors")
    missing = next(name for name in weights if name.startswith("vision_model."))
    del weights[missing]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    code = f"from latentdiff.models.clip import load_clip; load_clip({str(folder)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert missing in done.stderr, done.stderr
