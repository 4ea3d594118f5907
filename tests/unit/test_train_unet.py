"""`latentdiff train-unet` with the tiny preset: trains a few steps into a pipeline folder that
`StableDiffusionPipeline.from_pretrained(dir)` loads and that generates 64x64 images; bad inputs end in
one sentence before any training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.tensorboard_log import logged_images
from helpers.unet_components import tiny_unet_argv, write_tiny_clip, write_tiny_vae, write_unet_inputs
from latentdiff.stages import train_unet


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_unet_inputs(tmp_path_factory.mktemp("unet_inputs"))


@pytest.fixture(scope="module")
def trained(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("unet_run") / "pipeline"
    argv = tiny_unet_argv(inputs, out, "--prediction-type", "v_prediction", "--snr-gamma", "5",
                          "--noise-offset", "0.05", "--input-perturbation", "0.1", "--cache-dir", str(out.parent / "cache"))
    assert train_unet.main(argv) == 0
    return out, argv


def test_exported_pipeline_loads_and_generates(trained):
    from diffusers import StableDiffusionPipeline

    out, _ = trained
    pipe = StableDiffusionPipeline.from_pretrained(out)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.safety_checker is None
    for component in ("unet", "vae", "text_encoder"):
        assert list((out / component).glob("*.safetensors")), component
    pipe.set_progress_bar_config(disable=True)
    images = [np.asarray(pipe(prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0])
              for prompt in ("a red square", "a blue circle")]
    assert images[0].shape == (64, 64, 3)
    assert not np.array_equal(images[0], images[1])  # the text conditions the image


def test_exported_pipeline_is_named_after_its_run(trained):
    from latentdiff.model_source import model_name_of

    out, _ = trained  # <tmp>/unet_runN/pipeline, as `latentdiff train` lays out runs/NAME/pipeline
    stored = json.loads((out / "latentdiff_model.json").read_text())
    assert stored["name"] == out.parent.name != "pipeline"
    assert model_name_of(out) == out.parent.name


def test_run_writes_config_validation_and_samples(trained):
    out, _ = trained
    config = json.loads((out / "latentdiff_config.json").read_text())["config"]
    assert config["prediction_type"] == "v_prediction" and config["batch_size"] == 4
    metrics = [json.loads(line) for line in (out / "validation_metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 4 and np.isfinite(metrics[-1]["loss"]) and "loss_t500" in metrics[-1]
    last_png = sorted((out / "samples").glob("step_*.png"))[-1]
    step, logged = logged_images(out / "logs")["val/samples"][-1]  # the same grid in TensorBoard's Images tab
    assert step == 4 and np.array_equal(np.asarray(logged.convert("RGB")), np.asarray(Image.open(last_png).convert("RGB")))


def test_an_unfinished_run_folder_given_as_a_model_says_where_it_stopped(trained, tmp_path):
    """A train-unet --out folder that has checkpoints but no pipeline yet (stopped, or still running) is named as
    such, with its last step and how to finish it, instead of 'not a diffusers pipeline'."""
    import shutil

    from latentdiff.errors import UserError
    from latentdiff.model_source import check_pipeline_folder

    run = tmp_path / "run"
    run.mkdir()
    for kept in ("training_state", "logs"):  # what a run holds before its export: checkpoints and TensorBoard logs
        shutil.copytree(trained[0] / kept, run / kept)
    with pytest.raises(UserError, match=r"train-unet run that has not finished: its last checkpoint is step 4 of 4 "
                                        r"\(step-000004 under training_state/\).*rerun the same training command.*"
                                        r"latentdiff export-checkpoint .* --out DIR"):
        check_pipeline_folder(run)
    # a finished run without its model_index.json is not "unfinished": the general sentence
    shutil.copy(trained[0] / "latentdiff_complete.json", run)
    with pytest.raises(UserError, match="has no model_index.json, so it is not a diffusers pipeline"):
        check_pipeline_folder(run)


def test_export_checkpoint_writes_the_pipeline_the_run_exports(trained, tmp_path):
    """`latentdiff export-checkpoint` on the run's last checkpoint gives the U-Net the run itself exported (its EMA
    weights), in a pipeline that loads and generates; --weights raw gives the optimizer's weights instead."""
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    from latentdiff.stages import export_checkpoint

    run, _ = trained
    snapshot = tmp_path / "step-4"
    assert export_checkpoint.main([str(run), "--out", str(snapshot)]) == 0
    weights = "unet/diffusion_pytorch_model.safetensors"
    exported, snapshotted = load_file(run / weights), load_file(snapshot / weights)
    assert exported.keys() == snapshotted.keys() and all(torch.equal(exported[k], snapshotted[k]) for k in exported)
    pipe = StableDiffusionPipeline.from_pretrained(snapshot)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red square", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (64, 64)

    raw = tmp_path / "raw"
    assert export_checkpoint.main([str(run), "--out", str(raw), "--weights", "raw", "--step", "4"]) == 0
    optimizer_weights = load_file(run / "training_state" / "step-000004" / "model.safetensors")
    raw_unet = load_file(raw / weights)
    assert all(torch.equal(raw_unet[k], optimizer_weights[k]) for k in raw_unet)
    assert not all(torch.equal(raw_unet[k], exported[k]) for k in raw_unet)  # the EMA is another average


