"""Several models, img2img and png-info as AUTOMATIC1111 and OpenAI clients use them: webuiapi's
`util_set_model`, `img2img` and `png_info`, and the openai package's `models.list()`, against a real
`latentdiff serve --models-dir` on a port."""

from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from helpers.server_client import server_client, threaded_server

FAST = {"steps": 4, "width": 32, "height": 32, "seed": 5, "cfg_scale": 5, "sampler_name": "Euler a"}


@pytest.fixture(scope="module")
def models_dir(tiny_pipeline_dir, tmp_path_factory):
    """runs/shapes/pipeline (the tiny model, named by `train`'s export) and runs/emoji/pipeline (other weights)."""
    from helpers.random_pipeline import build_random_pipeline
    from latentdiff.model_source import write_model_name

    runs = tmp_path_factory.mktemp("runs")
    shutil.copytree(tiny_pipeline_dir, runs / "shapes" / "pipeline")
    build_random_pipeline(runs / "emoji" / "pipeline", "tiny", seed=1)
    (runs / "broken" / "pipeline").mkdir(parents=True)  # not a pipeline: skipped, not fatal
    (runs / "broken" / "pipeline" / "model_index.json").write_text("{}")
    for name in ("shapes", "emoji"):
        write_model_name(runs / name / "pipeline")
    return runs


@pytest.fixture(scope="module")
def server(tiny_pipeline_dir, models_dir):
    with server_client(tiny_pipeline_dir, models_dir=str(models_dir)) as (client, queue):
        yield client, queue


@pytest.fixture(scope="module")
def url(server):
    client, _ = server
    with threaded_server(client.app) as base_url:
        yield base_url


def _picture() -> Image.Image:
    picture = Image.new("RGB", (48, 40), (20, 20, 60))
    picture.paste((240, 200, 40), (8, 8, 40, 32))
    return picture


def _b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_sd_models_lists_every_pipeline_with_a1111_fields(server, tiny_pipeline_dir):
    client, _ = server
    models = client.get("/sdapi/v1/sd-models").json()
    assert [m["model_name"] for m in models] == [tiny_pipeline_dir.name, "emoji", "shapes"]
    for model in models:
        assert set(model) == {"title", "model_name", "hash", "sha256", "filename", "config"}
        assert model["title"] == f"{model['model_name']} [{model['hash']}]" and model["sha256"].startswith(model["hash"])
        assert str(tiny_pipeline_dir.parent) not in json.dumps(model)  # no server paths
    assert models[0]["hash"] == models[2]["hash"] != models[1]["hash"]  # shapes is a copy of the tiny model


def test_webuiapi_switches_models_and_generates_with_the_new_one(server, url, models_dir):
    import webuiapi

    from latentdiff.pipeline import GenerationRequest, TextToImage

    api = webuiapi.WebUIApi(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
    first = api.txt2img(prompt="a red circle", **FAST)
    api.util_set_model("emoji")
    assert api.util_get_current_model().startswith("emoji [")
    switched = api.txt2img(prompt="a red circle", **FAST)
    assert "Model: emoji" in switched.info["infotexts"][0] and switched.info["sd_model_name"] == "emoji"
    # the emoji model's own picture for these settings, made in process: the switch loaded its weights
    request = GenerationRequest(["a red circle"], seed=5, steps=4, width=32, height=32, guidance=5, scheduler="euler-a")
    (emoji,) = TextToImage.load(str(models_dir / "emoji" / "pipeline"), "cpu").generate(request)
    assert np.abs(np.asarray(emoji.image, dtype=int) - np.asarray(switched.image, dtype=int)).max() <= 1
    assert np.abs(np.asarray(first.image, dtype=int) - np.asarray(switched.image, dtype=int)).max() > 0
    api.util_set_model("shapes")
    assert api.get_options()["sd_model_checkpoint"].startswith("shapes [")
    assert "Model: shapes" in api.txt2img(prompt="a red circle", **FAST).info["infotexts"][0]


def test_webuiapi_img2img_and_png_info(server, url):
    import webuiapi

    api = webuiapi.WebUIApi(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
    result = api.img2img(images=[_picture()], prompt="a red circle", denoising_strength=0.5, batch_size=2, **FAST)
    assert len(result.images) == 2 and all(im.size == (32, 32) for im in result.images)
    assert result.info["denoising_strength"] == 0.5 and result.info["all_seeds"] == [5, 6]
    infotext = result.info["infotexts"][0]
    assert "Denoising strength: 0.5" in infotext and "Seed: 5" in infotext
    read_back = api.png_info(result.images[0])
    assert read_back.info == infotext
    assert read_back.json["parameters"]["Denoising strength"] == "0.5"
    assert read_back.json["parameters"]["Prompt"] == "a red circle"


def test_img2img_matches_generate_with_an_init_image(server):
    from latentdiff.pipeline import GenerationRequest

    client, queue = server
    client.post("/sdapi/v1/options", json={"sd_model_checkpoint": queue.engine.model_name})
    response = client.post("/sdapi/v1/img2img", json={"init_images": [_b64_png(_picture())], "prompt": "a red circle",
                                                      "denoising_strength": 0.5, **FAST})
    assert response.status_code == 200, response.text
    ours = Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0])))
    reference = queue.engine.text_to_image.generate(GenerationRequest(["a red circle"], seed=5, steps=4, guidance=5,
                                                            scheduler="euler-a", width=32, height=32,
                                                            init_image=_picture(), strength=0.5))[0]
    assert ours.info["parameters"] == reference.infotext
    assert np.abs(np.asarray(ours, dtype=int) - np.asarray(reference.image, dtype=int)).max() <= 2


