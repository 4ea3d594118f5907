"""AUTOMATIC1111 infotext: what we write is what A1111 writes, and it parses back (ours and theirs)."""

from __future__ import annotations

import shutil

from latentdiff.hashing import model_hash
from latentdiff.infotext import Infotext, format_infotext, parse_infotext, parse_infotext_fields


def _info(**overrides) -> Infotext:
    fields = dict(prompt="a red circle", negative_prompt="blurry", steps=20, scheduler="euler-a", guidance=7.0,
                  seed=1, width=64, height=64, model_hash="abcd123456", model_name="shapes")
    fields.update(overrides)
    return Infotext(**fields)


def test_format_matches_automatic1111_layout():
    assert format_infotext(_info()) == (
        "a red circle\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, Model hash: abcd123456, Model: shapes"
    )


def test_no_negative_prompt_line_when_empty():
    text = format_infotext(_info(negative_prompt="", guidance=7.5, scheduler="dpmpp-2m-karras"))
    assert "Negative prompt" not in text
    assert "Sampler: DPM++ 2M Karras, CFG scale: 7.5" in text
    assert parse_infotext(text).negative_prompt == ""


def test_round_trip_with_awkward_text():
    info = _info(prompt="line one, with: colon\nline two", negative_prompt="ugly, blurry",
                 model_name="my model, v2: final", scheduler="dpmpp-2m", guidance=4.25, seed=2**40,
                 width=96, height=48)
    text = info.format()
    assert 'Model: "my model, v2: final"' in text  # A1111 quotes values holding ',' or ':' as JSON
    assert parse_infotext(text) == info


def test_guidance_and_strength_keep_every_digit_so_the_image_can_be_made_again():
    info = _info(guidance=3.14159265, denoising_strength=0.123456789)
    text = info.format()
    assert "CFG scale: 3.14159265" in text and "Denoising strength: 0.123456789" in text
    assert parse_infotext(text) == info
    assert "CFG scale: 7," in _info(guidance=7.0).format()  # whole numbers still as A1111 users type them


def test_parses_automatic1111_own_example():
    # the example in AUTOMATIC1111's parse_generation_parameters docstring (old 8-digit hash)
    text = ("girl with an artist's beret, determined, blue eyes, ((eyeshadow))\n"
            "Negative prompt: ugly, fat, (((deformed))), [blurry]\n"
            "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b")
    info = parse_infotext(text)
    assert info.prompt == "girl with an artist's beret, determined, blue eyes, ((eyeshadow))"
    assert info.negative_prompt == "ugly, fat, (((deformed))), [blurry]"
    assert (info.steps, info.scheduler, info.guidance, info.seed) == (20, "euler-a", 7.0, 965400086)
    assert (info.width, info.height, info.model_hash) == (512, 512, "45dee52b")


def test_parses_newer_schedule_type_field():
    text = "a cat\nSteps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, Seed: 3, Size: 64x64"
    assert parse_infotext(text).scheduler == "dpmpp-2m-karras"
    assert parse_infotext_fields(text)["Schedule type"] == "Karras"


def test_prompt_only_text_is_all_prompt():
    info = parse_infotext("just a prompt, nothing else")
    assert info.prompt == "just a prompt, nothing else" and info.steps == 0


def test_model_hash_is_short_sha256_of_the_weights(tiny_pipeline_dir, tmp_path):
    digest = model_hash(tiny_pipeline_dir)
    assert len(digest) == 10 and int(digest, 16) >= 0
    copy = shutil.copytree(tiny_pipeline_dir, tmp_path / "copy")
    assert model_hash(copy) == digest  # depends on the weights, not the folder's path
    weights = copy / "vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # flip one byte of one weight
    weights.write_bytes(bytes(data))
    assert model_hash(copy) != digest
