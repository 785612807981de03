"""The API fuzzed from its own OpenAPI description (schemathesis), plus structured fuzzing of
the two payloads schemathesis cannot shape (the settings JSON and the bundle's shot.json),
against one real server process: zero 5xx, every error a JSON {error, fix, field}.

Bounded so it runs in well under a minute on 2 cores (30 examples, derandomized); the
`nightly` marker runs the OpenAPI fuzz at 300 random examples per operation
(`make test-nightly`). Each test counts its own requests and 5xx, so no figure depends on
which tests ran before it.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from pathlib import Path

import httpx
import pytest
import schemathesis
from conftest import write_synthetic_bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from serverproc import ServerProcess
from storyshade.settings import Settings
from test_server_helpers import post_job, zip_dir

EXAMPLES = 30  # per operation (schemathesis) or per payload test (hypothesis)
NIGHTLY_EXAMPLES = 300  # per operation, random: the nightly run


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path):
    data = tmp_path_factory.mktemp("fuzz") / "data"
    with ServerProcess(data, tiny_models, "--max-upload-mb", "8") as proc:
        yield proc


@pytest.fixture
def seen(request: pytest.FixtureRequest, capsys):
    """This test's requests, 5xx and accepted jobs; printed after it, checked by it."""
    counts: Counter[str] = Counter()
    yield counts
    with capsys.disabled():
        print(
            f"\n[figures] {request.node.name}: " + " ".join(f"{k}={v}" for k, v in counts.items())
        )
    assert counts["5xx"] == 0


def _check_error_shape(seen: Counter, status: int, body: bytes, content_type: str) -> None:
    seen["requests"] += 1
    seen["5xx"] += status >= 500
    assert status < 500, body[:500]
    if status >= 400:
        assert content_type.startswith("application/json"), content_type
        assert set(json.loads(body)) == {"error", "fix", "field"}, body[:500]
        assert b"Traceback" not in body


DEPTHS = [
    pytest.param(EXAMPLES, True, id="quick"),
    pytest.param(NIGHTLY_EXAMPLES, False, id="nightly", marks=pytest.mark.nightly),
]


@pytest.mark.parametrize("examples, derandomize", DEPTHS)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_openapi_fuzz(fuzz_server, seen, mode, examples, derandomize) -> None:
    """Every operation in the server's own /openapi.json, with data that fits the schema
    (positive) and data that breaks it (negative); positive answers must match the schema.

    Drives schemathesis' per-operation strategies from hypothesis directly: its pytest
    plugin's fixture-based loader does not run under pytest 9."""
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7

    for operation in operations:

        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=derandomize,
            database=None,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case) -> None:
            # The fuzzer only names jobs that do not exist, so an events stream gets its
            # 404 at once rather than following a job.
            response = case.call(timeout=30)
            ctype = response.headers.get("content-type") or [""]  # schemathesis: lists
            _check_error_shape(seen, response.status_code, response.content, ctype[0])
            if mode is GenerationMode.POSITIVE:
                # Schema-valid is not valid here: a bundle is a zip whose content no schema
                # can describe, so "positive data must be accepted" does not apply.
                case.validate_response(response, excluded_checks=[positive_data_acceptance])

        try:
            fuzz()
        except Unsatisfiable:  # nothing to break: e.g. GET /v1/health takes no input
            assert mode is GenerationMode.NEGATIVE
    assert seen["requests"] >= examples  # the operations with inputs get every example


# -- payloads schemathesis sees only as strings and bytes --------------------------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
SETTING_KEYS = [*sorted(Settings.model_fields), "preset", "nonsense"]
settings_json = st.dictionaries(
    st.sampled_from(SETTING_KEYS), json_values | st.sampled_from(["tiny", "../x", "", 8, 0.5])
)


@pytest.fixture(scope="module")
def valid_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_bundle(tmp_path_factory.mktemp("fuzzbundle") / "b", frames=2)


def _post_and_cancel(seen: Counter, client: httpx.Client, data: bytes, text: str) -> None:
    resp = post_job(client, data, text)
    ctype = resp.headers.get("content-type", "")
    _check_error_shape(seen, resp.status_code, resp.content, ctype)
    assert resp.status_code in (201, 400, 413, 422), resp.text
    if resp.status_code == 201:  # a valid job: don't spend the CPU on it
        seen["accepted"] += 1
        cancel = client.delete(f"/v1/jobs/{resp.json()['id']}")
        _check_error_shape(seen, cancel.status_code, cancel.content, cancel.headers["content-type"])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(overrides=settings_json)
def test_settings_fuzz(fuzz_server, seen, valid_bundle, overrides) -> None:
    data = zip_dir(valid_bundle)
    with httpx.Client(base_url=fuzz_server.url, timeout=30) as client:
        _post_and_cancel(seen, client, data, json.dumps({"preset": "tiny", **overrides}))


def _mutate(shot: dict, path: list, value) -> dict:
    """`shot` with the value at `path` (keys/indexes, clipped to what exists) replaced."""
    node = shot
    for i, key in enumerate(path):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = keys[key % len(keys)]
        if i == len(path) - 1 or not isinstance(node[key], dict | list):
            node[key] = value
            break
        node = node[key]
    return shot


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.lists(st.integers(0, 50), min_size=1, max_size=5), value=json_values)
def test_shot_json_fuzz(fuzz_server, seen, valid_bundle, path, value) -> None:
    shot = _mutate(json.loads((valid_bundle / "shot.json").read_text()), path, value)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("shot.json", json.dumps(shot))
        for exr in sorted((valid_bundle / "frames").glob("*.exr")):
            zf.write(exr, f"frames/{exr.name}")
    with httpx.Client(base_url=fuzz_server.url, timeout=30) as client:
        _post_and_cancel(seen, client, buf.getvalue(), '{"preset": "tiny", "steps": 1}')
