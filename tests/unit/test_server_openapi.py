"""The OpenAPI schema at /openapi.json tells the truth: generated clients read every
answer through it, so each status a route can send is declared with the body it really has.

A bounded schemathesis run against the in-process server (tiny random pipeline) sends a few hundred
requests, valid ones and ones that break the schema, and checks every answer: no 5xx, every status
declared, every body and content type as declared. Its numbers are printed for the record
(`pytest -s` or `-rP` shows them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import schemathesis  # in the dev extra
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from helpers.server_client import BASE_URL, server_client
from latentdiff.server.engine import PipelineEngine
from latentdiff.server.schemas import ModelDefaults

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
# examples per operation and mode (at most; an operation without parameters has one request to make)
EXAMPLES = {schemathesis.GenerationMode.POSITIVE: 30, schemathesis.GenerationMode.NEGATIVE: 20}
# Requests are made cheap before they are sent (smaller values within the same bounds), and so are the
# defaults that fill what a request leaves out, so that the tiny model answers each in a fraction of a
# second. Both modes: the server also takes 192.0 or "192" for 192.
CHEAP_DEFAULTS = ModelDefaults(width=32, height=32, steps=2, guidance=5.0, scheduler="euler")
CHEAP_CAPS = {"width": 32, "height": 32, "steps": 2, "batch_size": 1, "n_iter": 2, "num_images": 2, "n": 2}


@dataclass
class Tally:
    requests: int = 0
    server_errors: int = 0
    violations: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


def _cheap(case):
    if isinstance(case.body, dict):
        for key, cap in CHEAP_CAPS.items():
            value = case.body.get(key)
            try:
                too_big = not isinstance(value, bool) and float(value) > cap
            except (TypeError, ValueError):
                continue
            if too_big:
                case.body[key] = cap
    return case


def _run(operation, mode, tally: Tally) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    def one(case):
        case = _cheap(case)
        response = case.call(base_url=BASE_URL)  # the loopback Host the server accepts
        tally.requests += 1
        tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
        tally.server_errors += response.status_code >= 500
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as failures:
            for failure in failures.exceptions:
                tally.violations.append(f"{case.method} {case.path} -> {response.status_code}: {failure.title}")

    one()


def _has_something_to_break(operation) -> bool:
    """A body or a typed parameter; any text is a valid job id, so hypothesis would search in vain."""
    raw = operation.definition.raw
    return "requestBody" in raw or any(p.get("schema", {}).get("type") != "string" for p in raw.get("parameters", []))


def test_schema_declares_the_error_statuses_and_bodies_the_server_sends(tiny_pipeline_dir):
    with server_client(tiny_pipeline_dir) as (client, _):
        spec = client.get("/openapi.json").json()
    responses = {f"{method.upper()} {path}": op["responses"] for path, ops in spec["paths"].items()
                 for method, op in ops.items()}
    body = "#/components/schemas/ErrorBody"
    for operation, declared in responses.items():
        assert {"401", "403", "408", "413"} <= set(declared), operation  # the guards answer on every route
    a1111 = responses["POST /sdapi/v1/txt2img"]
    assert {"400", "422", "429", "500", "504"} <= set(a1111) and "Retry-After" in a1111["429"]["headers"]
    assert a1111["422"]["content"]["application/json"]["schema"]["$ref"] == body  # not FastAPI's HTTPValidationError
    assert {"404", "422"} <= set(responses["GET /api/jobs/{job_id}"])
    assert "image/png" in responses["GET /api/jobs/{job_id}/images/{index}"]["200"]["content"]
    openai = responses["POST /v1/images/generations"]
    assert {"400", "409", "429", "500", "504"} <= set(openai) and "422" not in openai  # it answers 400 instead
    assert openai["400"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/OpenAIErrorBody"


@pytest.mark.slow  # 65 s: a few hundred generated requests
def test_schemathesis_finds_no_5xx_and_no_schema_violation(tiny_pipeline_dir, monkeypatch):
    monkeypatch.setattr(PipelineEngine, "defaults", property(lambda engine: CHEAP_DEFAULTS))
    with server_client(tiny_pipeline_dir) as (client, _):
        schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
        schema.app = client.app
        tally = Tally()
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in EXAMPLES:
                if mode == schemathesis.GenerationMode.POSITIVE or _has_something_to_break(operation):
                    _run(operation, mode, tally)
    distinct = sorted(set(tally.violations))
    print(f"\nschemathesis: {tally.requests} requests, {tally.server_errors} 5xx, {len(tally.violations)} schema "
          f"violations ({len(distinct)} distinct); statuses {dict(sorted(tally.statuses.items()))}")
    for line in distinct[:40]:
        print("  " + line)
    assert tally.requests >= 200
    assert tally.server_errors == 0 and not distinct, "\n".join(distinct[:20])
