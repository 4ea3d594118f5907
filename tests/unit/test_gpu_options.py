"""The GPU-minded training options: attention runs through PyTorch SDPA in every model; gradient
checkpointing is switched on for each model kind and gives the same gradients; --compile keeps the state
dict (so checkpoints and exports are unchanged); the options reach every stage of `latentdiff train`."""

from __future__ import annotations

import pytest
import torch

from latentdiff.presets import CLIP_PRESETS, UNET_PRESETS, VAE_PRESETS
from latentdiff.errors import UserError
from latentdiff.training.gpu_options import apply_training_options, attention_backends


def _unet():
    from latentdiff.models.unet import unet_from_preset

    torch.manual_seed(0)
    return unet_from_preset(UNET_PRESETS["tiny"], latent_channels=4, sample_size=8, cross_attention_dim=32)


def _clip():
    from latentdiff.models.clip import build_clip
    from latentdiff.models.tokenizer import train_clip_tokenizer

    preset = CLIP_PRESETS["tiny"]
    tokenizer = train_clip_tokenizer(["a red square", "a blue circle"] * 20, 600, preset.max_text_tokens)
    return build_clip(preset, tokenizer)


def test_attention_uses_pytorch_sdpa():
    from latentdiff.models.vae import vae_from_preset

    assert attention_backends(_unet()) == {"AttnProcessor2_0"}
    assert attention_backends(vae_from_preset(VAE_PRESETS["tiny"])) <= {"AttnProcessor2_0"}
    assert attention_backends(_clip()) == {"sdpa"}


def _unet_grads(checkpointing: bool) -> list[torch.Tensor]:
    unet = _unet().train()
    apply_training_options(unet, gradient_checkpointing=checkpointing, compile=False)
    assert unet.is_gradient_checkpointing == checkpointing
    g = torch.Generator().manual_seed(1)
    latents, text = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 5, 32, generator=g)
    unet(latents, torch.tensor([10, 500]), encoder_hidden_states=text).sample.pow(2).mean().backward()
    return [p.grad.clone() for p in unet.parameters() if p.grad is not None]


def test_gradient_checkpointing_gives_the_same_gradients():
    plain, checkpointed = _unet_grads(False), _unet_grads(True)
    assert len(plain) == len(checkpointed) > 0
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_gradient_checkpointing_reaches_clip_and_the_wrapped_vae_and_refuses_a_plain_module():
    from latentdiff.models.vae import VaeForTraining, vae_from_preset

    clip = _clip()
    apply_training_options(clip, gradient_checkpointing=True, compile=False)
    assert clip.is_gradient_checkpointing
    wrapped = VaeForTraining(vae_from_preset(VAE_PRESETS["tiny"]))  # the module train-vae's loop trains
    apply_training_options(wrapped, gradient_checkpointing=True, compile=False)
    assert wrapped.vae.is_gradient_checkpointing
    with pytest.raises(UserError, match="not supported by Linear"):
        apply_training_options(torch.nn.Linear(2, 2), gradient_checkpointing=True, compile=False)


def test_compile_keeps_the_state_dict_names():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    names = list(model.state_dict())
    apply_training_options(model, gradient_checkpointing=False, compile=True)
    assert list(model.state_dict()) == names  # compiled in place: no _orig_mod. prefix in checkpoints


def test_train_hands_the_gpu_options_to_every_stage(tmp_path):
    from helpers.clip_data import write_tiny_clip_dataset

    from latentdiff.config import TrainAllConfig
    from latentdiff.stages.train import plan

    data = write_tiny_clip_dataset(tmp_path / "data", num_train=4, num_validation=2)  # two languages: align-text too
    cfg = TrainAllConfig(data=str(data), out=str(tmp_path / "run"), gradient_checkpointing=True, compile=True,
                         grad_accum_steps=4)
    stages = plan(cfg)
    assert [stage.name for stage in stages] == ["train-clip", "align-text", "train-vae", "train-unet"]
    for stage in stages:
        assert stage.config.gradient_checkpointing and stage.config.compile and stage.config.grad_accum_steps == 4