def test_a_run_stopped_at_a_step_is_exported_there_and_goes_on_to_the_same_pipeline(trained, tmp_path, capsys):
    """`--stop-at-step 2` of the same 4-step run: exit 0 with its state saved and no pipeline; export-checkpoint writes
    step 2's; the same command without it then ends with exactly the U-Net of the run that never stopped."""
    from safetensors.torch import load_file

    from latentdiff.stages import export_checkpoint

    run, argv = trained
    stopped = tmp_path / "stopped"
    argv = [stopped.as_posix() if arg == str(run) else arg for arg in argv]
    assert train_unet.main([*argv, "--stop-at-step", "2"]) == 0
    out = capsys.readouterr().out
    assert "stopped at step 2 of 4 (--stop-at-step)" in out and "export-checkpoint" in out
    assert "pipeline written" not in out and not (stopped / "model_index.json").exists()
    # its recorded options rerun it to the end (--config), not to the same stop
    assert json.loads((stopped / "latentdiff_config.json").read_text())["config"]["stop_at_step"] == 0
    assert export_checkpoint.main([str(stopped), "--out", str(tmp_path / "step-2")]) == 0
    assert train_unet.main(argv) == 0
    weights = "unet/diffusion_pytorch_model.safetensors"
    finished, uninterrupted, midway = (load_file(folder / weights) for folder in (stopped, run, tmp_path / "step-2"))
    assert all(torch.equal(finished[k], uninterrupted[k]) for k in finished)
    assert not all(torch.equal(midway[k], finished[k]) for k in finished)


def _run_with_state(trained, tmp_path, **changes):
    """A copy of the trained run's checkpoints with fields of its last state.json changed."""
    import shutil

    run = tmp_path / "edited"
    shutil.copytree(trained[0] / "training_state", run / "training_state")
    state_file = run / "training_state" / "step-000004" / "state.json"
    state = json.loads(state_file.read_text())
    for key, value in changes.items():
        if key == "config":
            state["config"].update(value)
        else:
            state[key] = value
    state_file.write_text(json.dumps(state))
    return run


