"""The VAE stage as a user meets it: a `tiny` AutoencoderKL trains on a small prepared dataset, its
reconstructions get better, and the folder it writes loads with `AutoencoderKL.from_pretrained` carrying
a scaling factor measured on the data; bad input ends in one sentence before any training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from PIL import Image

from helpers.clip_data import write_tiny_clip_dataset
from helpers.tensorboard_log import logged_images
from latentdiff.config import VaeTrainConfig
from latentdiff.presets import VAE_PRESETS
from latentdiff.training.runner import with_recipe
from latentdiff.data.prepared import ImageCaptionDataset, open_prepared
from latentdiff.errors import UserError
from latentdiff.losses.vae import kl_per_pixel_value, reconstruction_loss, vae_loss
from latentdiff.models.vae import VaeForTraining, downsampling_factor, load_vae, vae_from_preset
from latentdiff.stages import train_vae
from latentdiff.training.vae_task import GRID_IMAGES, measure_scaling_factor

IMAGE_SIZE = 32  # the tiny preset downsamples by 4: 8x8 latents, fast on two cores


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_clip_dataset(tmp_path_factory.mktemp("vae_data") / "data", num_train=32, num_validation=8,
                                   image_size=IMAGE_SIZE)


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return vae_from_preset(VAE_PRESETS["tiny"])


def test_tiny_preset_encodes_to_small_latents_and_decodes_to_the_same_size():
    vae = tiny_vae()
    factor = downsampling_factor(vae)
    assert factor == 4
    pixels = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1
    decoded, posterior = VaeForTraining(vae)(pixels, torch.Generator().manual_seed(0))
    assert posterior.mean.shape == (2, VAE_PRESETS["tiny"].latent_channels, IMAGE_SIZE // factor, IMAGE_SIZE // factor)
    assert decoded.shape == pixels.shape


def test_loss_terms():
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert float(reconstruction_loss(a, b, "l1")) == pytest.approx(0.5)
    assert float(reconstruction_loss(a, b, "mse")) == pytest.approx(0.25)
    # KL of N(0, I) from N(0, I) is 0; a shifted mean costs 0.5 * mean^2 per latent value.
    standard = DiagonalGaussianDistribution(torch.zeros(1, 8, 2, 2))  # (B, 2*C, h, w): mean and logvar
    shifted = DiagonalGaussianDistribution(torch.cat([torch.full((1, 4, 2, 2), 2.0), torch.zeros(1, 4, 2, 2)], dim=1))
    assert float(kl_per_pixel_value(standard, 48)) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_per_pixel_value(shifted, 48)) == pytest.approx(0.5 * 4.0 * 16 / 48)
    # The total is reconstruction + kl_weight * KL, and the weight only scales the KL term.
    loss0, logs = vae_loss(a, b, shifted, kl_weight=0.0)
    loss1, _ = vae_loss(a, b, shifted, kl_weight=0.1)
    assert float(loss0) == pytest.approx(logs["reconstruction"])
    assert float(loss1 - loss0) == pytest.approx(0.1 * logs["kl"])


def test_lab_colour_term_measures_cielab_differences():
    from skimage.color import deltaE_ciede2000, rgb2lab

    from latentdiff.losses.vae import LAB_SCALE, colour_loss

    def flat(rgb):  # a flat (1, 3, 8, 8) image of one sRGB colour in [0, 1], given in the VAE's [-1, 1]
        return torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, 8, 8) * 2 - 1

    red, orange = (0.9, 0.1, 0.1), (0.9, 0.5, 0.1)
    expected = np.abs(rgb2lab(np.array([[red]])) - rgb2lab(np.array([[orange]]))).mean() / LAB_SCALE
    assert float(colour_loss(flat(red), flat(orange), "lab")) == pytest.approx(expected, rel=1e-3)
    # The red turned orange is the more visible change (CIEDE2000 24.5 against 12.5) than a light grey made
    # darker, but the sRGB term scores it lower (0.13 against 0.2 per channel); the Lab term agrees with the eye.
    light, grey = (0.9, 0.9, 0.9), (0.7, 0.7, 0.7)
    assert float(deltaE_ciede2000(rgb2lab(np.array([[red]])), rgb2lab(np.array([[orange]])))[0, 0]) > \
        float(deltaE_ciede2000(rgb2lab(np.array([[light]])), rgb2lab(np.array([[grey]])))[0, 0])
    assert float(colour_loss(flat(red), flat(orange), "rgb")) < float(colour_loss(flat(light), flat(grey), "rgb"))
    assert float(colour_loss(flat(red), flat(orange), "lab")) > float(colour_loss(flat(light), flat(grey), "lab"))


def test_colour_cells_of_one_pixel_see_what_four_pixel_cells_average_away():
    from latentdiff.losses.vae import colour_loss

    # A (1, 3, 8, 8) checkerboard of two reds against the flat red of their mean: every 4x4 cell has the same mean
    # colour, so the default term is blind to it, while cells of one pixel (what CIEDE2000 compares) are not.
    board = (torch.arange(8).view(8, 1) + torch.arange(8).view(1, 8)) % 2  # (8, 8) of 0 and 1
    reds = torch.tensor([0.6, -0.8, -0.8]).view(3, 1, 1) + 0.2 * (2 * board - 1)  # (3, 8, 8) in [-1, 1]
    flat = torch.tensor([0.6, -0.8, -0.8]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    for space in ("rgb", "lab"):
        assert float(colour_loss(reds[None], flat, space)) < 1e-3
        assert float(colour_loss(reds[None], flat, space, cell_size=1)) > 0.05


def test_scaling_factor_is_one_over_the_latents_std(data_dir):
    vae = tiny_vae().eval()
    with torch.no_grad():  # a near-deterministic encoder (logvar -30): sampled latents = posterior means
        vae.quant_conv.weight[4:] = 0  # channels 4..7 of the (B, 2*C, h, w) moments are the logvar
        vae.quant_conv.bias[4:] = -30.0
    dataset = ImageCaptionDataset(open_prepared(data_dir), "train")
    factor = measure_scaling_factor(vae, dataset, max_images=0)
    with torch.no_grad():
        pixels = torch.stack([dataset[i]["pixel_values"] for i in range(len(dataset))])
        means = vae.encode(pixels).latent_dist.mean  # (N, 4, 8, 8)
    assert factor == pytest.approx(1.0 / float(means.double().std()), rel=1e-4)
    assert measure_scaling_factor(vae, dataset, max_images=4) == pytest.approx(1.0 / float(means[:4].double().std()), rel=1e-4)
    # Doubling the encoder's output doubles the latents' std and halves the factor.
    with torch.no_grad():
        vae.quant_conv.weight[:4] *= 2
        vae.quant_conv.bias[:4] *= 2
    assert measure_scaling_factor(vae, dataset, max_images=0) == pytest.approx(factor / 2, rel=1e-4)


@pytest.mark.slow  # 10 s: trains a VAE
def test_train_vae_improves_psnr_and_saves_a_loadable_vae_with_its_scaling_factor(data_dir, tmp_path, capsys):
    out = tmp_path / "vae"
    cfg = VaeTrainConfig(data=str(data_dir), out=str(out), preset="tiny", max_steps=20, batch_size=8, lr=2e-3,
                         validate_every=0, checkpoint_every=0, seed=0)
    # PSNR of the untrained model (same seed, so the same initial weights the stage starts from).
    untrained = train_vae.build_task(with_recipe(cfg, VAE_PRESETS))
    before = untrained.validate(untrained.trainable_module().eval(), 0, tmp_path / "before")["psnr_db"]

    train_vae.run(cfg)
    after = json.loads((out / "validation_metrics.json").read_text())
    assert after["step"] == 20
    assert after["psnr_db"] > before + 2.0, (before, after)  # measured: 6.4 dB -> 10.4 dB

    vae = AutoencoderKL.from_pretrained(out)
    stored = json.loads((out / "config.json").read_text())["scaling_factor"]
    assert vae.config.scaling_factor == pytest.approx(stored)
    assert stored != pytest.approx(0.18215)  # measured, not diffusers' default
    dataset = ImageCaptionDataset(open_prepared(data_dir), "train")
    assert stored == pytest.approx(measure_scaling_factor(vae.eval(), dataset, max_images=0), rel=1e-4)
    assert list(out.glob("*.safetensors")) and not list(out.glob("*.bin"))

    grid = Image.open(out / "validation" / "reconstructions-step000020.png")
    assert grid.size == (IMAGE_SIZE * GRID_IMAGES, IMAGE_SIZE * 2)  # originals above reconstructions
    step, logged = logged_images(out / "logs")["val/reconstructions"][-1]  # the same grid in TensorBoard
    assert step == 20 and np.array_equal(np.asarray(logged.convert("RGB")), np.asarray(grid.convert("RGB")))
    assert json.loads((out / "latentdiff_config.json").read_text())["config"]["preset"] == "tiny"

    capsys.readouterr()
    train_vae.run(cfg)  # a finished folder is not trained again
    assert "nothing to do" in capsys.readouterr().out


def test_not_a_prepared_dataset_is_one_sentence(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    code = train_vae.main(["--data", str(tmp_path / "photos"), "--out", str(tmp_path / "vae")])
    err = capsys.readouterr().err
    assert code == 2
    assert "not a prepared dataset" in err and "prepare-data" in err and "Traceback" not in err
    assert not (tmp_path / "vae").exists()


def test_image_size_the_vae_cannot_encode_is_refused_before_training(tmp_path):
    data = write_tiny_clip_dataset(tmp_path / "odd", num_train=8, num_validation=2, image_size=30)
    with pytest.raises(UserError, match="multiple of 4"):
        train_vae.run(VaeTrainConfig(data=str(data), out=str(tmp_path / "vae"), preset="tiny", max_steps=1))
    assert not (tmp_path / "vae").exists()


def test_init_loads_vae_and_pipeline_folders_and_refuses_pickles(tmp_path):
    vae = tiny_vae(seed=1)
    vae.save_pretrained(tmp_path / "pipeline" / "vae", safe_serialization=True)
    loaded = load_vae(str(tmp_path / "pipeline"))  # a pipeline folder: its vae/ subfolder
    assert torch.equal(loaded.encoder.conv_in.weight, vae.encoder.conv_in.weight)

    vae.save_pretrained(tmp_path / "pickled", safe_serialization=False)
    with pytest.raises(UserError, match="--allow-pickle"):
        load_vae(str(tmp_path / "pickled"))
    assert torch.equal(load_vae(str(tmp_path / "pickled"), allow_pickle=True).encoder.conv_in.weight,
                       vae.encoder.conv_in.weight)

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="AutoencoderKL"):
        load_vae(str(tmp_path / "empty"))


def test_fine_tuning_from_init_starts_from_its_weights(data_dir, tmp_path):
    tiny_vae(seed=3).save_pretrained(tmp_path / "start", safe_serialization=True)
    cfg = VaeTrainConfig(data=str(data_dir), out=str(tmp_path / "tuned"), init=str(tmp_path / "start"), max_steps=2,
                         batch_size=4, seed=0)
    cfg = with_recipe(cfg, VAE_PRESETS)
    assert cfg.lr == VAE_PRESETS["tiny"].finetune.lr
    train_vae.run(cfg)
    start, tuned = AutoencoderKL.from_pretrained(tmp_path / "start"), AutoencoderKL.from_pretrained(tmp_path / "tuned")
    delta = (tuned.encoder.conv_in.weight - start.encoder.conv_in.weight).abs().max()
    assert 0 < float(delta.detach()) < 1e-3  # moved a little, from the given weights (a fresh init would differ by ~0.1)


def test_random_crops_are_seeded_and_inside_the_image():
    from latentdiff.training.vae_task import random_crops

    pixels = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    crops = random_crops(pixels, 4, torch.Generator().manual_seed(0))
    assert crops.shape == (2, 3, 4, 4)
    assert torch.equal(crops, random_crops(pixels, 4, torch.Generator().manual_seed(0)))
    for image, crop in zip(pixels, crops):  # each crop is a window of its own image
        windows = image.unfold(1, 4, 1).unfold(2, 4, 1)  # (3, 5, 5, 4, 4)
        assert any(torch.equal(windows[:, i, j], crop) for i in range(5) for j in range(5))


def test_colour_term_and_crops_train_and_a_bad_crop_is_one_sentence(data_dir, tmp_path, capsys):
    out = tmp_path / "vae"
    argv = ["--data", str(data_dir), "--out", str(out), "--preset", "tiny", "--max-steps", "2", "--batch-size", "4",
            "--validate-every", "0", "--checkpoint-every", "0", "--crop-size", "16", "--colour-weight", "1"]
    assert train_vae.main(argv) == 0
    metrics = json.loads((out / "validation_metrics.json").read_text())
    assert metrics["delta_e2000"] > 0 and "delta_e2000_saturated" in metrics  # colour error is validated
    assert AutoencoderKL.from_pretrained(out).config.sample_size == VAE_PRESETS["tiny"].image_size  # whole-image model

    capsys.readouterr()
    assert train_vae.main(argv[:-4] + ["--crop-size", "6", "--out", str(tmp_path / "bad")]) == 2
    assert "--crop-size must be 0 (whole images) or a multiple" in capsys.readouterr().err

    lab = tmp_path / "lab"
    assert train_vae.main(argv[:2] + ["--out", str(lab)] + argv[4:] + ["--colour-space", "lab"]) == 0
    assert json.loads((lab / "validation_metrics.json").read_text())["delta_e2000"] > 0
    assert train_vae.main(argv[:2] + ["--out", str(tmp_path / "x"), "--colour-space", "lab"]) == 2
    assert "add --colour-weight" in capsys.readouterr().err

    pixel = tmp_path / "per-pixel"
    assert train_vae.main(argv[:2] + ["--out", str(pixel)] + argv[4:] + ["--colour-cell-size", "1"]) == 0
    assert json.loads((pixel / "latentdiff_config.json").read_text())["config"]["colour_cell_size"] == 1
    assert train_vae.main(argv[:2] + ["--out", str(tmp_path / "y")] + argv[4:] + ["--colour-cell-size", "3"]) == 2
    assert "--colour-cell-size must be a whole number of pixels that divides" in capsys.readouterr().err


def test_decoder_only_keeps_the_encoder_and_the_scaling_factor(data_dir, tmp_path, capsys):
    start = tiny_vae(seed=4)
    start.register_to_config(scaling_factor=0.5)
    start.save_pretrained(tmp_path / "start", safe_serialization=True)
    cfg = VaeTrainConfig(data=str(data_dir), out=str(tmp_path / "tuned"), init=str(tmp_path / "start"), max_steps=2,
                         batch_size=4, lr=1e-3, seed=0, decoder_only=True, validate_every=0, checkpoint_every=0)
    train_vae.run(cfg)
    tuned = AutoencoderKL.from_pretrained(tmp_path / "tuned")
    start = AutoencoderKL.from_pretrained(tmp_path / "start")
    for name, param in start.encoder.state_dict().items():  # the latent space a U-Net learned is unchanged
        assert torch.equal(param, tuned.encoder.state_dict()[name]), name
    assert not torch.equal(start.decoder.conv_out.weight, tuned.decoder.conv_out.weight)
    assert tuned.config.scaling_factor == 0.5

    capsys.readouterr()
    assert train_vae.main(["--data", str(data_dir), "--out", str(tmp_path / "x"), "--decoder-only"]) == 2
    assert "--init" in capsys.readouterr().err


def test_latent_channels_size_a_new_vae_and_are_refused_with_init(data_dir, tmp_path, capsys):
    out = tmp_path / "vae8"
    argv = ["--data", str(data_dir), "--out", str(out), "--preset", "tiny", "--max-steps", "1", "--batch-size", "4",
            "--validate-every", "0", "--checkpoint-every", "0", "--latent-channels", "8"]
    assert train_vae.main(argv) == 0
    vae = AutoencoderKL.from_pretrained(out)
    assert vae.config.latent_channels == 8
    pixels = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert vae.encode(pixels).latent_dist.mode().shape == (1, 8, IMAGE_SIZE // 4, IMAGE_SIZE // 4)

    capsys.readouterr()
    assert train_vae.main(argv[:2] + ["--out", str(tmp_path / "x"), "--init", str(out), "--latent-channels", "16"]) == 2
    assert "--latent-channels sets the size of a new VAE" in capsys.readouterr().err
