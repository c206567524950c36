"""Hypothesis: hostile POST /prompt bodies never produce a 5xx, and the worker keeps running."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_helpers import graph, wait_history

from app.engine_factory import Engine
from app.loom import Loom
from server import create_app

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
link = st.tuples(st.sampled_from(["1", "9", "x", ""]),
                 st.one_of(st.integers(-2, 3), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3)))
node = st.fixed_dictionaries({"class_type": st.one_of(st.sampled_from(["Const", "Show", "Add", "Fail", "Nope"]),
                                                      json_values)},
                             optional={"inputs": st.one_of(json_values, st.dictionaries(
                                 st.sampled_from(["value", "a", "b", "seconds"]),
                                 st.one_of(json_values, link.map(list)), max_size=3))})
prompts = st.one_of(json_values, st.dictionaries(st.sampled_from(["1", "2", "9", ""]), st.one_of(node, json_values),
                                                 max_size=4))
envelopes = st.fixed_dictionaries({}, optional={
    "prompt": prompts, "number": json_values, "front": json_values, "client_id": json_values,
    "extra_data": json_values, "prompt_id": json_values, "partial_execution_targets": json_values})
bodies = st.one_of(envelopes, json_values, st.binary(max_size=40),
                   st.sampled_from([b'{"prompt": NaN}', b'{"prompt": {"1": Infinity}}', b"[" * 5000,
                                    b'{"prompt": {}, "number": -Infinity}']))


def real_executor_loom(tmp_path: Path) -> Loom:
    from server_fakes import Add, Const, Fail, Show

    import executor
    from app.config import Config

    reg = executor.NodeRegistry()
    for cls in (Const, Add, Show, Fail):
        reg.register(cls.__name__, cls, source="tests")
    return Loom(config=Config(base_directory=tmp_path, custom_node_dirs=()), engine=Engine(reg, executor.PromptExecutor(reg)), validate_fn=executor.validate_prompt,
                interrupt_flag=executor.InterruptFlag())


ERROR_KEYS = {"type", "message", "details", "extra_info"}


def assert_refusal_shape(status: int, payload: Any, body: Any) -> None:
    """Issue 26: every 400 from /prompt carries `error` {type, message, details, extra_info} and `node_errors`."""
    assert status == 400, (status, body, payload)
    assert isinstance(payload, dict) and set(payload) == {"error", "node_errors"}, (body, payload)
    assert isinstance(payload["error"], dict) and set(payload["error"]) == ERROR_KEYS, (body, payload)
    assert isinstance(payload["error"]["message"], str) and payload["error"]["message"], (body, payload)
    assert isinstance(payload["error"]["extra_info"], dict) and isinstance(payload["node_errors"], dict)


def test_every_refusal_has_one_shape(make_loom: Any) -> None:
    """1,200 hostile bodies (no worker: validation only): no 5xx, and each 400 in ComfyUI's two-key shape."""
    loom = make_loom()
    collected: list[Any] = [b"", b" ", b"null", b"[]", b"\xff\xfe", b"{", b'"prompt"', b"{}", b'{"prompt": null}',
                            b'{"prompt": {}, "prompt_id": "not-a-uuid"}', b'{"prompt": {}, "prompt_id": 7}']

    @settings(max_examples=1200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(bodies)
    def collect(body: Any) -> None:
        collected.append(body)

    collect()

    async def scenario() -> int:
        from aiohttp.test_utils import TestClient, TestServer

        refused = 0
        async with TestClient(TestServer(create_app(loom, web_root=None, start_worker=False))) as client:
            for body in collected:
                data = body if isinstance(body, bytes) else json.dumps(body, allow_nan=False).encode()
                resp = await client.post("/prompt", data=data, headers={"Content-Type": "application/json"})
                payload = await resp.json()
                if resp.status != 200:
                    assert_refusal_shape(resp.status, payload, body)
                    refused += 1
        return refused

    refused = asyncio.run(scenario())
    assert refused > len(collected) // 2  # the corpus is mostly hostile: the shape was checked many times


@pytest.mark.parametrize("which", ["fake", "real"])
def test_fuzz_post_prompt(which: str, make_loom: Any, tmp_path: Path) -> None:
    loom = make_loom() if which == "fake" else real_executor_loom(tmp_path / "real")
    async def scenario(bodies_seen: list[Any]) -> None:
        from aiohttp.test_utils import TestClient, TestServer

        async with TestClient(TestServer(create_app(loom, web_root=None))) as client:
            for body in bodies_seen:
                data = body if isinstance(body, bytes) else json.dumps(body, allow_nan=False).encode()
                resp = await client.post("/api/prompt", data=data, headers={"Content-Type": "application/json"})
                assert resp.status < 500, (body, await resp.text())
                payload = await resp.json()
                if resp.status == 200:
                    assert "prompt_id" in payload
                else:
                    assert_refusal_shape(resp.status, payload, body)
            resp = await client.post("/prompt", json={"prompt": graph(3)})
            assert resp.status == 200
            entry = await wait_history(client, (await resp.json())["prompt_id"], timeout=20)
            assert entry["outputs"]["9"] == {"text": ["3"]}
            assert loom.backend.status().alive

    collected: list[Any] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(bodies)
    def collect(body: Any) -> None:
        collected.append(body)

    collect()
    try:
        asyncio.run(scenario(collected))
    finally:
        loom.close()
