"""`latentdiff export` and `--backend onnx|openvino`: the exported folder runs in the runtimes' own APIs,
outside latentdiff, and draws what PyTorch draws (within 1/255); latentdiff's backends reuse the export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentdiff.errors import UserError

pytest.importorskip("onnxruntime")

STEPS = 4
GUIDANCE = 7.5
PROMPTS = ["a red circle on a white background", "two small purple hearts"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """Exports made on the fly go here, not into the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("export_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LATENTDIFF_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def exports(tiny_pipeline_dir, tmp_path_factory) -> dict:
    """format -> folder written by `latentdiff export` (the check is what the tests below do in detail)."""
    from latentdiff.stages.export import main

    out = {}
    for fmt in ("onnx", "openvino"):
        folder = tmp_path_factory.mktemp("exports") / f"tiny-{fmt}"
        assert main([str(tiny_pipeline_dir), "--format", fmt, "--out", str(folder), "--skip-check"]) == 0
        out[fmt] = folder
    return out


def _pixels(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8, as diffusers' image processor rounds them."""
    from diffusers.image_processor import VaeImageProcessor

    return np.stack([np.asarray(image) for image in VaeImageProcessor().postprocess(images, output_type="pil")])


def _torch_images(pipeline_dir, latents: torch.Tensor) -> np.ndarray:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(pipeline_dir)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(PROMPTS, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=latents.clone(),
                  output_type="pt").images  # (B, 3, H, W) in [0, 1]
    return _pixels(images * 2 - 1)


def _runtime_images(folder, run, latents: torch.Tensor) -> np.ndarray:
    """A plain classifier-free-guidance DDIM loop over three runtime calls: nothing from latentdiff.
    `run(component, **inputs)` -> list of numpy outputs."""
    from diffusers import DDIMScheduler
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
    vae_config = json.loads((folder / "vae_decoder" / "config.json").read_text())

    def encode(texts):  # (B, T, D)
        ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="np").input_ids
        return run("text_encoder", input_ids=ids.astype(np.int64))[0]

    text = np.concatenate([encode([""] * len(PROMPTS)), encode(PROMPTS)])  # unconditional first, as diffusers
    scheduler.set_timesteps(STEPS)
    x = latents.clone() * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(torch.cat([x, x]), t).numpy()
        noise = torch.from_numpy(run("unet", sample=model_in, timestep=np.array(t, np.float32),
                                     encoder_hidden_states=text)[0])
        uncond, cond = noise.chunk(2)
        x = scheduler.step(uncond + GUIDANCE * (cond - uncond), t, x).prev_sample
    images = run("vae_decoder", latent_sample=(x / vae_config["scaling_factor"]).numpy())[0]
    return _pixels(torch.from_numpy(images))


def _latents(folder) -> torch.Tensor:
    unet = json.loads((folder / "unet" / "config.json").read_text())
    side = unet["sample_size"]
    return torch.randn(len(PROMPTS), unet["in_channels"], side, side, generator=torch.Generator().manual_seed(3))


def test_onnx_export_runs_in_onnxruntime_alone_within_1_of_255(tiny_pipeline_dir, exports):
    import onnxruntime as ort

    folder = exports["onnx"]
    sessions = {c: ort.InferenceSession(str(folder / c / "model.onnx"), providers=["CPUExecutionProvider"])
                for c in ("text_encoder", "unet", "vae_decoder")}
    latents = _latents(folder)
    ours = _runtime_images(folder, lambda c, **inputs: sessions[c].run(None, inputs), latents)
    reference = _torch_images(tiny_pipeline_dir, latents)
    assert ours.shape == reference.shape == (len(PROMPTS), 64, 64, 3)
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1
    assert np.abs(reference[0].astype(int) - reference[1].astype(int)).max() > 10  # prompts draw different images


def test_openvino_export_runs_in_openvino_core_alone_within_1_of_255(tiny_pipeline_dir, exports):
    ov = pytest.importorskip("openvino")

    folder = exports["openvino"]
    assert not list(folder.rglob("*.onnx"))  # IR only
    core = ov.Core()
    compiled = {c: core.compile_model(str(folder / c / "openvino_model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                for c in ("text_encoder", "unet", "vae_decoder")}

    def run(component, **inputs):
        model = compiled[component]
        result = model(inputs)
        return [result[port] for port in model.outputs]

    latents = _latents(folder)
    ours = _runtime_images(folder, run, latents)
    assert np.abs(ours.astype(int) - _torch_images(tiny_pipeline_dir, latents).astype(int)).max() <= 1


def test_onnx_backend_generates_pytorchs_images_and_names_itself(tiny_pipeline_dir, exports):
    from latentdiff.pipeline import GenerationRequest, TextToImage

    request = GenerationRequest(PROMPTS, num_images=2, seed=5, steps=STEPS, scheduler="euler-a")
    reference = TextToImage.load(str(tiny_pipeline_dir), "cpu").generate(request)
    ours = TextToImage.load(str(exports["onnx"])).generate(request)  # the export's own format is picked
    for a, b in zip(ours, reference):
        assert np.abs(np.asarray(a.image, int) - np.asarray(b.image, int)).max() <= 1
        assert a.seed == b.seed
    assert ours[0].infotext.endswith("Backend: onnx") and reference[0].infotext.endswith("Backend: torch")
    assert ours[0].info.model_hash == reference[0].info.model_hash  # the source weights' hash, not the export's


def test_openvino_backend_in_the_cli_draws_pytorchs_images(tiny_pipeline_dir, exports, tmp_path):
    """In a subprocess, as a user runs it: with OpenVINO's CPU plugin loaded in the pytest process, a later
    test's forked DataLoader workers crashed the process (segfault), so it stays out of this one."""
    import os
    import subprocess
    import sys

    from PIL import Image

    from latentdiff.pipeline import GenerationRequest, TextToImage

    command = [sys.executable, "-m", "latentdiff", "generate", *PROMPTS, "--model", str(exports["openvino"]),
               "--seed", "5", "--steps", str(STEPS), "--scheduler", "euler-a", "--out", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    pngs = sorted(p for p in tmp_path.glob("0*.png"))
    reference = TextToImage.load(str(tiny_pipeline_dir), "cpu").generate(
        GenerationRequest(PROMPTS, seed=5, steps=STEPS, scheduler="euler-a"))
    assert len(pngs) == len(reference) == 2
    for png, expected in zip(pngs, reference):
        with Image.open(png) as image:
            assert "Backend: openvino" in image.text["parameters"]
            assert np.abs(np.asarray(image.convert("RGB"), int) - np.asarray(expected.image, int)).max() <= 1


def test_img2img_on_onnx_matches_pytorch(tiny_pipeline_dir, exports):
    from latentdiff.pipeline import GenerationRequest, TextToImage

    init = TextToImage.load(str(tiny_pipeline_dir), "cpu").generate(GenerationRequest(PROMPTS[:1], seed=1, steps=2))
    request = GenerationRequest(PROMPTS[1:], seed=2, steps=STEPS, init_image=init[0].image, strength=0.5)
    reference = TextToImage.load(str(tiny_pipeline_dir), "cpu").generate(request)[0].image
    ours = TextToImage.load(str(exports["onnx"]), backend="onnx").generate(request)[0].image
    assert np.abs(np.asarray(ours, int) - np.asarray(reference, int)).max() <= 1


def test_backend_on_a_pipeline_folder_exports_once_then_reuses(tiny_pipeline_dir, exports, cache_dir, monkeypatch):
    import shutil

    import latentdiff.export.exporter as exporter
    from latentdiff.pipeline import TextToImage

    calls = []

    def export_by_copy(source, out_dir, fmt, **kwargs):  # the export itself is tested above; count the calls
        calls.append((source.path, fmt))
        shutil.copytree(exports[fmt], out_dir)
        return out_dir

    monkeypatch.setattr(exporter, "export_pipeline", export_by_copy)
    first = TextToImage.load(str(tiny_pipeline_dir), backend="onnx")
    again = TextToImage.load(str(tiny_pipeline_dir), backend="onnx")
    assert calls == [(tiny_pipeline_dir.resolve(), "onnx")]  # once, from the pipeline folder
    assert first.backend == again.backend == "onnx" and again.model_hash == first.model_hash
    assert len(list((cache_dir / "exports").glob("*-onnx/unet/model.onnx"))) == 1


def test_two_first_uses_at_once_export_once_and_the_second_reuses_it(tiny_pipeline_dir, exports, tmp_path, monkeypatch):
    import shutil
    import threading
    import time

    import latentdiff.export.exporter as exporter
    from latentdiff.backends import exported_folder

    monkeypatch.setenv("LATENTDIFF_CACHE_DIR", str(tmp_path / "cache"))
    calls, results = [], []

    def slow_export_by_copy(source, out_dir, fmt, **kwargs):  # long enough for the other caller to arrive
        calls.append(fmt)
        time.sleep(1.0)
        shutil.copytree(exports[fmt], out_dir)
        return out_dir

    monkeypatch.setattr(exporter, "export_pipeline", slow_export_by_copy)
    callers = [threading.Thread(target=lambda: results.append(exported_folder(str(tiny_pipeline_dir), "onnx",
                                                                              show_progress=False)))
               for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert calls == ["onnx"]  # the second waited for the lock and found the export made
    assert sorted(cached for _, _, cached in results) == [False, True]
    assert results[0][0] == results[1][0]


def test_a_folder_with_the_same_weights_and_another_tokenizer_gets_its_own_export(tiny_pipeline_dir, exports,
                                                                                   monkeypatch, tmp_path):
    """The cache is keyed by the weights and the files beside them: the same weights with another vocabulary
    draw other pictures, so they must not be handed the first folder's export (they were, once)."""
    import shutil

    import latentdiff.export.exporter as exporter
    from latentdiff.pipeline import TextToImage

    calls = []

    def export_by_copy(source, out_dir, fmt, **kwargs):
        calls.append(source.path)
        shutil.copytree(exports[fmt], out_dir)
        return out_dir

    monkeypatch.setattr(exporter, "export_pipeline", export_by_copy)
    monkeypatch.setenv("LATENTDIFF_CACHE_DIR", str(tmp_path / "cache"))
    same, retokenized = tmp_path / "same", tmp_path / "retokenized"
    shutil.copytree(tiny_pipeline_dir, same)
    shutil.copytree(tiny_pipeline_dir, retokenized)
    path = retokenized / "tokenizer" / "tokenizer.json"  # two merged tokens swap ids, as two trainings once did
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"ed</w>"', '"@swap@"').replace('"er</w>"', '"ed</w>"').replace('"@swap@"', '"er</w>"'),
                    encoding="utf-8")
    loaded = [TextToImage.load(str(folder), backend="onnx") for folder in (tiny_pipeline_dir, same, retokenized)]
    assert len({model.model_hash for model in loaded}) == 1  # A1111's model hash: the weights only
    assert calls == [tiny_pipeline_dir.resolve(), retokenized.resolve()]  # the identical copy reused the first
    assert len(list((tmp_path / "cache" / "exports").glob("*-onnx/unet/model.onnx"))) == 2


def test_generate_cli_with_onnx_backend_writes_infotext(tiny_pipeline_dir, exports, tmp_path):
    from PIL import Image

    from latentdiff.stages.generate import main

    assert main(["a red circle", "--model", str(exports["onnx"]), "--steps", "2", "--seed", "1",
                 "--out", str(tmp_path)]) == 0
    (png,) = tmp_path.glob("*.png")
    assert "Backend: onnx" in Image.open(png).text["parameters"]


def test_user_mistakes_end_in_one_sentence(tiny_pipeline_dir, exports, monkeypatch, capsys):
    import latentdiff.backends as backends
    from latentdiff.pipeline import TextToImage
    from latentdiff.stages.export import main as export_main

    with pytest.raises(UserError, match="is an onnx export.*--backend onnx"):
        TextToImage.load(str(exports["onnx"]), backend="openvino")
    with pytest.raises(UserError, match="runs on the CPU"):
        TextToImage.load(str(exports["onnx"]), device="cuda")
    assert export_main([str(tiny_pipeline_dir), "--out", str(tiny_pipeline_dir)]) == 2  # not an export: refused
    assert "is not an earlier export" in capsys.readouterr().err

    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)  # onnxruntime not installed
    with pytest.raises(UserError, match="needs the 'onnxruntime' package.*--backend torch"):
        TextToImage.load(str(tiny_pipeline_dir), backend="onnx")


def test_evaluate_reconstructs_through_the_onnx_vae_like_pytorch(tiny_pipeline_dir, exports):
    from latentdiff.evaluation.vae_metrics import reconstruct
    from latentdiff.pipeline import TextToImage

    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # (N, 3, H, W) in [0, 1]
    reference = reconstruct(TextToImage.load(str(tiny_pipeline_dir), "cpu").pipe.vae, images)
    ours = reconstruct(TextToImage.load(str(exports["onnx"])).pipe.vae, images)
    assert (ours - reference).abs().max() < 1 / 255
    assert (reference - images).abs().max() > 0.05  # a random VAE does change the images: the check can fail


@pytest.mark.slow  # one more export of the tiny model, with its check (~10 s)
def test_fp16_weights_halve_the_files_and_stay_close_to_pytorch(tiny_pipeline_dir, exports, tmp_path, capsys):
    import onnx
    import onnxruntime as ort

    from latentdiff.stages.export import main

    folder = tmp_path / "tiny-onnx-fp16"
    assert main([str(tiny_pipeline_dir), "--format", "onnx", "--weights", "fp16", "--out", str(folder)]) == 0
    assert "differs from PyTorch's by at most" in capsys.readouterr().out
    info = json.loads((folder / "latentdiff_export.json").read_text())
    assert info["weights"] == "fp16" and info["check"]["max_pixel_difference_of_255"] <= 4
    full, half = ((f / "unet" / "model.onnx").stat().st_size for f in (exports["onnx"], folder))
    assert half < 0.6 * full
    weights = onnx.load(str(folder / "unet" / "model.onnx")).graph.initializer
    assert sum(w.data_type == onnx.TensorProto.FLOAT16 for w in weights) > len(weights) // 2
    unet = ort.InferenceSession(str(folder / "unet" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert {i.type for i in unet.get_inputs()} == {"tensor(float)"}  # callers still pass fp32