def test_img2img_goes_through_the_same_checks(server):
    client, queue = server
    picture = _b64_png(_picture())
    too_small = client.post("/sdapi/v1/img2img", json={"init_images": [picture], **FAST, "width": 8, "height": 8})
    assert too_small.status_code == 422 and "width" in too_small.json()["detail"]
    too_costly = client.post("/sdapi/v1/img2img", json={"init_images": [picture], "steps": 150, "batch_size": 16,
                                                        "width": 1024, "height": 1024, "denoising_strength": 1})
    assert too_costly.status_code == 413 and "--max-request-cost" in too_costly.json()["detail"]
    no_steps = client.post("/sdapi/v1/img2img", json={"init_images": [picture], **FAST, "denoising_strength": 0.1})
    assert no_steps.status_code == 422 and "denoising_strength" in no_steps.json()["detail"]
    not_a_picture = client.post("/sdapi/v1/img2img", json={"init_images": ["aGVsbG8="], **FAST})
    assert not_a_picture.status_code == 422 and "init_images" in not_a_picture.json()["detail"]
    # damaged headers on which Pillow's parsers raise ValueError / SyntaxError: a 422, not a 500
    png = base64.b64decode(picture)
    for damaged in (b"P6\n1Z 16\n255\n" + b"\0" * 768, png[:8] + b"\x00\x00\x00\x01" + png[12:]):
        encoded = base64.b64encode(damaged).decode()
        response = client.post("/sdapi/v1/img2img", json={"init_images": [encoded], **FAST})
        assert response.status_code == 422 and "init_images" in response.json()["detail"], response.text
        response = client.post("/sdapi/v1/png-info", json={"image": encoded})
        assert response.status_code == 422, response.text
    assert queue.snapshot()["waiting"] == 0


def test_a_finished_img2img_job_keeps_no_copy_of_its_picture(server):
    # the history of finished jobs is bounded by the PNGs it holds; the sent pictures (up to the body limit
    # each) would grow it unseen
    client, queue = server
    client.post("/sdapi/v1/options", json={"sd_model_checkpoint": queue.engine.model_name})
    before = {job.id for job in queue._jobs.values()}
    done = client.post("/sdapi/v1/img2img", json={"init_images": [_b64_png(_picture())], "prompt": "a red circle",
                                                  "denoising_strength": 0.5, **FAST})
    assert done.status_code == 200, done.text
    (job,) = [job for job in queue._jobs.values() if job.id not in before]
    assert job.finished and job.params.init_image == b"" and job.params.summary()["init_image"] is True


def test_unknown_model_is_refused_in_one_sentence_and_keeps_the_current(server):
    client, queue = server
    before = client.get("/sdapi/v1/options").json()["sd_model_checkpoint"]
    response = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"})
    assert response.status_code == 404
    assert "there is no model 'nope'" in response.json()["detail"] and "emoji [" in response.json()["detail"]
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == before


def test_openai_client_lists_the_models(url, tiny_pipeline_dir):
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="unused")
    assert [model.id for model in client.models.list()] == [tiny_pipeline_dir.name, "emoji", "shapes"]
    assert client.models.retrieve("emoji").owned_by == "latentdiff"


def test_a_bundled_model_server_offers_the_other_bundled_models_by_their_short_names(tiny_pipeline_dir, tmp_path,
                                                                                     monkeypatch):
    from latentdiff import model_source
    from latentdiff.server import models as served

    emoji, shapes = tmp_path / "default_model", tmp_path / "shapes_model"
    shutil.copytree(tiny_pipeline_dir, emoji)
    shutil.copytree(tiny_pipeline_dir, shapes)
    monkeypatch.setattr(served, "BUNDLED_MODELS", {"emoji": emoji, "shapes": shapes})
    monkeypatch.setattr(model_source, "BUNDLED_MODELS", {"emoji": emoji, "shapes": shapes})
    offered = served.discover_models(emoji, "latentdiff-default", None)
    assert [m.name for m in offered] == ["latentdiff-default", "latentdiff-shapes"]
    assert served.find_model(offered, "shapes").path == shapes.resolve()
    assert served.find_model(offered, "emoji").path == emoji.resolve()
    assert model_source.resolve_model("shapes").path == shapes.resolve()  # `--model shapes` on the command line
    assert model_source.resolve_model("shapes").name == "latentdiff-shapes"
    # a server of one's own model does not advertise the bundled toys
    assert [m.name for m in served.discover_models(tiny_pipeline_dir, "tiny", None)] == ["tiny"]


def test_a_bundled_name_this_install_lacks_says_so(tmp_path, monkeypatch):
    from latentdiff import model_source
    from latentdiff.errors import UserError

    monkeypatch.setattr(model_source, "BUNDLED_MODELS", {"shapes": tmp_path / "shapes_model"})
    with pytest.raises(UserError, match="does not bundle the 'shapes' model"):
        model_source.resolve_model("shapes")


def test_a_run_called_like_a_bundled_model_is_not_shadowed_by_it(tmp_path):
    from latentdiff.server.models import ServedModel, find_model

    bundled = ServedModel("latentdiff-shapes", tmp_path / "shapes_model", ("shapes",))
    mine = ServedModel("shapes", tmp_path / "runs" / "shapes" / "pipeline")
    assert find_model([bundled, mine], "shapes") is mine
    assert find_model([bundled], "shapes") is bundled
