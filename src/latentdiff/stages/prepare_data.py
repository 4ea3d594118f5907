"""`latentdiff prepare-data SOURCE [PATH] --out DIR`: any captioned-image source -> a prepared dataset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

from latentdiff.config import PrepareDataConfig
from latentdiff.options import run_stage, save_config
from latentdiff.data import coco as coco_reader
from latentdiff.data import flickr8k as flickr8k_reader
from latentdiff.data import folder as folder_reader
from latentdiff.data.sources import clipart as clipart_source
from latentdiff.data.sources import emoji as emoji_source
from latentdiff.data.sources import fashion_mnist as fashion_mnist_source
from latentdiff.data.sources import shapes as shapes_source
from latentdiff.data.writer import SourceResult, check_out_folder, write_prepared_dataset
from latentdiff.errors import UserError

# Each source: the options it uses, taken from the command's config and handed on as plain arguments (the
# readers know nothing of the CLI). Readers of user datasets need PATH.
USER_SOURCES: dict[str, Callable[[PrepareDataConfig], SourceResult]] = {
    "flickr8k": lambda cfg: flickr8k_reader.read(cfg.path, follow_symlinks=cfg.follow_symlinks),
    "coco": lambda cfg: coco_reader.read(cfg.path, seed=cfg.seed, follow_symlinks=cfg.follow_symlinks),
    "folder": lambda cfg: folder_reader.read(cfg.path, follow_symlinks=cfg.follow_symlinks),
}
BUILTIN_SOURCES: dict[str, Callable[[PrepareDataConfig], SourceResult]] = {
    "shapes": lambda cfg: shapes_source.read(num_images=cfg.num_images, image_size=cfg.image_size, seed=cfg.seed,
                                             max_images=cfg.max_images, languages=cfg.languages),
    "emoji": lambda cfg: emoji_source.read(languages=cfg.languages),
    "clipart": lambda cfg: clipart_source.read(image_size=cfg.image_size, languages=cfg.languages),
    "fashion-mnist": lambda cfg: fashion_mnist_source.read(languages=cfg.languages),
}


def run(cfg: PrepareDataConfig) -> dict:
    sources = {**USER_SOURCES, **BUILTIN_SOURCES}
    if cfg.source not in sources:
        raise UserError(f"Unknown source '{cfg.source}'; choose a built-in source ({', '.join(BUILTIN_SOURCES)}) "
                        f"or a dataset kind followed by its folder ({', '.join(USER_SOURCES)}).")
    if not cfg.out:
        raise UserError("Say where to write the dataset with --out DIR.")
    if cfg.source in USER_SOURCES:
        if not cfg.path:
            raise UserError(f"Give the folder of your {cfg.source} dataset: `latentdiff prepare-data {cfg.source} PATH --out DIR`.")
        if not Path(cfg.path).expanduser().exists():
            raise UserError(f"{cfg.path} does not exist; give the folder that holds your {cfg.source} dataset.")
    elif cfg.path:
        raise UserError(f"The built-in source '{cfg.source}' takes no PATH; drop '{cfg.path}'.")
    if cfg.samples_per_shard < 1:
        raise UserError(f"--samples-per-shard must be at least 1 (got {cfg.samples_per_shard}); 1000 is a good size.")
    if not 8 <= cfg.image_size <= 4096:
        raise UserError(f"--image-size {cfg.image_size} is out of range; use a size between 8 and 4096 pixels (e.g. 64).")

    try:
        check_out_folder(cfg.out, cfg.path)  # before any work: the source and the user's files are never replaced
        result = sources[cfg.source](cfg)
        manifest = write_prepared_dataset(result, cfg.out, cfg.image_size, seed=cfg.seed, max_images=cfg.max_images,
                                          format=cfg.format, samples_per_shard=cfg.samples_per_shard)
    except OSError as err:  # a caption file or the output folder we cannot read or write (bad images are skipped)
        where = f" {err.filename}" if err.filename else ""
        raise UserError(f"Could not read or write{where} ({err.strerror or err}); check that the path exists and that "
                        f"you may read the dataset and write --out {cfg.out}.") from None
    save_config(cfg, cfg.out)
    print(summary_line(manifest, cfg.out))
    return manifest


def summary_line(manifest: dict, out: str) -> str:
    counts = manifest["counts"]
    total = sum(counts.values())
    line = (f"prepared {total} images ({', '.join(f'{split} {n}' for split, n in counts.items())}) "
            f"from {manifest['source']} in {out}")
    skipped = manifest["skipped"]
    if skipped:
        reasons = Counter(s["reason"].split(" (")[0] for s in skipped).most_common(3)
        line += f"; skipped {len(skipped)} items ({'; '.join(f'{n}x {r}' for r, n in reasons)}), listed in manifest.json"
    return line


def main(argv: list[str] | None = None) -> int:
    return run_stage(run, PrepareDataConfig, argv, "latentdiff prepare-data",
                     "Turn a built-in source or your captioned images into a prepared dataset "
                     "(an imagefolder tree with metadata.jsonl + manifest.json, or tar shards with --format webdataset).")
