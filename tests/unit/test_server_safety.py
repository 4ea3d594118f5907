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
    copy = keyed.get("/static/index.html")  # the page served as a static file keeps the page's policy
    assert copy.status_code == 200 and "frame-ancestors 'none'" in copy.headers["content-security-policy"]
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
    assert open_server.post("/sdapi/v1/extra-single-image", json={}).status_code == 404  # not offered
    assert open_server.post("/sdapi/v1/img2img", json={}).status_code == 422  # offered: init_images is required


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


def test_latentdiff_serve_listens_on_loopback_only_by_default(tiny_pipeline_dir, monkeypatch, capsys):
    """`latentdiff serve` with no --host: the socket uvicorn is handed is bound to 127.0.0.1 (another machine
    cannot connect), and the printed address says so."""
    import uvicorn

    from latentdiff import cli

    bound = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: bound.extend(s.getsockname() for s in sockets))
    monkeypatch.delenv("LATENTDIFF_API_KEY", raising=False)
    assert cli.main(["serve", "--model", str(tiny_pipeline_dir), "--port", "0"]) == 0
    (address,) = bound
    assert address[0] == "127.0.0.1" and address[1] > 0
    assert f"on http://127.0.0.1:{address[1]}/" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------- Host names that only look like loopback
@pytest.mark.parametrize("host", ["127.0.0.1.evil.example", "127.0.0.1.evil.example:7860", "localhost.evil.example",
                                  "evil.example@127.0.0.1", "127.0.0.1:7860@evil.example", "[::1].evil.example"])
def test_names_that_only_start_like_loopback_are_refused(open_server, host):
    # a rebound name that starts with '127.' once drove a key-less server
    response = open_server.post("/sdapi/v1/interrupt", headers={"Host": host, "Origin": f"http://{host}"})
    assert response.status_code == 403 and "--allowed-hosts" in response.json()["detail"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:7860", "127.45.6.7:7860", "LocalHost:7860", "[::1]:7860",
                                  "[::1]"])
def test_loopback_hosts_are_answered(open_server, host):
    assert open_server.get("/sdapi/v1/samplers", headers={"Host": host}).status_code == 200


def test_allowed_hosts_and_any_interface(tiny_pipeline_dir):
    with server_client(tiny_pipeline_dir, host="0.0.0.0", allowed_hosts=["studio.lan"]) as (client, _):
        for host in ("studio.lan:7860", "192.168.1.10:7860", "[fe80::1]:7860", "localhost"):
            assert client.get("/sdapi/v1/samplers", headers={"Host": host}).status_code == 200, host
        assert client.get("/sdapi/v1/samplers", headers={"Host": "evil.example"}).status_code == 403


def test_serve_refuses_a_network_host_without_a_key(tiny_pipeline_dir, capsys, monkeypatch):
    from latentdiff.stages.serve import main

    monkeypatch.delenv("LATENTDIFF_API_KEY", raising=False)
    # refused before the model loads (so a missing model is not what is reported)
    assert main(["--model", str(tiny_pipeline_dir / "missing"), "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--insecure-no-key" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["--model", str(tiny_pipeline_dir / "missing"), "--host", "0.0.0.0", "--insecure-no-key"]) == 2
    assert "missing" in capsys.readouterr().err  # with it, serve goes on (and stops at the missing model)


# ---------------------------------------------------------------------------------------- nosniff on every response
def test_every_response_says_nosniff(open_server):
    for response in (open_server.get("/"), open_server.get("/static/app.js"), open_server.get("/sdapi/v1/samplers"),
                     open_server.get("/nope"), open_server.post("/sdapi/v1/txt2img", json={"steps": 0}),
                     open_server.get("/sdapi/v1/samplers", headers={"Host": "evil.example"})):
        assert response.headers.get("x-content-type-options") == "nosniff", response.request.url


def test_an_unhandled_error_says_nosniff(tiny_pipeline_dir):
    from fastapi.testclient import TestClient

    with server_client(tiny_pipeline_dir) as (client, _):
        @client.app.get("/boom")
        def boom():
            raise RuntimeError("boom")

        with TestClient(client.app, base_url=client.base_url, raise_server_exceptions=False) as raw:
            response = raw.get("/boom")
    assert response.status_code == 500 and response.headers.get("x-content-type-options") == "nosniff"


def test_a_chunked_body_past_the_limit_gets_413(open_server):
    from latentdiff import limits

    chunks = (b'{"prompt": "' + b"x" * 65536 for _ in range(limits.MAX_BODY_BYTES // 65536 + 2))
    response = open_server.post("/sdapi/v1/txt2img", content=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and str(limits.MAX_BODY_BYTES) in response.json()["detail"]


def test_a_body_shorter_than_its_content_length_times_out(tiny_pipeline_dir, monkeypatch):
    import threading
    import time

    import uvicorn

    from latentdiff import limits

    monkeypatch.setattr(limits, "BODY_READ_TIMEOUT_S", 0.5, raising=False)
    with server_client(tiny_pipeline_dir) as (client, _):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(client.app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            while not server.started:
                time.sleep(0.05)
            port = sock.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(f"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: "
                             f"application/json\r\nContent-Length: 100\r\n\r\n{{\"prompt\": ".encode())
                started = time.monotonic()
                answer = b""
                while chunk := conn.recv(65536):  # until the server closes the connection
                    answer += chunk
                waited_s = time.monotonic() - started
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"Content-Length" in answer, answer[:300]
    assert waited_s < 5


def test_the_api_key_can_come_from_a_file_or_the_environment(tiny_pipeline_dir, tmp_path, monkeypatch, capsys):
    from latentdiff.config import ServeConfig
    from latentdiff.stages.serve import main, resolve_api_key

    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    monkeypatch.setenv("LATENTDIFF_API_KEY", "from-env")
    assert resolve_api_key(ServeConfig(api_key_file=str(key_file))) == "from-file"
    assert resolve_api_key(ServeConfig()) == "from-env"
    with server_client(tiny_pipeline_dir, api_key=resolve_api_key(ServeConfig(api_key_file=str(key_file)))) as (c, _):
        assert c.get("/sdapi/v1/samplers").status_code == 401
        assert c.get("/sdapi/v1/samplers", headers={"x-api-key": "from-file"}).status_code == 200
    assert main(["--model", str(tiny_pipeline_dir), "--api-key-file", str(tmp_path / "missing")]) == 2
    assert "--api-key-file" in capsys.readouterr().err
