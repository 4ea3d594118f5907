"""Where a pipeline comes from: a local folder, a Hugging Face Hub id, or the bundled default model.

Every source ends as a local `StableDiffusionPipeline` folder that is checked *before* anything heavy
is loaded, so a user with a wrong `--model` gets one sentence naming what is missing, not a traceback
from deep inside diffusers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from latentdiff.errors import UserError
from latentdiff.folder_kinds import MODEL_INDEX
from latentdiff.generation_defaults import DEFAULT_GUIDANCE
from latentdiff.limits import MAX_GUIDANCE
from latentdiff.models.weights import pickle_only_files

# the package folder that holds the bundled small trained pipeline (`latentdiff generate` with no --model)
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
# the bundled models by name (`--model shapes`): emoji is the default one, shapes draws compositional scenes
BUNDLED_MODELS = {"emoji": DEFAULT_MODEL_DIR, "shapes": Path(__file__).resolve().parent / "shapes_model"}
BUNDLED_NAMES = {"emoji": "latentdiff-default", "shapes": "latentdiff-shapes"}  # what infotext calls each
# beside model_index.json: what latentdiff calls the model, and the guidance scale it draws best at (diffusers
# ignores files it does not know): {"name": "shapes", "guidance": 2.0}
MODEL_INFO = "latentdiff_model.json"
# the folder `latentdiff train` exports into (runs/NAME/pipeline): its parent folder names the run
PIPELINE_FOLDER_NAME = "pipeline"

# component -> (files of which at least one must exist, needs safetensors weights)
REQUIRED_COMPONENTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "unet": (("config.json",), True),
    "vae": (("config.json",), True),
    "text_encoder": (("config.json",), True),
    "tokenizer": (("tokenizer.json", "vocab.json", "tokenizer_config.json"), False),
    "scheduler": (("scheduler_config.json",), False),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    path: Path  # a local, checked pipeline folder
    name: str  # what infotext calls it: the folder name or the hub id
    hash: str | None = None  # the weights' short hash when known without reading `path` (an export's source)


def resolve_model(model: str | None) -> ModelSource:
    """A checked local pipeline folder for `--model` (folder, hub id, or None for the bundled default)."""
    if not model:
        if not (DEFAULT_MODEL_DIR / MODEL_INDEX).is_file():
            raise UserError(f"This install has no bundled default model ({DEFAULT_MODEL_DIR} is missing); pass --model with a pipeline folder "
                            "(written by `latentdiff train` or `train-unet`) or a Hugging Face Hub id.")
        return ModelSource(check_pipeline_folder(DEFAULT_MODEL_DIR), "latentdiff-default")
    path = Path(model).expanduser()
    if path.exists():  # a folder wins over a bundled model's name, as a local folder wins over a hub id
        folder = check_pipeline_folder(path)
        return ModelSource(folder, model_name_of(folder))
    if model in BUNDLED_MODELS:
        return bundled_model(model)
    if _HUB_ID.match(model):
        return ModelSource(check_pipeline_folder(_download(model)), model)
    raise UserError(f"Model '{model}' is neither an existing folder, a bundled model ({', '.join(BUNDLED_MODELS)}) "
                    f"nor a Hugging Face Hub id (owner/name); pass a pipeline folder written by `latentdiff train` "
                    f"or `train-unet`.")


def bundled_model(name: str) -> ModelSource:
    folder = BUNDLED_MODELS[name]
    if not (folder / MODEL_INDEX).is_file():
        raise UserError(f"This install does not bundle the '{name}' model ({folder} is missing); pass --model "
                        f"with a pipeline folder (written by `latentdiff train`) instead.")
    return ModelSource(check_pipeline_folder(folder), BUNDLED_NAMES[name])


def run_name(out_dir: Path) -> str:
    """The name of the run a pipeline folder belongs to: `runs/shapes/pipeline` -> 'shapes' (`latentdiff
    train`'s layout), `runs/shapes-unet` -> 'shapes-unet' (`train-unet --out`)."""
    out_dir = Path(out_dir).resolve()
    return out_dir.parent.name if out_dir.name == PIPELINE_FOLDER_NAME and out_dir.parent.name else out_dir.name


def write_model_name(out_dir: Path, name: str | None = None) -> None:
    """Store the model's name in the pipeline folder (default: its run's name), so every later use
    (serve's model list, infotext `Model:`, evaluation reports) calls it that, wherever it is copied."""
    (Path(out_dir) / MODEL_INFO).write_text(json.dumps({"name": name or run_name(out_dir)}, indent=2) + "\n")


def model_info(folder: Path) -> dict:
    """The folder's `latentdiff_model.json` ({} when it has none or it is not a JSON object)."""
    try:
        info = json.loads((Path(folder) / MODEL_INFO).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def model_name_of(folder: Path) -> str:
    """The name stored by `write_model_name`, else the run's name from the folder's path."""
    name = model_info(folder).get("name")
    return name.strip() if isinstance(name, str) and name.strip() else run_name(folder)


def model_guidance(folder: Path) -> float | None:
    """The guidance scale stored as "guidance" in the folder's `latentdiff_model.json`: the one its maker
    measured best (the bundled models': `latentdiff evaluate --guidance-sweep`), or None."""
    guidance = model_info(folder).get("guidance")
    if isinstance(guidance, (int, float)) and not isinstance(guidance, bool) and 0 <= guidance <= MAX_GUIDANCE:
        return float(guidance)
    return None


def guidance_for(folder: Path) -> float:
    """The guidance scale a model is run at when none is given: its own (`model_guidance`), else
    DEFAULT_GUIDANCE, as in diffusers."""
    guidance = model_guidance(folder)
    return DEFAULT_GUIDANCE if guidance is None else guidance


def _download(hub_id: str) -> Path:
    """Fetch (or find in the local Hugging Face cache) only the files the pipeline needs."""
    from latentdiff.models.weights import stable_diffusion_pipeline_class  # only for hub ids: no diffusers otherwise

    try:
        return Path(stable_diffusion_pipeline_class().download(hub_id, use_safetensors=True))
    except Exception as err:  # network, auth, missing repo: all mean "cannot get this id"
        raise UserError(f"Could not get '{hub_id}' from the Hugging Face Hub or its local cache ({error_reason(err)}); "
                        f"check the id and your network, or pass a local pipeline folder.") from err


def unfinished_run_sentence(path: Path) -> str | None:
    """What to do with a train-unet run folder that has checkpoints but has not exported yet (stopped, or still
    running: it writes its pipeline only at the end), or None for any other folder."""
    from latentdiff import checkpoint

    checkpoints = checkpoint.list_checkpoints(path)
    if not checkpoints or checkpoint.is_stage_complete(path):
        return None
    step, latest = checkpoints[-1]
    try:
        state = checkpoint.read_state(latest)
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("task") != "unet":
        return None
    of = f" of {state['num_steps']}" if isinstance(state.get("num_steps"), int) else ""
    return (f"Model folder '{path}' is a train-unet run that has not finished: its last checkpoint is step {step}{of} "
            f"({latest.name} under {checkpoint.STATE_DIRNAME}/), and it writes its pipeline there only when it ends; "
            f"if it is not still running, rerun the same training command to finish it, or write a pipeline of that "
            f"checkpoint with `latentdiff export-checkpoint {path} --out DIR` and pass DIR.")


def check_pipeline_folder(path: Path) -> Path:
    """Raise a one-sentence UserError unless `path` is a complete diffusers StableDiffusionPipeline folder
    with safetensors weights; return it resolved."""
    path = path.resolve()
    if not path.is_dir():
        raise UserError(f"Model '{path}' is a file, not a pipeline folder; pass the folder that holds {MODEL_INDEX}.")
    index_file = path / MODEL_INDEX
    if not index_file.is_file():
        unfinished = unfinished_run_sentence(path)
        if unfinished:
            raise UserError(unfinished)
        raise UserError(f"Model folder '{path}' has no {MODEL_INDEX}, so it is not a diffusers pipeline; pass the "
                        f"folder written by `latentdiff train` or `train-unet`.")
    try:
        index = json.loads(index_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"Model folder '{path}' has an unreadable {MODEL_INDEX} ({err}); re-export the pipeline.") from err

    missing, pickled = [], []
    for component, (config_files, needs_weights) in REQUIRED_COMPONENTS.items():
        folder = path / component
        entry = index.get(component)
        if not isinstance(entry, list) or entry[0] is None or not folder.is_dir() \
                or not any((folder / name).is_file() for name in config_files):
            missing.append(f"{component}/")
            continue
        if needs_weights and not any(folder.glob("*.safetensors")):
            if pickle_only_files(folder):
                pickled.append(f"{component}/")
            else:
                missing.append(f"{component}/ weights")
    if missing:
        raise UserError(f"Model folder '{path}' is incomplete: it is missing {', '.join(missing)}; pass a complete "
                        f"pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/).")
    if pickled:
        raise UserError(f"Model folder '{path}' stores {', '.join(pickled)} as pickled weights, which latentdiff does "
                        f"not load; convert them to safetensors (save_pretrained(..., safe_serialization=True)).")
    return path


def error_reason(err: BaseException, limit: int = 120) -> str:
    """The first line of an exception's message, cut at a word boundary: a clause for a one-sentence error."""
    text = str(err).strip()
    line = text.splitlines()[0].rstrip(".") if text else type(err).__name__
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " ..."
