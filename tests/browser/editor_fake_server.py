"""A small stand-in for Loom's server, speaking the ComfyUI wire format the editor uses.

It serves web/dist, /object_info (fake_defs), validates prompts (400 node_errors), runs them with
websocket events (progress, binary previews, executed) and writes PNGs with `prompt` / `workflow`
tEXt chunks. Run: python tests/browser/editor_fake_server.py --port 8199 --root /tmp/x [--token T]
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import struct
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from editor_fake_defs import node_defs
from PIL import Image, PngImagePlugin

WEB_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"


def _compatible(out_type: str, in_type: str) -> bool:
    a, b = out_type.upper(), in_type.upper()
    if "*" in (a, b) or a == b:
        return True
    return bool(set(a.split(",")) & set(b.split(",")))


def _err(kind: str, message: str, details: str, name: str) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {"input_name": name}}


class FakeLoom:
    """State of one fake server: directories, queue, history, sockets."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("input", "output", "models/checkpoints"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.queue: asyncio.Queue[tuple[str, dict[str, Any], dict[str, Any]]] = asyncio.Queue()
        self.pending: list[list[Any]] = []
        self.running: list[Any] | None = None
        self.history: dict[str, Any] = {}
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.flags: dict[str, dict[str, Any]] = {}
        self.interrupted = False
        self.counter = 0
        self.posted: list[dict[str, Any]] = []

    def defs(self) -> dict[str, Any]:
        ckpts = sorted(p.name for p in (self.root / "models/checkpoints").iterdir()) or ["demo.safetensors"]
        inputs = sorted(str(p.relative_to(self.root / "input")) for p in (self.root / "input").rglob("*.png"))
        return node_defs(ckpts, inputs or ["example.png"])

    def validate(self, prompt: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        defs = self.defs()
        for nid, node in prompt.items():
            if node.get("class_type") not in defs:
                raise web.HTTPBadRequest(text=json.dumps({"error": {"type": "invalid_prompt", "message": f"Cannot execute because node {node.get('class_type')} does not exist.", "details": f"Node ID '#{nid}'", "extra_info": {}}, "node_errors": {}}), content_type="application/json")
        outputs = [nid for nid, n in prompt.items() if defs[n["class_type"]]["output_node"]]
        if not outputs:
            raise web.HTTPBadRequest(text=json.dumps({"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}, "node_errors": {}}), content_type="application/json")
        errors: dict[str, Any] = {}
        for nid, node in prompt.items():
            d = defs[node["class_type"]]
            errs = []
            for name, spec in d["input"]["required"].items():
                value = node["inputs"].get(name)
                if value is None:
                    errs.append(_err("required_input_missing", "Required input is missing", name, name))
                elif isinstance(value, list):
                    src = prompt.get(str(value[0]))
                    out_types = defs[src["class_type"]]["output"] if src else []
                    if not src or value[1] >= len(out_types):
                        errs.append(_err("bad_linked_input", "Bad linked input", name, name))
                    elif not isinstance(spec[0], list) and not _compatible(out_types[value[1]], spec[0]):
                        errs.append(_err("return_type_mismatch", "Return type mismatch between linked nodes",
                                         f"{name}, received_type({out_types[value[1]]}) mismatch input_type({spec[0]})", name))
                elif isinstance(spec[0], list) and str(value).removesuffix(" [input]") not in spec[0]:
                    errs.append(_err("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {spec[0]}", name))
            if errs:
                errors[nid] = {"errors": errs, "dependent_outputs": outputs, "class_type": node["class_type"]}
        if errors:
            body = {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}, "node_errors": errors}
            raise web.HTTPBadRequest(text=json.dumps(body), content_type="application/json")
        return outputs, {}

    async def send(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        targets = [self.sockets[sid]] if sid in self.sockets else (list(self.sockets.values()) if sid is None else [])
        for ws in targets:
            if not ws.closed:
                await ws.send_str(json.dumps({"type": event, "data": data}))

    async def send_preview(self, sid: str | None, prompt_id: str, node: str, color: tuple[int, int, int]) -> None:
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), color).save(buf, "JPEG")
        ws = self.sockets.get(sid or "")
        if ws is None or ws.closed:
            return
        if self.flags.get(sid or "", {}).get("supports_preview_metadata"):
            meta = json.dumps({"node_id": node, "prompt_id": prompt_id, "display_node_id": node,
                               "parent_node_id": None, "real_node_id": node, "image_type": "image/jpeg"}).encode()
            await ws.send_bytes(struct.pack(">II", 4, len(meta)) + meta + buf.getvalue())
        else:
            await ws.send_bytes(struct.pack(">II", 1, 1) + buf.getvalue())

    async def status(self) -> None:
        remaining = len(self.pending) + (1 if self.running else 0)
        await self.send("status", {"status": {"exec_info": {"queue_remaining": remaining}}}, None)

    async def worker(self) -> None:
        while True:
            prompt_id, prompt, extra = await self.queue.get()
            item = next((p for p in self.pending if p[1] == prompt_id), None)
            if item is None:
                continue
            self.pending.remove(item)
            self.running = item
            self.interrupted = False
            await self.run(prompt_id, prompt, extra)
            self.running = None
            await self.status()
            await self.send("executing", {"node": None, "prompt_id": prompt_id}, extra.get("client_id"))

    async def run(self, prompt_id: str, prompt: dict[str, Any], extra: dict[str, Any]) -> None:
        sid = extra.get("client_id")
        ts = lambda: int(time.time() * 1000)  # noqa: E731
        await self.send("execution_start", {"prompt_id": prompt_id, "timestamp": ts()}, sid)
        await self.send("execution_cached", {"nodes": [], "prompt_id": prompt_id, "timestamp": ts()}, sid)
        outputs: dict[str, Any] = {}
        status = "success"
        seed_text = json.dumps(prompt, sort_keys=True)
        digest = hashlib.sha256(seed_text.encode()).digest()
        color = (digest[0], digest[1], digest[2])
        for nid in sorted(prompt, key=lambda k: self._depth(prompt, k)):
            node = prompt[nid]
            await self.send("executing", {"node": nid, "display_node": nid, "prompt_id": prompt_id}, sid)
            if node["class_type"] == "KSampler" and node["inputs"].get("steps") == 666:
                status = "error"
                await self.send("execution_error", {
                    "prompt_id": prompt_id, "node_id": nid, "node_type": "KSampler", "executed": [],
                    "exception_message": "steps=666 is cursed", "exception_type": "ValueError",
                    "traceback": [], "current_inputs": {}, "current_outputs": [], "timestamp": ts()}, sid)
                self.history[prompt_id] = self._entry(prompt_id, prompt, extra, outputs, status)
                return
            if node["class_type"] == "KSampler":
                steps = min(int(node["inputs"].get("steps", 1)), 300)
                for i in range(steps):
                    if self.interrupted:
                        status = "error"
                        await self.send("execution_interrupted", {"prompt_id": prompt_id, "node_id": nid, "node_type": "KSampler", "executed": [], "timestamp": ts()}, sid)
                        self.history[prompt_id] = self._entry(prompt_id, prompt, extra, outputs, status)
                        return
                    await asyncio.sleep(0.03)
                    await self.send("progress", {"value": i + 1, "max": steps, "prompt_id": prompt_id, "node": nid}, sid)
                    if i % 5 == 0 or i == steps - 1:
                        await self.send_preview(sid, prompt_id, nid, color)
            if node["class_type"] in ("SaveImage", "PreviewImage"):
                ui = {"images": [self._save(prompt, extra, color, node)]}
                outputs[nid] = ui
                await self.send("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": prompt_id}, sid)
        await self.send("execution_success", {"prompt_id": prompt_id, "timestamp": ts()}, sid)
        self.history[prompt_id] = self._entry(prompt_id, prompt, extra, outputs, status)

    def _depth(self, prompt: dict[str, Any], nid: str, guard: int = 0) -> int:
        links = [v for v in prompt[nid]["inputs"].values() if isinstance(v, list) and str(v[0]) in prompt]
        return 0 if not links or guard > 50 else 1 + max(self._depth(prompt, str(v[0]), guard + 1) for v in links)

    def _save(self, prompt: dict[str, Any], extra: dict[str, Any], color: tuple[int, int, int], node: dict[str, Any]) -> dict[str, str]:
        info = PngImagePlugin.PngInfo()
        info.add_text("prompt", json.dumps(prompt))
        for key, value in (extra.get("extra_pnginfo") or {}).items():
            info.add_text(key, json.dumps(value))
        prefix = str(node["inputs"].get("filename_prefix", "ComfyUI"))
        self.counter += 1
        name = f"{prefix}_{self.counter:05d}_.png"
        Image.new("RGB", (64, 64), color).save(self.root / "output" / name, pnginfo=info, compress_level=4)
        return {"filename": name, "subfolder": "", "type": "output"}

    def _entry(self, prompt_id: str, prompt: dict[str, Any], extra: dict[str, Any], outputs: dict[str, Any], status: str) -> dict[str, Any]:
        return {"prompt": [0, prompt_id, prompt, extra, list(outputs)], "outputs": outputs,
                "status": {"status_str": status, "completed": status == "success", "messages": []}, "meta": {}}


STATE: web.AppKey[FakeLoom] = web.AppKey("state", FakeLoom)
TOKEN: web.AppKey[str] = web.AppKey("token", str)


@web.middleware
async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
    token = request.app[TOKEN]
    if not token:
        return await handler(request)
    if request.query.get("token") == token:
        resp = web.HTTPFound(request.rel_url.with_query({k: v for k, v in request.query.items() if k != "token"}))
        resp.set_cookie("loom_token", token, httponly=True, samesite="Strict")
        raise resp
    if request.cookies.get("loom_token") == token or request.headers.get("Authorization") == f"Bearer {token}":
        return await handler(request)
    if request.path == "/":
        return web.Response(status=401, text="<h1>Loom: sign in</h1><p>Open this page with ?token=...</p>", content_type="text/html")
    return web.Response(status=401)


def create_app(root: Path, token: str = "") -> web.Application:
    app = web.Application(middlewares=[auth])
    state = FakeLoom(root)
    app[STATE] = state
    app[TOKEN] = token
    r = web.RouteTableDef()

    @r.get("/")
    async def index(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_DIST / "index.html")

    @r.get("/object_info")
    async def object_info(_: web.Request) -> web.Response:
        return web.json_response(state.defs())

    @r.post("/prompt")
    async def post_prompt(request: web.Request) -> web.Response:
        body = await request.json()
        state.posted.append(body)
        prompt = body["prompt"]
        state.validate(prompt)
        prompt_id = str(uuid.uuid4())
        extra = dict(body.get("extra_data") or {})
        extra["client_id"] = body.get("client_id")
        number = -len(state.posted) if body.get("front") else len(state.posted)
        state.pending.append([number, prompt_id, prompt, extra, []])
        await state.queue.put((prompt_id, prompt, extra))
        await state.status()
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    @r.get("/debug/posted")
    async def posted(_: web.Request) -> web.Response:
        return web.json_response(state.posted)

    @r.get("/queue")
    async def get_queue(_: web.Request) -> web.Response:
        return web.json_response({"queue_running": [state.running] if state.running else [], "queue_pending": state.pending})

    @r.post("/queue")
    async def post_queue(request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            state.pending.clear()
        for pid in body.get("delete", []):
            state.pending[:] = [p for p in state.pending if p[1] != pid]
        await state.status()
        return web.Response()

    @r.post("/interrupt")
    async def interrupt(_: web.Request) -> web.Response:
        state.interrupted = True
        return web.Response()

    @r.get("/history")
    async def history(_: web.Request) -> web.Response:
        return web.json_response(state.history)

    @r.post("/history")
    async def post_history(request: web.Request) -> web.Response:
        if (await request.json()).get("clear"):
            state.history.clear()
        return web.Response()

    @r.get("/view")
    async def view(request: web.Request) -> web.StreamResponse:
        folder = {"output": "output", "input": "input", "temp": "output"}[request.query.get("type", "output")]
        sub = request.query.get("subfolder", "")
        name = Path(request.query["filename"]).name
        path = state.root / folder / sub / name
        if ".." in sub or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    async def save_upload(request: web.Request) -> tuple[dict[str, Any], bytes, dict[str, str]]:
        fields: dict[str, str] = {}
        data = b""
        filename = ""
        reader = await request.multipart()
        async for part in reader:
            if part.name == "image":
                filename = part.filename or "upload.png"
                data = await part.read()
            else:
                fields[part.name or ""] = await part.text()
        sub = fields.get("subfolder", "")
        target = state.root / "input" / sub / Path(filename).name
        target.parent.mkdir(parents=True, exist_ok=True)
        return {"name": target.name, "subfolder": sub, "type": "input", "_path": str(target)}, data, fields

    @r.post("/upload/image")
    async def upload_image(request: web.Request) -> web.Response:
        res, data, _ = await save_upload(request)
        Path(res.pop("_path")).write_bytes(data)
        return web.json_response(res)

    @r.post("/upload/mask")
    async def upload_mask(request: web.Request) -> web.Response:
        res, data, fields = await save_upload(request)
        ref = json.loads(fields["original_ref"])
        original = Image.open(state.root / ref.get("type", "input") / ref.get("subfolder", "") / ref["filename"]).convert("RGBA")
        mask = Image.open(io.BytesIO(data)).convert("RGBA").resize(original.size)
        original.putalpha(mask.getchannel("A"))
        original.save(res.pop("_path"))
        return web.json_response(res)

    @r.get("/ws")
    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        state.sockets[sid] = ws
        await ws.send_str(json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": len(state.pending)}}, "sid": sid}}))
        first = True
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and first:
                first = False
                data = json.loads(msg.data)
                if data.get("type") == "feature_flags":
                    state.flags[sid] = data.get("data", {})
        state.sockets.pop(sid, None)
        return ws

    app.add_routes(r)
    app.router.add_static("/", WEB_DIST)

    async def start_worker(app: web.Application) -> Any:
        task = asyncio.create_task(state.worker())
        yield
        task.cancel()

    app.cleanup_ctx.append(start_worker)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    web.run_app(create_app(args.root, args.token), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