def test_export_checkpoint_mistakes_are_one_sentence(trained, tmp_path, capsys):
    from latentdiff.stages import export_checkpoint

    def error(*argv) -> str:
        capsys.readouterr()
        assert export_checkpoint.main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err

    run, _ = trained
    assert "has no checkpoint of step 3; it keeps steps 4" in error(run, "--out", tmp_path / "a", "--step", 3)
    assert "holds no training checkpoint" in error(tmp_path, "--out", tmp_path / "b")
    assert "--out is the run folder itself" in error(run, "--out", run)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert "is not empty" in error(run, "--out", tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    clip_run = _run_with_state(trained, tmp_path / "c", task="clip")
    assert "is a clip training run, not a train-unet one" in error(clip_run, "--out", tmp_path / "d")
    moved = _run_with_state(trained, tmp_path / "m", config={"clip": "runs/x/clip-aligned"})
    assert "trained with --clip runs/x/clip-aligned, which is not found from here" in error(moved, "--out", tmp_path / "e")
    assert not any((tmp_path / name).exists() for name in "abde")


@pytest.mark.slow  # 8 s: trains a U-Net with its text encoder, then exports two checkpoints
def test_export_checkpoint_of_a_run_that_trains_its_text_encoder(inputs, tmp_path):
    """Midway and at the end: the last checkpoint gives the U-Net and text encoder the run exported, an earlier one
    other weights; the folder is named after the run and step and records what trained it."""
    from safetensors.torch import load_file

    from latentdiff.model_source import model_name_of
    from latentdiff.stages import export_checkpoint

    run = tmp_path / "te-run"
    argv = tiny_unet_argv(inputs, run, "--train-text-encoder", "--checkpoint-every", "2", "--keep-checkpoints", "3",
                          "--num-validation-prompts", "0", "--cache-dir", str(tmp_path / "cache"))
    assert train_unet.main(argv) == 0
    for step in (2, 4):
        assert export_checkpoint.main([str(run), "--out", str(tmp_path / f"s{step}"), "--step", str(step)]) == 0
    for part in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        final, last, earlier = (load_file(folder / part) for folder in (run, tmp_path / "s4", tmp_path / "s2"))
        assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final), part
        assert not all(torch.equal(final[k], earlier[k]) for k in final), part
    assert model_name_of(tmp_path / "s2") == "te-run-step-2"
    recorded = json.loads((tmp_path / "s2" / "latentdiff_config.json").read_text())
    assert recorded["stage"] == "UnetTrainConfig" and recorded["config"]["train_text_encoder"] is True


def test_rerun_reuses_the_cache_and_the_finished_run(trained):
    out, argv = trained
    caches = sorted((out.parent / "cache").glob("*.safetensors"))
    assert len(caches) == 1
    before = caches[0].stat().st_mtime_ns
    assert train_unet.main(argv) == 0
    assert sorted((out.parent / "cache").glob("*.safetensors")) == caches
    assert caches[0].stat().st_mtime_ns == before


