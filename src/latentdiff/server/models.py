"""The models one server offers: `--model` (or the bundled one), every pipeline folder in `--models-dir`, and
when the served model is a bundled one, the other bundled models too (emoji, shapes: the demo server offers
both; a server of your own model does not advertise the toy ones).

A1111 clients know a model by its `title` ("name [short hash]", what `sd_model_checkpoint` holds),
OpenAI clients by an `id` (the name). Names come from each folder (model_source.model_name_of: the
name a trained pipeline stores, else its run folder's name); when two folders give the same name, the
later one is called by its path inside the models folder, so every name picks one model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from latentdiff.errors import UserError
from latentdiff.hashing import SHORT_HASH_LENGTH, model_sha256
from latentdiff.folder_kinds import MODEL_INDEX
from latentdiff.model_source import BUNDLED_MODELS, BUNDLED_NAMES, check_pipeline_folder, model_name_of

log = logging.getLogger("latentdiff.serve")

# runs/NAME/pipeline is two levels below the models folder; deeper folders are checkpoints and samples
MAX_DEPTH = 3


@dataclass(frozen=True)
class ServedModel:
    name: str
    path: Path  # a checked pipeline folder (never shown to clients: the API does not reveal the file system)
    aliases: tuple[str, ...] = ()  # more names it answers to: a bundled model's short name (`shapes`)

    @property
    def sha256(self) -> str:
        return model_sha256(self.path)  # cached per (file, size, mtime): each model is hashed once

    @property
    def short_hash(self) -> str:
        return self.sha256[:SHORT_HASH_LENGTH]

    @property
    def title(self) -> str:
        return f"{self.name} [{self.short_hash}]"

    def answers_to(self, text: str) -> bool:
        """A1111 accepts a checkpoint's title, its name or its hash (modules/sd_models.py
        `get_closet_checkpoint_match`); clients that lower-case names (webuiapi) still match."""
        return text.strip().lower() in {self.title.lower(), self.name.lower(), self.short_hash, self.sha256}


def find_pipeline_folders(models_dir: Path) -> list[Path]:
    """Every folder holding a model_index.json up to MAX_DEPTH levels inside `models_dir`, sorted."""
    found = []
    for depth in range(1, MAX_DEPTH + 1):
        found.extend(index.parent for index in models_dir.glob("/".join(["*"] * depth) + "/" + MODEL_INDEX))
    return sorted(found)


def discover_models(main_path: Path, main_name: str, models_dir: str | None) -> list[ServedModel]:
    """The loaded model first, then the other bundled models if it is one, then the pipeline folders of
    `models_dir` (incomplete ones are skipped with a warning naming what is wrong)."""
    main_path = main_path.resolve()
    bundled = {folder.resolve(): short for short, folder in BUNDLED_MODELS.items() if (folder / MODEL_INDEX).is_file()}
    models = [ServedModel(main_name, main_path, (bundled[main_path],) if main_path in bundled else ())]
    if main_path in bundled:
        models += [ServedModel(BUNDLED_NAMES[short], folder, (short,)) for folder, short in bundled.items()
                   if folder != main_path]
    if not models_dir:
        return models
    root = Path(models_dir).expanduser()
    if not root.is_dir():
        raise UserError(f"--models-dir {models_dir} is not a folder; pass the folder that holds your pipeline "
                        f"folders (e.g. runs/).")
    names = {model.name.lower() for model in models}
    for folder in find_pipeline_folders(root):
        try:
            path = check_pipeline_folder(folder)
        except UserError as err:
            log.warning("Skipping %s: %s", folder, err)
            continue
        if any(model.path == path for model in models):
            continue
        name = model_name_of(path)
        if name.lower() in names:
            name = path.relative_to(root.resolve()).as_posix()
        names.add(name.lower())
        models.append(ServedModel(name, path))
    return models


def find_model(models: list[ServedModel], wanted: str) -> ServedModel | None:
    """By title, name or hash first; a bundled model's short name (`shapes`) only when no model is called that,
    so a models-dir run named `shapes` is not shadowed by the bundled one."""
    alias = wanted.strip().lower()
    return (next((model for model in models if model.answers_to(wanted)), None)
            or next((model for model in models if alias in model.aliases), None))
