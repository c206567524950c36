"""The ComfyUI names Krita AI Diffusion's server packs (Acly's tooling-nodes and inpaint-nodes) need from Loom:
`comfy.model_detection` over header-only shapes, `comfy.lora.calculate_weight` and ComfyUI-format patches given to
`add_patches`, ModelPatcher attachments, binary `send_sync` frames, `Combo.Output(options=...)`."""
from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from PIL import Image


class FakeTensor(NamedTuple):
    """What tooling-nodes' model inspection passes: only a shape, read from the safetensors header."""

    shape: tuple[int, ...]


@pytest.fixture
def shims(packs: Any) -> Any:
    packs.load("good_pack")
    return packs


def _header_dict(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header: dict[str, Any] = json.loads(raw[8:8 + size])
    return {k: (v if k == "__metadata__" else FakeTensor(tuple(v["shape"]))) for k, v in header.items()}


def test_model_detection_from_header_shapes(shims: Any, fixtures_dir: Path) -> None:
    import comfy.utils
    from comfy import model_detection
    from comfy.model_base import ModelType

    cfg = _header_dict(fixtures_dir / "tiny-sd15" / "tiny-sd15.safetensors")
    prefix = model_detection.unet_prefix_from_state_dict(cfg)
    assert prefix == "model.diffusion_model."
    unet_config = model_detection.detect_unet_config(cfg, prefix)
    assert unet_config is not None and unet_config["in_channels"] == 4
    assert unet_config["model_channels"] == cfg[prefix + "input_blocks.0.0.weight"].shape[0]
    base = model_detection.model_config_from_unet_config(unet_config)
    assert type(base).__name__ == "SD15" and base.model_type(cfg) is ModelType.EPS
    assert base.model_type({**cfg, "v_pred": FakeTensor(())}) is ModelType.V_PREDICTION
    # a UNet-only file (keys without prefix), as tooling-nodes inspects diffusion_models
    unet_only = comfy.utils.state_dict_prefix_replace(dict(cfg), {prefix: ""}, filter_keys=False)
    again = model_detection.detect_unet_config(unet_only, "")
    assert again == unet_config and type(model_detection.model_config_from_unet_config(again)).__name__ == "SD15"
    # not a diffusion model, or a config Loom did not detect: None, as ComfyUI answers for what it does not know
    assert model_detection.detect_unet_config({"a.weight": FakeTensor((3, 3))}, prefix) is None
    assert model_detection.model_config_from_unet_config({"model_channels": 320}) is None
    assert model_detection.unet_prefix_from_state_dict({"x": 1}) == "model."


def test_calculate_weight_applies_deltas_and_names_unknown_kinds(shims: Any) -> None:
    import comfy.lora

    weight = torch.ones(2, 3)
    delta = torch.arange(6.0).reshape(2, 3)
    out = comfy.lora.calculate_weight([(0.5, delta, 1.0, None, None), (1.0, ("diff", (delta,)), 2.0)], weight, "k")
    assert out is weight and torch.equal(out, (1 + 0.5 * delta) * 2 + delta)
    with pytest.raises(NotImplementedError, match=r"unet\.w.*'lora'"):
        comfy.lora.calculate_weight([(1.0, ("lora", (delta, delta)))], torch.ones(2, 3), "unet.w")


def test_patch_kinds_go_through_calculate_weight_as_packs_replace_it(shims: Any, tiny_sd15: Any) -> None:
    import comfy.lora

    model, _ = tiny_sd15
    name = "input_blocks.0.0.bias"
    base = model.diffusion_model.get_parameter(name).detach().float()
    delta = torch.linspace(-1, 1, base.numel()).reshape(base.shape)

    plain = model.clone()
    assert plain.add_patches({f"diffusion_model.{name}": ("diff", (delta,))}, 0.5) == [f"diffusion_model.{name}"]
    assert torch.allclose(plain.patched_state_dict()[name].float(), base + 0.5 * delta)

    original = comfy.lora.calculate_weight
    seen: list[str] = []

    def packs_calculate_weight(patches: Any, weight: torch.Tensor, key: str, intermediate_dtype: Any = torch.float32,
                               original_weights: Any = None) -> torch.Tensor:
        rest = []
        for p in patches:  # inpaint-nodes' form: a kind of its own, the rest handed to the original
            if isinstance(p[1], tuple) and p[1][0] == "scaled":
                seen.append(key)
                weight += p[0] * p[1][1][0] * p[1][1][1]
            else:
                rest.append(p)
        return original(rest, weight, key, intermediate_dtype) if rest else weight

    patched = model.clone()
    patched.add_patches({f"diffusion_model.{name}": ("scaled", (delta, 3.0))}, 1.0)
    with pytest.raises(NotImplementedError, match="'scaled'"):  # Loom's own calculate_weight does not know it
        patched.patched_state_dict()
    comfy.lora.calculate_weight = packs_calculate_weight  # what the pack does after ApplyFooocusInpaint
    try:
        assert torch.allclose(patched.patched_state_dict()[name].float(), base + 3.0 * delta)
    finally:
        comfy.lora.calculate_weight = original
    assert seen == [f"diffusion_model.{name}"]


def test_patch_of_unknown_form_is_refused_without_the_compat_layer(shims: Any, tiny_sd15: Any) -> None:
    model, _ = tiny_sd15
    shims.environment.uninstall()
    with pytest.raises(ValueError, match=r"input_blocks\.0\.0\.bias.*'fooocus'"):
        model.clone().add_patches({"diffusion_model.input_blocks.0.0.bias": ("fooocus", (torch.zeros(1),))}, 1.0)


def test_attachments_follow_clones(tiny_sd15: Any) -> None:
    model, _ = tiny_sd15

    class PerClone:
        def __init__(self, n: int = 0) -> None:
            self.n = n

        def on_model_patcher_clone(self) -> PerClone:
            return PerClone(self.n + 1)

    first = model.clone()
    shared = object()
    first.set_attachments("shared", shared)
    first.set_attachments("own", PerClone())
    second = first.clone()
    assert second.get_attachment("shared") is shared and second.get_attachment("own").n == 1
    assert model.get_attachment("own") is None
    second.remove_attachments("shared")
    assert second.get_attachment("shared") is None and first.get_attachment("shared") is shared


def test_binary_frames_of_send_sync() -> None:
    from app.compat._binary_events import binary_frame
    from app.hub import BinaryEventTypes

    image = Image.new("RGB", (40, 20), (10, 200, 30))
    kind, payload = binary_frame(BinaryEventTypes.UNENCODED_PREVIEW_IMAGE, ["PNG", image, None])
    assert kind == BinaryEventTypes.PREVIEW_IMAGE and payload[:4] == struct.pack(">I", 2)
    assert Image.open(io.BytesIO(payload[4:])).tobytes() == image.tobytes()
    kind, payload = binary_frame(BinaryEventTypes.UNENCODED_PREVIEW_IMAGE, ["JPEG", image, 10])
    assert payload[:4] == struct.pack(">I", 1) and Image.open(io.BytesIO(payload[4:])).size == (10, 5)
    kind, payload = binary_frame(BinaryEventTypes.PREVIEW_IMAGE_WITH_METADATA, (["PNG", image, None], {"node": "3"}))
    (size,) = struct.unpack_from(">I", payload)
    assert kind == 4 and json.loads(payload[4:4 + size]) == {"node": "3", "image_type": "image/png"}
    assert binary_frame(7, b"abc") == (7, b"abc")
    with pytest.raises(TypeError, match="event 7"):
        binary_frame(7, {"not": "bytes"})
    with pytest.raises(ValueError, match="'WEBP'"):
        binary_frame(BinaryEventTypes.UNENCODED_PREVIEW_IMAGE, ["WEBP", image, None])


def test_send_sync_with_a_binary_event_posts_a_frame() -> None:
    from app.compat.prompt_server import PromptServer
    from app.hub import BinaryEventTypes

    class Recorder:
        current_client_id: str | None = None

        def __init__(self) -> None:
            self.sent: list[tuple[Any, ...]] = []

        def send(self, event: str, data: Any, sid: str | None = None) -> None:
            self.sent.append(("json", event, sid))

        def send_bytes(self, event_type: int, payload: bytes, sid: str | None = None) -> None:
            self.sent.append(("bytes", event_type, payload[:4], sid))

    hub = Recorder()
    server = PromptServer(None, None, hub)
    try:
        server.send_sync(BinaryEventTypes.UNENCODED_PREVIEW_IMAGE, ["PNG", Image.new("RGB", (2, 2)), None], "me")
        server.send_sync("etn_event", {"x": 1})
    finally:
        PromptServer.instance = None
    assert hub.sent == [("bytes", BinaryEventTypes.PREVIEW_IMAGE, struct.pack(">I", 2), "me"),
                        ("json", "etn_event", None)]


def test_combo_output_with_options_is_a_choice_list(shims: Any) -> None:
    from comfy_api.latest import io as comfy_io

    from app.compat.comfy_api.latest._v1 import to_v1

    class Pick(comfy_io.ComfyNode):  # type: ignore[misc]
        @classmethod
        def define_schema(cls) -> Any:
            return comfy_io.Schema(node_id="Pick", category="t", inputs=[],
                                   outputs=[comfy_io.Combo.Output("name", options=["euler", "ddim"]),
                                            comfy_io.Combo.Output("plain")])

        @classmethod
        def execute(cls) -> Any:
            return comfy_io.NodeOutput("euler", "x")

    v1: Any = to_v1(Pick)
    assert v1.RETURN_TYPES == (["euler", "ddim"], "COMBO") and v1.RETURN_NAMES == ("name", "plain")


def test_model_view_state_dict_and_lora_keys_as_packs_read_them(shims: Any, tiny_sd15: Any) -> None:
    import comfy.lora

    model, _ = tiny_sd15
    view = model.model
    names = dict(model.diffusion_model.named_parameters())
    state = view.state_dict()
    assert set(state) >= {"diffusion_model." + n for n in names}
    assert state["diffusion_model.out.2.bias"].data_ptr() == names["out.2.bias"].data_ptr()  # the weights, not copies
    # ComfyUI's packs pass the inner model (`model.model`): the same map as for the handle
    assert comfy.lora.model_lora_keys_unet(view, {}) == comfy.lora.model_lora_keys_unet(model, {})
