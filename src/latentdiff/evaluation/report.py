"""Writing an evaluation: `metrics.json` (every number with its protocol), `report.md` (the table, read
by people), a grid of generated vs real images per caption, and plots.

metrics.json holds no timestamps or timings, so the same inputs write the same file byte for byte.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from latentdiff.evaluation.vae_metrics import JUST_NOTICEABLE_DELTA_E

METRICS_FILENAME = "metrics.json"
REPORT_FILENAME = "report.md"
GRID_FILENAME = "samples_grid.png"
SWEEP_PLOT_FILENAME = "guidance_sweep.png"
GRID_MAX_CAPTIONS = 16
GRID_CELL = 128  # pixels per image in the grid (small datasets are 64 px: shown at 2x)
GRID_PAIRS_PER_ROW = 4
GRID_LABEL_HEIGHT = 44
GRID_FONT_SIZE = 11


def write_metrics(out_dir: Path, payload: dict[str, Any]) -> Path:
    path = out_dir / METRICS_FILENAME
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def samples_grid(generated: list[Image.Image], real: list[Image.Image], captions: list[str]) -> Image.Image:
    """Pairs (generated | real) with the caption under each pair, GRID_PAIRS_PER_ROW pairs per row."""
    count = min(len(generated), GRID_MAX_CAPTIONS)
    cols = min(GRID_PAIRS_PER_ROW, count)
    rows = (count + cols - 1) // cols
    pair_width, cell_height = 2 * GRID_CELL + 8, GRID_CELL + GRID_LABEL_HEIGHT
    grid = Image.new("RGB", (cols * pair_width, rows * cell_height), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=GRID_FONT_SIZE)
    for i in range(count):
        x, y = (i % cols) * pair_width, (i // cols) * cell_height
        grid.paste(generated[i].convert("RGB").resize((GRID_CELL, GRID_CELL), Image.NEAREST), (x, y))
        grid.paste(real[i].convert("RGB").resize((GRID_CELL, GRID_CELL), Image.NEAREST), (x + GRID_CELL, y))
        label = "\n".join(textwrap.wrap(f"{i}: {captions[i]}", width=40)[:3])
        draw.multiline_text((x + 2, y + GRID_CELL + 2), label, fill="black", font=font, spacing=1)
    return grid


def plot_guidance_sweep(rows: list[dict[str, Any]], path: Path) -> Path:
    """The classic trade-off curve (fd_lite0 against CLIP score over guidance scales) and prompt fidelity
    against guidance, side by side."""
    import matplotlib  # imported here: the Agg backend must be chosen before pyplot is imported

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    guidance = [row["guidance"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if all("clip_score" in row for row in rows) and any(row["clip_score"] > 0 for row in rows):
        xs, xlabel = [row["clip_score"] for row in rows], "CLIP score (in-domain, higher: closer to the prompt)"
    elif all("clip_mean_cosine" in row for row in rows):  # a weak CLIP scores every pair 0: use the raw cosine
        xs, xlabel = [row["clip_mean_cosine"] for row in rows], "CLIP mean cosine (in-domain, higher: closer to the prompt)"
    else:
        xs, xlabel = guidance, "guidance scale"
    left.plot(xs, [row["fd_lite0"] for row in rows], marker="o")
    for x, row in zip(xs, rows):
        left.annotate(f"w={row['guidance']:g}", (x, row["fd_lite0"]), textcoords="offset points", xytext=(4, 4))
    left.xaxis.set_major_locator(MaxNLocator(5))  # guidance barely moves a weak model: keep labels apart
    left.set_xlabel(xlabel)
    left.set_ylabel("fd_lite0 (lower: closer to real images)")
    left.set_title("Fidelity against prompt agreement")
    right.plot(guidance, [row["prompt_fidelity_top1"] for row in rows], marker="o", label="prompt fidelity top-1")
    right.plot(guidance, [row["prompt_fidelity_top5"] for row in rows], marker="o", label="prompt fidelity top-5")
    for k, color in ((1, "C0"), (5, "C1")):
        right.axhline(rows[0][f"prompt_fidelity_chance_top{k}"], color=color, linestyle="--", linewidth=1,
                      label=f"chance, top-{k}")
    if all(row.get("attributes_overall") is not None for row in rows):
        right.plot(guidance, [row["attributes_overall"] for row in rows], marker="o", label="attributes, overall")
    right.set_xlabel("guidance scale")
    right.set_ylim(0, 1.02)
    right.set_title("Prompt fidelity against guidance")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------- report.md


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _protocol_section(protocol: dict[str, Any]) -> list[str]:
    lines = ["## Protocol", "", "| | |", "|---|---|"]
    for key, value in protocol.items():
        lines.append(f"| {key.replace('_', ' ')} | {value if not isinstance(value, dict) else json.dumps(value)} |")
    return lines + [""]


def _generation_section(gen: dict[str, Any], real: dict[str, Any]) -> list[str]:
    fid, pf = gen["fidelity"], gen["prompt_fidelity"]
    lines = [f"## Generated images (guidance {gen['guidance']:g})", "",
             "| metric | generated | reference | how to read it |", "|---|---|---|---|",
             f"| fd_lite0, {fid['num_images']} generated vs {fid['num_images']} real | {_fmt(fid['fd_lite0'])} | | "
             f"lower is better; only comparable at the same number of images |",
             f"| fd_lite0, {fid['num_images_half']} generated vs the other {fid['num_images_half']} real | "
             f"{_fmt(fid['fd_lite0_half'])} | noise floor {_fmt(fid['noise_floor'])} | the floor is two halves of the "
             f"real images: a perfect model scores about the floor |",
             f"| prompt fidelity top-1 | {_fmt(pf['top1'])} | real {_fmt(real['prompt_fidelity']['top1'])} | "
             f"chance {_fmt(pf['chance_top1'])} |",
             f"| prompt fidelity top-5 | {_fmt(pf['top5'])} | real {_fmt(real['prompt_fidelity']['top5'])} | "
             f"chance {_fmt(pf['chance_top5'])} |"]
    if "clip_score" in gen:
        ours, theirs = gen["clip_score"], real["clip_score"]
        lines.append(f"| CLIP score (in-domain) | {_fmt(ours['score'], 2)} | real {_fmt(theirs['score'], 2)} | "
                     f"100 x max(cos, 0) with the model's own CLIP: compare models trained alike, not OpenAI-CLIP scores |")
        lines.append(f"| CLIP mean cosine (in-domain) | {_fmt(ours['mean_cosine'])} | real {_fmt(theirs['mean_cosine'])} | "
                     f"the same without the clamp at 0 |")
    if "attributes" in gen:
        for category, accuracy in gen["attributes"]["accuracy"].items():
            asked = gen["attributes"]["num_images"][category]
            lines.append(f"| attributes: {category} ({asked} images) | {_fmt(accuracy)} | "
                         f"real {_fmt(real['attributes']['accuracy'].get(category))} | GenEval-style accuracy |")
    if "fid" in gen:
        value = gen["fid"].get("value")
        lines.append(f"| FID (InceptionV3, torch-fidelity) | {_fmt(value, 2) if value is not None else 'not computed'} | | "
                     f"{gen['fid'].get('note', '')} |")
    return lines + [""]


def _sweep_section(rows: list[dict[str, Any]]) -> list[str]:
    keys = [k for k in ("guidance", "fd_lite0", "fd_lite0_half", "prompt_fidelity_top1", "prompt_fidelity_top5",
                        "clip_score", "clip_mean_cosine", "attributes_overall") if all(k in row for row in rows)]
    lines = ["## Guidance sweep", "", f"![guidance sweep]({SWEEP_PLOT_FILENAME})", "",
             "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(row[k]) for k in keys) + " |" for row in rows]
    return lines + [""]


def _retrieval_section(clip: dict[str, Any]) -> list[str]:
    lines = [f"## CLIP retrieval ({clip['num_images']} images, {clip['num_captions']} captions)", "",
             "| direction | R@1 | R@5 | R@10 | mean rank | median rank |", "|---|---|---|---|---|---|"]
    for direction, values in clip["retrieval"].items():
        lines.append(f"| {direction.replace('_', ' ')} | {_fmt(values['R@1'])} | {_fmt(values['R@5'])} | "
                     f"{_fmt(values['R@10'])} | {_fmt(values['mean_rank'], 1)} | {_fmt(values['median_rank'], 1)} |")
    real = clip["clip_score_real"]
    lines += ["", f"CLIP score of the real image-caption pairs (in-domain): {_fmt(real['score'], 2)} "
                  f"(mean cosine {_fmt(real['mean_cosine'])})", ""]
    return lines


def _vae_section(vae: dict[str, Any]) -> list[str]:
    fid = vae["fidelity"]
    return ["## VAE reconstructions", "", "| metric | value | reference |", "|---|---|---|",
            f"| PSNR (dB) | {_fmt(vae['psnr_db'], 2)} | higher is better |",
            f"| SSIM (Wang et al. 2004) | {_fmt(vae['ssim'])} | 1 is identical |",
            f"| mean ΔE2000 (CIELAB colour error) | {_fmt(vae.get('delta_e2000'), 2)} | below {JUST_NOTICEABLE_DELTA_E:g}: not noticeable |",
            f"| mean ΔE2000 on saturated pixels ({_fmt(vae.get('saturated_fraction'), 2)} of them) | "
            f"{_fmt(vae.get('delta_e2000_saturated'), 2)} | hue shifts show here first |",
            f"| mean ΔE2000 on flat pixels ({_fmt(vae.get('flat_fraction'), 2)} of them: no visible step to a "
            f"neighbour) | {_fmt(vae.get('delta_e2000_flat'), 2)} | the colour of areas, apart from blurred edges |",
            f"| fd_lite0, {fid['num_images']} reconstructions vs originals | {_fmt(fid['fd_lite0'])} | |",
            f"| fd_lite0, {fid['num_images_half']} reconstructions vs the other {fid['num_images_half']} real | "
            f"{_fmt(fid['fd_lite0_half'])} | noise floor {_fmt(fid['noise_floor'])} |",
            *[f"| attributes of the reconstructions: {category} ({vae['attributes']['num_images'][category]} images) | "
              f"{_fmt(accuracy)} | what a generation in this latent space can reach at most |"
              for category, accuracy in vae.get("attributes", {}).get("accuracy", {}).items()], ""]


def write_report(out_dir: Path, payload: dict[str, Any], *, title: str, grid_caption: str | None) -> Path:
    """report.md; `grid_caption` says what the pairs of the samples grid are (None: no grid written)."""
    intro = "Every number below was measured with the protocol at the end; `metrics.json` holds the same numbers."
    if "generation" in payload or "vae" in payload:
        intro += (" `fd_lite0` is a Fréchet distance on EfficientNet-Lite0 ImageNet features: it is not FID and is "
                  "not comparable with published FIDs.")
    lines = [f"# Evaluation: {title}", "", intro, ""]
    if "generation" in payload:
        lines += _generation_section(payload["generation"], payload["real_reference"])
    if grid_caption:
        lines += ["## Samples", "", grid_caption, "",
                  f"![generated vs real]({GRID_FILENAME})", ""]
    if payload.get("guidance_sweep"):
        lines += _sweep_section(payload["guidance_sweep"])
    if "clip" in payload:
        lines += _retrieval_section(payload["clip"])
    if "vae" in payload:
        lines += _vae_section(payload["vae"])
    if payload.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in payload["notes"]] + [""]
    lines += _protocol_section(payload["protocol"])
    path = out_dir / REPORT_FILENAME
    path.write_text("\n".join(lines))
    return path