@pytest.mark.slow  # 24 s: trains until the loss drops
def test_the_loss_goes_down_on_a_tiny_set(inputs, tmp_path):
    """A user notices training works when the loss falls: 30 steps on 24 images, fixed-seed validation loss."""
    out = tmp_path / "p"
    argv = tiny_unet_argv(inputs, out, "--num-validation-prompts", "0", "--validate-every", "1",
                          "--ema-decay", "0", "--lr", "1e-3")
    argv[argv.index("--max-steps") + 1] = "30"
    assert train_unet.main(argv) == 0
    metrics = [json.loads(line) for line in (out / "validation_metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["loss"] < 0.9 * metrics[0]["loss"]


def _error(capsys, argv) -> str:
    """The one error line (progress bars of loading may precede it on stderr)."""
    capsys.readouterr()
    assert train_unet.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("latentdiff train-unet: error:")]
    assert len(lines) == 1 and lines[0].endswith(".") and lines[0].count(". ") == 0
    return lines[0]


def test_clip_too_wide_for_the_init_unet(inputs, trained, tmp_path, capsys):
    out, _ = trained
    wide_clip = write_tiny_clip(tmp_path / "wide_clip", ["a red square", "a blue circle"], text_width=64)
    argv = tiny_unet_argv({**inputs, "clip": wide_clip}, tmp_path / "o", "--init", str(out))
    err = _error(capsys, argv)
    assert "64 wide" in err and "cross_attention_dim" in err and "--clip" in err
    assert not (tmp_path / "o" / "training_state").exists()


def test_vae_with_other_latent_channels(inputs, trained, tmp_path, capsys):
    out, _ = trained
    vae8 = write_tiny_vae(tmp_path / "vae8", latent_channels=8)
    err = _error(capsys, tiny_unet_argv({**inputs, "vae": vae8}, tmp_path / "o", "--init", str(out)))
    assert "8 latent channels" in err and "--vae" in err


def test_block_out_channels_and_layers_per_block_size_a_new_unet(inputs, trained, tmp_path, capsys):
    out = tmp_path / "wide"
    assert train_unet.main(tiny_unet_argv(inputs, out, "--block-out-channels", "64,96", "--layers-per-block", "2",
                                          "--max-steps", "1")) == 0
    config = json.loads((out / "unet" / "config.json").read_text())
    assert config["block_out_channels"] == [64, 96] and config["layers_per_block"] == 2
    err = _error(capsys, tiny_unet_argv(inputs, tmp_path / "o", "--block-out-channels", "64,80"))
    assert "2 widths" in err and "multiple of 32" in err and "64,80" in err
    err = _error(capsys, tiny_unet_argv(inputs, tmp_path / "o", "--block-out-channels", "64"))
    assert "2 widths" in err
    err = _error(capsys, tiny_unet_argv(inputs, tmp_path / "o", "--layers-per-block", "2", "--init", str(trained[0])))
    assert "--init" in err and "--layers-per-block" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # ~5 s: two short runs
def test_transformer_layers_per_block_deepens_an_init_unet_without_changing_what_it_draws(inputs, trained, tmp_path,
                                                                                         capsys):
    from diffusers import UNet2DConditionModel

    from latentdiff.models.unet import count_parameters, deepen_attention

    init = UNet2DConditionModel.from_pretrained(trained[0], subfolder="unet").eval()
    deeper = deepen_attention(init, [1, 2], seed=0).eval()
    assert count_parameters(deeper) > count_parameters(init)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, init.config.in_channels, 8, 8, generator=generator)  # (B, C, h, w)
    text = torch.randn(2, 7, init.config.cross_attention_dim, generator=generator)  # (B, L, D)
    timesteps = torch.tensor([10, 900])
    with torch.no_grad():  # the added blocks start as the identity: the same prediction, bit for bit
        assert torch.equal(init(latents, timesteps, text).sample, deeper(latents, timesteps, text).sample)

    out = tmp_path / "deeper"
    assert train_unet.main(tiny_unet_argv(inputs, out, "--init", str(trained[0]), "--transformer-layers-per-block", "1,2",
                                          "--ema-decay", "0", "--max-steps", "2")) == 0
    trained_deeper = UNet2DConditionModel.from_pretrained(out, subfolder="unet")
    assert trained_deeper.config.transformer_layers_per_block == [1, 2]
    added = trained_deeper.down_blocks[1].attentions[0].transformer_blocks[1]
    assert added.attn2.to_out[0].weight.abs().sum() > 0  # zero at the start, it learnt from the first steps
    fresh = tmp_path / "fresh"  # without --init the counts shape a new U-Net
    assert train_unet.main(tiny_unet_argv(inputs, fresh, "--transformer-layers-per-block", "1,2", "--max-steps", "1")) == 0
    assert json.loads((fresh / "unet" / "config.json").read_text())["transformer_layers_per_block"] == [1, 2]

    err = _error(capsys, tiny_unet_argv(inputs, tmp_path / "o", "--init", str(out), "--transformer-layers-per-block", "1,1"))
    assert "1,2 transformer blocks" in err and "drop trained ones" in err
    err = _error(capsys, tiny_unet_argv(inputs, tmp_path / "o", "--transformer-layers-per-block", "2"))
    assert "2 counts" in err and "got 2." in err
    # tiny's finest level has no attention: a count there would be recorded in the config and build nothing
    for init in ((), ("--init", str(out))):
        err = _error(capsys, tiny_unet_argv(inputs, tmp_path / "o", *init, "--transformer-layers-per-block", "2,2"))
        assert "Level 1 of the U-Net (finest first) has no attention layers" in err and "keep its count at 1" in err
    assert not (tmp_path / "o").exists()


