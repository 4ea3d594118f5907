"""Runtime sessions dressed as the diffusers / transformers modules StableDiffusionPipeline calls.

diffusers' own denoising loop, schedulers, classifier-free guidance and image post-processing stay as
they are; only the three network calls go to ONNX Runtime or OpenVINO:
    unet(sample, t, encoder_hidden_states=..., return_dict=False)[0]
    text_encoder(input_ids, attention_mask=...)[0]
    vae.decode(latents, return_dict=False)[0]        and vae.encode(images).latent_dist (img2img)
They are `torch.nn.Module`s without parameters so that the pipeline's device/dtype/offload helpers, which
walk its nn.Module components, treat them like the modules they replace (all on the CPU, fp32).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput


class _RuntimeModule(torch.nn.Module):
    def __init__(self, session, config):
        super().__init__()
        self.session = session  # latentdiff.backends.sessions.OnnxSession / OpenVinoSession
        self.config = config  # the torch component's config: the pipeline reads sizes and factors from it

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).numpy()


class RuntimeUNet(_RuntimeModule):
    def forward(self, sample, timestep, encoder_hidden_states=None, timestep_cond=None, cross_attention_kwargs=None,
                added_cond_kwargs=None, return_dict: bool = True, **unused):
        if timestep_cond is not None or added_cond_kwargs:
            raise NotImplementedError("exported U-Nets take no timestep_cond / added_cond_kwargs (SD 1.x/2.x only)")
        timestep = torch.as_tensor(timestep).reshape(-1)[0]  # every image of a batch is at the same step
        # (B, C, h, w), (), (B, T, D) -> (B, C, h, w)
        out = self.session(sample=_numpy(sample), timestep=_numpy(timestep),
                           encoder_hidden_states=_numpy(encoder_hidden_states))[0]
        out = torch.from_numpy(out)
        if not return_dict:
            return (out,)

        return UNet2DConditionOutput(sample=out)


class RuntimeTextEncoder(_RuntimeModule):
    def forward(self, input_ids, attention_mask=None, output_hidden_states=None, **unused):
        if output_hidden_states:
            raise NotImplementedError("exported text encoders return no hidden states (no --clip-skip)")
        # (B, T) int64 -> (B, T, D), (B, D); CLIP's causal mask does not need the padding mask
        last_hidden_state, pooled = self.session(input_ids=input_ids.numpy())
        return torch.from_numpy(last_hidden_state), torch.from_numpy(pooled)


class RuntimeVae(_RuntimeModule):
    """The VAE decoder (and encoder, for img2img) of an export."""

    def __init__(self, decoder, encoder, config):
        super().__init__(decoder, config)
        self.encoder_session = encoder

    def decode(self, latents, return_dict: bool = True, generator=None):
        # (B, C, h, w) -> (B, 3, H, W) in [-1, 1]; decoding draws no noise, so `generator` is unused
        image = torch.from_numpy(self.session(latent_sample=_numpy(latents))[0])
        if not return_dict:
            return (image,)

        return DecoderOutput(sample=image)

    def encode(self, images, return_dict: bool = True):
        # (B, 3, H, W) -> (B, 2C, h, w): mean and log-variance, sampled by diffusers with the image's generator
        moments = torch.from_numpy(self.encoder_session(sample=_numpy(images))[0])
        posterior = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)
