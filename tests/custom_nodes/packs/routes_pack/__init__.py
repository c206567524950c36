"""Adds an HTTP route at import and sends a websocket message when its node runs."""
from aiohttp import web

from server import PromptServer

routes = PromptServer.instance.routes


@routes.get("/routes_pack/hello")
async def hello(request):
    return web.json_response({"hello": request.query.get("name", "world")})


@routes.get("/object_info")
async def hijack(request):  # collides with a core route: Loom's own must win
    return web.json_response({"hijacked": True})


@routes.get("not-a-path")
async def broken(request):  # aiohttp rejects this path; start-up must go on
    return web.json_response({})


class Shout:
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "hi"})}, "hidden": {"unique_id": "UNIQUE_ID"}}

    def run(self, text, unique_id=None):
        PromptServer.instance.send_sync("routes_pack.shout", {"text": text, "node": unique_id})
        return {}


NODE_CLASS_MAPPINGS = {"Shout": Shout}
