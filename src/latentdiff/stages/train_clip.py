"""`latentdiff train-clip --data DIR --out DIR [--init DIR|HUB_ID] [--preset tiny|small|base]`.

From scratch: a CLIP-format BPE tokenizer is trained on the training captions (every language present)
and a CLIPModel is built from the preset. With --init: the checkpoint's model, tokenizer and image
processor, fine-tuned with the seed recipe's defaults (batch 8, lr 1e-5, 5 epochs) unless given.
Output: a CLIPModel folder that `CLIPModel.from_pretrained(OUT)` and `CLIPProcessor.from_pretrained(OUT)`
load, `retrieval_metrics.json` (rewritten at every validation), TensorBoard logs and training state.
"""

from __future__ import annotations

from latentdiff.config import ClipTrainConfig
from latentdiff.presets import CLIP_PRESETS, lookup_preset
from latentdiff.data.prepared import open_prepared
from latentdiff.options import run_stage
from latentdiff.training.runner import run_training_stage

# transformers and the training code: imported inside the functions that use them, so `--help` and a wrong option
# are answered before their ~9 s of imports (the CLI imports this module only to run it).

def build_task(cfg: ClipTrainConfig):
    """Open the dataset, build or load the model with its tokenizer and image processor: all the checks
    a user can fail happen here, before any training."""
    from latentdiff.models.clip import build_clip, load_clip, make_image_processor
    from latentdiff.models.tokenizer import train_clip_tokenizer
    from latentdiff.training.clip_task import ClipTask

    dataset = open_prepared(cfg.data)
    train_records = dataset.require_split("train")
    dataset.require_split("validation")
    if cfg.init:
        model, tokenizer, processor = load_clip(cfg.init, allow_pickle=cfg.allow_pickle)
    else:
        preset = lookup_preset(CLIP_PRESETS, cfg.preset, "CLIP")
        # Deterministic: a resumed run trains the identical tokenizer again (seconds) instead of storing it.
        captions = [caption for record in train_records for caption in record.captions]
        tokenizer = train_clip_tokenizer(captions, preset.vocab_size, preset.max_text_tokens)
        model = build_clip(preset, tokenizer)
        processor = make_image_processor(preset.image_size)
    return ClipTask(model, tokenizer, processor, dataset)


def run(cfg: ClipTrainConfig):
    return run_training_stage(cfg, command="train-clip", artefact="CLIP model", presets=CLIP_PRESETS,
                              build_task=build_task)


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, ClipTrainConfig, argv, "latentdiff train-clip",
                     "Train a CLIP text+image encoder contrastively on a prepared dataset (from a preset or --init).")
