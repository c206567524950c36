"""Auth token, Origin / Host checks, --listen rules, CLI flags."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from server_helpers import graph

from app.config import Config, ConfigError, parse_args
from server import create_app

TOKEN = "s3cret-token"


@pytest.fixture
async def secured(aiohttp_client: Any, make_loom: Any) -> Any:
    loom = make_loom(listen=("0.0.0.0",), auth_token=TOKEN)
    return await aiohttp_client(create_app(loom, web_root=None))


async def test_no_token_is_401_json(secured: Any) -> None:
    for method, path in (("GET", "/api/queue"), ("POST", "/prompt"), ("GET", "/object_info"), ("GET", "/ws")):
        resp = await secured.request(method, path)
        assert resp.status == 401, path
        assert (await resp.json())["error"]["type"] == "unauthorized"
    resp = await secured.get("/api/queue", headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401


async def test_bearer_token(secured: Any) -> None:
    h = {"Authorization": f"Bearer {TOKEN}"}
    assert (await secured.get("/api/queue", headers=h)).status == 200
    resp = await secured.post("/prompt", json={"prompt": graph()}, headers=h)
    assert resp.status == 200


async def test_query_token_sets_httponly_cookie(secured: Any) -> None:
    resp = await secured.get(f"/api/queue?token={TOKEN}")
    assert resp.status == 200
    cookie = resp.headers["Set-Cookie"]
    assert "loom_token=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # the client's cookie jar now carries it
    assert (await secured.get("/api/queue")).status == 200
    ws = await secured.ws_connect("/ws?clientId=a")
    assert (await ws.receive_json())["type"] == "status"
    await ws.close()


async def test_browser_gets_login_page(secured: Any) -> None:
    resp = await secured.get("/", headers={"Accept": "text/html"})
    assert resp.status == 401 and resp.content_type == "text/html"
    assert 'name="token"' in await resp.text()
    wrong = await secured.get("/?token=nope", headers={"Accept": "text/html"})
    assert wrong.status == 401 and "Wrong token" in await wrong.text()
    resp = await secured.get(f"/?token={TOKEN}&x=1", headers={"Accept": "text/html"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/?x=1"
    assert "HttpOnly" in resp.headers["Set-Cookie"]
    page = await secured.get("/?x=1", headers={"Accept": "text/html"})
    assert page.status == 200 and "Loom" in await page.text()


async def test_listen_beyond_loopback_needs_token(make_loom: Any) -> None:
    with pytest.raises(ConfigError, match="auth-token"):
        create_app(make_loom(listen=("0.0.0.0",)), web_root=None)


@pytest.mark.parametrize("headers", [
    {"Origin": "null"},
    {"Origin": "http://evil.example"},
    {"Origin": "http://127.0.0.1.evil.example"},
    {"Origin": "file://"},
])
async def test_foreign_origin_refused(client: Any, headers: dict[str, str]) -> None:
    for path in ("/prompt", "/queue", "/interrupt", "/free", "/upload/image", "/settings", "/userdata/x.txt"):
        resp = await client.post(path, json={"prompt": graph()}, headers=headers)
        assert resp.status == 403, path
        assert (await resp.json())["error"]["type"] == "bad_origin"
    assert await (await client.get("/queue")).json() == {"queue_running": [], "queue_pending": []}


async def test_options_is_empty_200_without_cors(client: Any) -> None:
    resp = await client.options("/api/prompt", headers={"Origin": "http://evil.example",
                                                         "Access-Control-Request-Method": "POST"})
    assert resp.status == 200 and await resp.read() == b""
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_same_origin_allowed(client: Any) -> None:
    host = f"{client.host}:{client.port}"
    for origin in (f"http://{host}", f"http://localhost:{client.port}"):
        resp = await client.post("/prompt", json={"prompt": graph()}, headers={"Origin": origin})
        assert resp.status == 200, origin
    resp = await client.post("/prompt", json={"prompt": graph()},
                             headers={"Origin": f"http://127.0.0.1:{client.port + 1}"})
    assert resp.status == 403


async def test_websocket_origin_checked(client: Any) -> None:
    from aiohttp import WSServerHandshakeError

    with pytest.raises(WSServerHandshakeError) as info:
        await client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
    assert info.value.status == 403


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8188", "192.168.1.5:8188", ""])
async def test_dns_rebinding_host_refused(client: Any, host: str) -> None:
    resp = await client.get("/api/history", headers={"Host": host})
    assert resp.status == 403 and (await resp.json())["error"]["type"] == "bad_host"


@pytest.mark.parametrize("host", ["localhost:8188", "127.0.0.1", "[::1]:8188", "app.localhost"])
async def test_loopback_hosts_allowed(client: Any, host: str) -> None:
    assert (await client.get("/api/queue", headers={"Host": host})).status == 200


def test_cli_flags(tmp_path: Path) -> None:
    cfg = parse_args(["--listen", "--port", "9000", "--cpu", "--base-directory", str(tmp_path),
                      "--output-directory", str(tmp_path / "o"), "--temp-directory", str(tmp_path / "t"),
                      "--cache-lru", "5", "--preview-method", "taesd", "--preview-size", "256",
                      "--extra-model-paths-config", "a.yaml", "b.yaml", "--disable-all-custom-nodes",
                      "--auth-token", "tok", "--max-upload-size", "2", "--verbose"])
    assert cfg.listen == ("0.0.0.0", "::") and cfg.port == 9000 and cfg.cpu
    assert cfg.output_dir == (tmp_path / "o").resolve() and cfg.temp_dir == (tmp_path / "t" / "temp").resolve()
    assert cfg.input_dir == tmp_path / "input" and cfg.user_dir == tmp_path / "user"
    assert (cfg.cache, cfg.cache_lru, cfg.preview_method, cfg.preview_size) == ("lru", 5, "taesd", 256)
    assert cfg.extra_model_paths_config == (Path("a.yaml"), Path("b.yaml"))
    assert cfg.disable_all_custom_nodes and cfg.auth_token == "tok" and cfg.max_upload_bytes == 2 * 1024 * 1024
    assert cfg.verbose == "DEBUG" and not cfg.loopback_only
    default = parse_args([])
    assert default.listen == ("127.0.0.1",) and default.port == 8188 and default.cache == "classic"
    assert default.loopback_only and not default.auth_required
    assert parse_args(["--cache-ram"]).cache == "ram" and parse_args(["--cache-none"]).cache == "none"
    assert parse_args(["--listen", "10.0.0.2,127.0.0.1"]).listen == ("10.0.0.2", "127.0.0.1")
    with pytest.raises(SystemExit):
        parse_args(["--cache-none", "--cache-classic"])
    with pytest.raises(ConfigError, match="--port"):
        parse_args(["--port", "70000"])
    assert isinstance(Config(), Config)


def test_cache_flags_build_policies(tmp_path: Path) -> None:
    pytest.importorskip("executor")
    from app.engine_factory import _cache_policy

    for argv in ([], ["--cache-lru", "3"], ["--cache-none"], ["--cache-ram", "2"]):
        assert _cache_policy(parse_args(argv)) is not None


def test_main_generates_and_prints_token_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from server_fakes import FakeExecutor, FakeRegistry, InterruptFlag, fake_validate

    import server
    from app.engine_factory import Engine
    from app.loom import Loom

    seen: dict[str, Any] = {}

    def fake_build(cfg: Config) -> Loom:
        reg = FakeRegistry()
        seen["loom"] = Loom(config=cfg.with_changes(custom_node_dirs=(tmp_path / "none",)),
                            engine=Engine(reg, FakeExecutor(reg)), validate_fn=fake_validate,
                            interrupt_flag=InterruptFlag())
        return seen["loom"]

    def fake_run_app(app: Any, **kwargs: Any) -> None:
        seen["run"] = kwargs

    monkeypatch.setattr(server, "build_loom", fake_build)
    monkeypatch.setattr(server.web, "run_app", fake_run_app)
    assert server.main(["--listen", "0.0.0.0", "--port", "8189", "--base-directory", str(tmp_path)]) == 0
    token = seen["loom"].config.auth_token
    assert token and len(token) >= 24
    assert seen["run"]["host"] == ["0.0.0.0"] and seen["run"]["port"] == 8189
    out = capsys.readouterr().out
    assert out.count(token) == 2 and "printed once" in out  # the token line and the ready-made URL
    assert server.main(["--port", "99999"]) == 2
    assert "--port" in capsys.readouterr().err