def test_deepening_refuses_a_unet_that_sets_its_blocks_one_by_one():
    from diffusers import UNet2DConditionModel

    from latentdiff.errors import UserError
    from latentdiff.models.unet import deepen_attention

    # SDXL-style configs list the blocks per attention layer (nested) and again for the up side
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D",) * 2,
                                up_block_types=("CrossAttnUpBlock2D",) * 2, cross_attention_dim=32, norm_num_groups=8,
                                attention_head_dim=2, transformer_layers_per_block=[[1], [1]],
                                reverse_transformer_layers_per_block=[[1, 1], [1, 1]])
    with pytest.raises(UserError, match="one by one.*leave the option out"):
        deepen_attention(unet, [1, 2])


def test_deepening_follows_where_a_foreign_unet_keeps_its_transformers():
    from diffusers import UNet2DConditionModel

    from latentdiff.errors import UserError
    from latentdiff.models.unet import count_parameters, deepen_attention

    def unet(down, up, **kwargs):
        return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                                    layers_per_block=1, down_block_types=down, up_block_types=up,
                                    cross_attention_dim=32, norm_num_groups=8, attention_head_dim=2, **kwargs)

    # attention on the up side only at the finest level: the up blocks take the counts in reverse, so 2,1 deepens it
    uneven = unet(("DownBlock2D", "CrossAttnDownBlock2D"), ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
    deeper = deepen_attention(uneven, [2, 1])
    assert count_parameters(deeper) > count_parameters(uneven)
    assert len(deeper.up_blocks[1].attentions[0].transformer_blocks) == 2
    # no middle-block attention and none at the coarsest level: the example points at the level that has some
    no_middle = unet(("CrossAttnDownBlock2D", "DownBlock2D"), ("UpBlock2D", "CrossAttnUpBlock2D"), mid_block_type=None)
    with pytest.raises(UserError, match="Level 2 .* such as 2,1; got 1,2"):
        deepen_attention(no_middle, [1, 2])
    plain = unet(("DownBlock2D",) * 2, ("UpBlock2D",) * 2, mid_block_type=None)
    with pytest.raises(UserError, match="no transformer blocks"):
        deepen_attention(plain, [1, 2])


def test_cross_attention_levels_place_the_text_attention(inputs, trained, tmp_path, capsys):
    out = tmp_path / "attn"
    # tiny is (False, True): attention at the coarse level only; 1,1 adds it at the fine level too
    assert train_unet.main(tiny_unet_argv(inputs, out, "--cross-attention-levels", "1,1", "--max-steps", "1")) == 0
    config = json.loads((out / "unet" / "config.json").read_text())
    assert config["down_block_types"] == ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    assert config["up_block_types"] == ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    default = json.loads((trained[0] / "unet" / "config.json").read_text())
    assert default["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D"]
    for bad in ("1", "1,2"):
        err = _error(capsys, tiny_unet_argv(inputs, tmp_path / "o", "--cross-attention-levels", bad))
        assert "--cross-attention-levels needs 2 values" in err and "0,1" in err
    err = _error(capsys, tiny_unet_argv(inputs, tmp_path / "o", "--cross-attention-levels", "1,1", "--init", str(trained[0])))
    assert "--init" in err and "--cross-attention-levels" in err
    assert not (tmp_path / "o").exists()


def test_training_prints_no_torchvision_advice(inputs, tmp_path):
    # The sample grid and the export build a StableDiffusionPipeline; importing that class made transformers 5
    # tell users to install torchvision (which the CPU torch wheel cannot have beside it) in every training log.
    import subprocess
    import sys

    argv = tiny_unet_argv(inputs, tmp_path / "run", "--max-steps", "1")
    done = subprocess.run([sys.executable, "-m", "latentdiff", "train-unet", *argv], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "model_index.json").exists()
    assert "torchvision" not in done.stderr + done.stdout, done.stderr


def test_missing_folders(inputs, tmp_path, capsys):
    err = _error(capsys, tiny_unet_argv({**inputs, "clip": tmp_path / "nope"}, tmp_path / "o"))
    assert "--clip" in err and "nope" in err
    err = _error(capsys, tiny_unet_argv({**inputs, "data": tmp_path / "nodata"}, tmp_path / "o"))
    assert "prepare-data" in err


@pytest.mark.slow  # 6 s: trains, then resumes
def test_resume_after_losing_the_last_checkpoint_is_bit_identical(inputs, tmp_path):
    """The U-Net task draws everything from the loop's generator (logit-normal timesteps included): a run
    resumed from step 2 exports the same weights (EMA included) as the uninterrupted run."""
    from safetensors.torch import load_file

    out = tmp_path / "resume"
    argv = tiny_unet_argv(inputs, out, "--checkpoint-every", "2", "--keep-checkpoints", "3",
                          "--timestep-sampling", "logit_normal", "--logit-mean", "1",
                          "--num-validation-prompts", "0", "--cache-dir", str(tmp_path / "cache"))
    assert train_unet.main(argv) == 0
    weights = out / "unet" / "diffusion_pytorch_model.safetensors"
    full = load_file(weights)
    # as if killed between the checkpoint of step 2 and the end
    import shutil

    shutil.rmtree(out / "training_state" / "step-000004")
    shutil.rmtree(out / "unet")
    (out / "latentdiff_complete.json").unlink()
    assert train_unet.main(argv) == 0
    resumed = load_file(weights)
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)


