"""`latentdiff align-text --clip DIR --data DIR --out DIR`: a CLIP whose text encoder says one image the same way in
every caption language, for a U-Net trained on captions in several languages (`train-unet --clip OUT`).

The text transformer is fine-tuned so that an image's captions in every language give nearly the same hidden
states (what the U-Net cross-attends to), with CLIP's pooled embedding kept where it was, so CLIP retrieval
barely moves (latentdiff.training.text_alignment says how). Output: a CLIPModel folder (the input's vision tower
and projections, the aligned text transformer, its tokenizer and image processor) and `alignment_metrics.json`
(agreement between languages and retrieval, before and after). Rerunning the same command resumes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from latentdiff.config import AlignTextConfig
from latentdiff.data.prepared import caption_languages, open_prepared
from latentdiff.errors import UserError
from latentdiff.folder_kinds import folder_kind
from latentdiff.options import run_stage
from latentdiff.training.runner import already_finished, require_data_and_out, train_and_record

ARTEFACT = "aligned CLIP model"


def check(cfg: AlignTextConfig) -> None:
    """Everything a user can get wrong, answered before torch loads."""
    if cfg.init:
        raise UserError("align-text starts from the CLIP folder given with --clip DIR, not --init; pass that instead.")
    if cfg.preset:
        raise UserError("align-text keeps the size of the CLIP given with --clip, so it takes no --preset; drop it.")
    if not cfg.clip:
        raise UserError("Say which CLIP to align with --clip DIR (a folder written by `latentdiff train-clip`).")
    kind = folder_kind(Path(cfg.clip).expanduser())
    if kind != "clip":
        found = f"a {kind} folder" if kind else "not a model folder"
        raise UserError(f"--clip {cfg.clip} is {found}; pass a CLIP folder (written by `latentdiff train-clip`).")
    dataset = open_prepared(cfg.data)
    dataset.require_split("validation")
    languages = caption_languages(dataset.require_split("train"))
    if len(languages) < 2:
        raise UserError(f"The training captions of {cfg.data} are all in one language ({', '.join(languages)}), so there "
                        f"is nothing to align; align-text is for captions in several languages (e.g. `latentdiff "
                        f"prepare-data emoji --languages all`).")


def summary(measured: dict) -> str:
    parts = [f"agreement {key.split('_')[1]} top-1 {value['mean_top1']:.3f} top-5 {value['mean_top5']:.3f}"
             for key, value in measured.items() if key.startswith("agreement") and value]
    recall = measured["retrieval_validation"]
    return ", ".join(parts + [f"CLIP text-to-image R@1 {recall['text_to_image/R@1']:.3f} "
                              f"R@5 {recall['text_to_image/R@5']:.3f}"])


def run(cfg: AlignTextConfig) -> Path:
    """Returns the output folder (already finished ones are left as they are)."""
    out = require_data_and_out(cfg, f"the {ARTEFACT}")
    if already_finished(out, "align-text", ARTEFACT):
        return out
    check(cfg)
    # torch, transformers: once the options are known to be good
    from latentdiff.models.clip import load_clip
    from latentdiff.runtime import process_state, seed_everything
    from latentdiff.training.text_alignment import METRICS_FILENAME, TextAlignmentTask

    seed_everything(cfg.seed)
    state = process_state()
    teacher, tokenizer, processor = load_clip(cfg.clip, allow_pickle=cfg.allow_pickle)
    task = TextAlignmentTask(teacher, tokenizer, processor, open_prepared(cfg.data), cfg.num_agreement_images,
                             device=state.device, is_main_process=state.is_main_process)
    del teacher  # the task took its targets and starting point from it: its weights need not stay for the run
    per_process = max(1, len(task.input_ids) // state.num_processes)
    if cfg.batch_size > per_process:  # a small dataset: one batch of all its captions per step
        if state.is_main_process:
            print(f"latentdiff align-text: --batch-size {cfg.batch_size} is more than the {per_process} training "
                  f"captions of each process; using {per_process}.", flush=True)
        cfg = dataclasses.replace(cfg, batch_size=per_process)
    if state.is_main_process:
        print(f"latentdiff align-text: {len(task.input_ids)} captions of {len(task.train_records)} images; "
              f"before: {summary(task.before)}", flush=True)
    result = train_and_record(task, cfg, out)
    if result.finished and state.is_main_process:
        measured = json.loads((out / METRICS_FILENAME).read_text(encoding="utf-8"))
        print(f"latentdiff align-text: after: {summary(measured['after'])}; wrote {out} "
              f"(`latentdiff train-unet --clip {out} ...`).", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, AlignTextConfig, argv, "latentdiff align-text",
                     "Align a CLIP's text encoder across caption languages: one image's captions in every language "
                     "give nearly the same hidden states, the condition a U-Net learns from.")
