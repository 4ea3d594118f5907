"""Safety of `latentdiff serve`: loopback by default, API key, cross-site and DNS-rebinding requests
refused, no path reads, the page and /docs served, and the `serve` command's own checks."""

from __future__ import annotations

import socket

import pytest

from helpers.server_client import server_client

API_CALLS = [("get", "/api/info"), ("get", "/sdapi/v1/samplers"), ("get", "/sdapi/v1/progress"),
             ("get", "/sdapi/v1/sd-models"), ("get", "/sdapi/v1/options"), ("post", "/sdapi/v1/interrupt"),
             ("post", "/sdapi/v1/txt2img"), ("post", "/v1/images/generations"), ("post", "/api/jobs")]


@pytest.fixture(scope="module")
def keyed(tiny_pipeline_dir):
    with server_client(tiny_pipeline_dir, api_key="s3cret") as (client, _):
        yield client


@pytest.fixture(scope="module")
def open_server(tiny_pipeline_dir):
    with server_client(tiny_pipeline_dir) as (client, _):
        yield client


@pytest.mark.parametrize("method, path", API_CALLS)
def test_every_api_call_needs_the_key(keyed, method, path):
    response = getattr(keyed, method)(path)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    wrong = getattr(keyed, method)(path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_the_key_works_as_bearer_or_x_api_key(keyed):
    assert keyed.get("/sdapi/v1/samplers", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert keyed.get("/sdapi/v1/samplers", headers={"x-api-key": "s3cret"}).status_code == 200
    body = {"prompt": "x", "steps": 2, "width": 32, "height": 32}
    response = keyed.post("/sdapi/v1/txt2img", json=body, headers={"x-api-key": "s3cret"})
    assert response.status_code == 200 and len(response.json()["images"]) == 1
    response = keyed.post("/v1/images/generations", json={"prompt": "x"}, headers={"x-api-key": "wrong"})
    assert response.status_code == 401 and "API key" in response.json()["error"]["message"]


def test_page_static_files_and_docs_need_no_key(keyed):
    page = keyed.get("/")
    assert page.status_code == 200 and 'id="prompt"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert keyed.get("/static/app.js").status_code == 200
    assert keyed.get("/static/style.css").status_code == 200
    assert keyed.get("/docs").status_code == 200
    schema = keyed.get("/openapi.json").json()
    for path in ("/sdapi/v1/txt2img", "/sdapi/v1/progress", "/sdapi/v1/interrupt", "/sdapi/v1/samplers",
                 "/sdapi/v1/sd-models", "/sdapi/v1/options", "/v1/images/generations", "/api/jobs"):
        assert path in schema["paths"], path


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:9999", "https://127.0.0.1:7860", "null"])
def test_cross_site_origins_are_refused(open_server, origin):
    for method, path in [("get", "/"), ("get", "/sdapi/v1/samplers"), ("post", "/sdapi/v1/interrupt")]:
        response = getattr(open_server, method)(path, headers={"Origin": origin})
        assert response.status_code == 403 and "Origin" in response.json()["detail"]


def test_same_origin_and_no_origin_are_served(open_server):
    assert open_server.get("/sdapi/v1/samplers", headers={"Origin": "http://127.0.0.1:7860"}).status_code == 200
    assert open_server.get("/sdapi/v1/samplers").status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:7860", "192.168.1.10:7860"])
def test_non_loopback_host_headers_are_refused(open_server, host):
    # DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 is same-origin with itself
    response = open_server.get("/sdapi/v1/samplers", headers={"Host": host, "Origin": f"http://{host}"})
    assert response.status_code == 403 and "loopback" in response.json()["detail"]
    assert open_server.get("/sdapi/v1/samplers", headers={"Host": "localhost:7860"}).status_code == 200


@pytest.mark.parametrize("path", ["/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/pyproject.toml",
                                  "/static/..%2f..%2fapp.py", "/etc/passwd", "/api/jobs/..%2f..%2fetc/images/0"])
def test_no_endpoint_reads_paths_outside_the_static_folder(open_server, path):
    response = open_server.get(path)
    assert response.status_code == 404
    assert "root:" not in response.text and "[build-system]" not in response.text


def test_unknown_routes_and_methods(open_server):
    assert open_server.get("/sdapi/v1/txt2img").status_code == 405
    assert open_server.post("/sdapi/v1/img2img", json={}).status_code == 404


def test_serve_refuses_bad_settings_before_loading_anything(tiny_pipeline_dir, capsys):
    from latentdiff.stages.serve import main

    assert main(["--model", str(tiny_pipeline_dir), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["--model", str(tiny_pipeline_dir), "--max-queue", "0"]) == 2
    assert "--max-queue" in capsys.readouterr().err
    assert main(["--model", str(tiny_pipeline_dir / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["--model", str(tiny_pipeline_dir), "--port", str(port)]) == 2
        assert "another --port" in capsys.readouterr().err


def test_serve_is_a_registered_stage_bound_to_loopback_by_default():
    from latentdiff.cli import STAGES
    from latentdiff.config import ServeConfig

    assert STAGES["serve"][0] == "serve"
    assert ServeConfig().host == "127.0.0.1" and ServeConfig().port == 7860