def test_cached_and_uncached_steps_compute_the_same_loss(inputs, tmp_path):
    """--no-cache encodes pixels and captions every step; with the same draws it must give the loss the cache
    gives (up to the cache's float16 text embeddings)."""
    from latentdiff.config import UnetTrainConfig
    from latentdiff.training.diffusion_task import DiffusionTask

    losses = []
    for cache in (True, False):
        cfg = UnetTrainConfig(data=str(inputs["data"]), clip=str(inputs["clip"]), vae=str(inputs["vae"]),
                              out=str(tmp_path / "o"), preset="tiny", cache=cache, cache_dir=str(tmp_path / "c"),
                              caption_dropout=0.5, snr_gamma=5.0)
        task = DiffusionTask(cfg, *train_unet.build_components(cfg))
        items = task.train_dataset()
        batch = task.collate([items[i] for i in range(8)])
        with torch.no_grad():
            loss, _ = task.loss(task.trainable_module(), batch, torch.Generator().manual_seed(3))
        losses.append(float(loss))
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)


@pytest.mark.slow  # 5-8 s: trains a U-Net, then samples from it
def test_zero_terminal_snr_and_text_time_embedding_export_a_plain_pipeline(inputs, tmp_path):
    """Both recipe levers (v-prediction with zero terminal SNR, the pooled text embedding) keep `StableDiffusionPipeline.from_pretrained(dir)` working unchanged:
    the schedule's last step is pure noise and sampling starts there; the U-Net pools the prompt itself."""
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "pipeline"
    argv = tiny_unet_argv(inputs, out, "--prediction-type", "v_prediction", "--zero-terminal-snr",
                          "--text-time-embedding", "--cache-dir", str(tmp_path / "cache"))
    assert train_unet.main(argv) == 0
    pipe = StableDiffusionPipeline.from_pretrained(out)
    assert pipe.scheduler.config.rescale_betas_zero_snr and pipe.scheduler.config.timestep_spacing == "trailing"
    assert float(pipe.scheduler.alphas_cumprod[-1]) == 0.0  # SNR(T) = 0
    pipe.scheduler.set_timesteps(4)
    assert int(pipe.scheduler.timesteps[0]) == 999  # sampling starts from pure noise
    assert pipe.unet.config.addition_embed_type == "text"
    pipe.set_progress_bar_config(disable=True)
    images = [np.asarray(pipe(prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0])
              for prompt in ("a red square", "a blue circle")]
    assert np.isfinite(images[0]).all() and not np.array_equal(images[0], images[1])


