"""`/docs` and `/redoc` work offline: their pages reference only this server, and the assets load."""

from __future__ import annotations

import re

import pytest

from helpers.server_client import server_client

ASSET_REF = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|\burl\s*:\s*["']([^"']+)["']""")


@pytest.fixture(scope="module")
def keyed(tiny_pipeline_dir):
    with server_client(tiny_pipeline_dir, api_key="s3cret") as (client, _):
        yield client


@pytest.mark.parametrize("path, script", [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")])
def test_docs_pages_load_their_assets_from_this_server(keyed, path, script):
    page = keyed.get(path)  # no API key needed: a person opens it in a browser
    assert page.status_code == 200
    # no CDN, no Google Fonts: nothing that needs the internet
    assert not re.search(r"https?://", page.text), re.findall(r"https?://[^\s\"']+", page.text)
    refs = [a or b for a, b in ASSET_REF.findall(page.text)]
    assert any(ref.endswith(script) for ref in refs), refs
    for ref in refs:
        if ref.startswith("/openapi.json"):
            continue
        asset = keyed.get(ref)
        assert asset.status_code == 200 and len(asset.content) > 1000, ref
    assert "/openapi.json" in page.text and keyed.get("/openapi.json").status_code == 200