def test_logit_std_must_be_positive(inputs, tmp_path, capsys):
    err = _error(capsys, tiny_unet_argv(inputs, tmp_path / "o", "--timestep-sampling", "logit_normal", "--logit-std", "0"))
    assert "--logit-std must be positive" in err


def test_zero_terminal_snr_with_epsilon_is_one_sentence(inputs, tmp_path, capsys):
    err = _error(capsys, tiny_unet_argv(inputs, tmp_path / "o", "--zero-terminal-snr"))
    assert "--prediction-type v_prediction" in err


@pytest.mark.slow  # ~5 s: trains a U-Net a few steps
def test_clip_skip_keeps_the_layers_used_and_draws_as_diffusers_clip_skip_does(inputs, tmp_path, caplog):
    """The saved text encoder is the first layers of the CLIP's: its prompt embeddings are what diffusers'
    `encode_prompt(..., clip_skip=1)` computes from the whole encoder (the penultimate hidden state through the
    final layer norm), so the pipeline loads and draws unchanged, with no clip_skip argument."""
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "pipeline"
    assert train_unet.main(tiny_unet_argv(inputs, out, "--clip-skip", "1", "--cache-dir", str(tmp_path / "cache"))) == 0
    full_encoder, _ = train_unet.load_text_encoder(inputs["clip"])
    pipe = StableDiffusionPipeline.from_pretrained(out)
    assert pipe.text_encoder.config.num_hidden_layers == full_encoder.config.num_hidden_layers - 1
    prompts = ["a red square on the left", "a blue circle at the top"]
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        ours, _ = pipe.encode_prompt(prompts, "cpu", 1, False)  # (2, 77 or fewer tokens, width)
        # diffusers' clip_skip path, written out: it reaches for `.text_model`, which transformers 5 removed
        full = full_encoder(ids, output_hidden_states=True)
        skipped = getattr(full_encoder, "text_model", full_encoder).final_layer_norm(full.hidden_states[-2])
    torch.testing.assert_close(ours, skipped)
    assert (ours - full.last_hidden_state).abs().max() > 1e-3  # skipping a layer changes the conditioning
    # evaluate still knows the run's CLIP folder as the one that conditions this U-Net (its CLIP score note)
    from latentdiff.evaluation.clip_score import text_tower_matches
    from latentdiff.models.clip import load_clip

    assert text_tower_matches(load_clip(str(inputs["clip"]))[0], pipe.text_encoder)
    # continuing it with the full CLIP would condition its U-Net on other embeddings: said, with the fix
    caplog.clear()
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert train_unet.main(tiny_unet_argv(inputs, tmp_path / "full", "--init", str(out), *cache)) == 0
    warned = [r.getMessage() for r in caplog.records if "text-encoder layers" in r.getMessage()]
    assert len(warned) == 1 and f"on {full_encoder.config.num_hidden_layers - 1} text-encoder layers" in warned[0]
    assert f"pass --clip {out}" in warned[0]
    caplog.clear()
    assert train_unet.main(tiny_unet_argv(inputs, tmp_path / "same", "--init", str(out), "--clip", str(out), *cache)) == 0
    assert not [r for r in caplog.records if "text-encoder layers" in r.getMessage()]


def test_clip_skip_past_the_text_encoders_layers_is_one_sentence(inputs, tmp_path, capsys):
    err = _error(capsys, tiny_unet_argv(inputs, tmp_path / "o", "--clip-skip", "9"))
    assert "--clip-skip 9 is more than the" in err and "pass at most" in err
    assert not (tmp_path / "o").exists()


def test_a_negative_input_perturbation_is_refused_before_training(inputs, tmp_path, capsys):
    out = tmp_path / "pipeline"
    assert train_unet.main(tiny_unet_argv(inputs, out, "--input-perturbation", "-0.1")) == 2
    assert "--input-perturbation must be 0 (off) or positive (got -0.1)" in capsys.readouterr().err
    assert not out.exists()
