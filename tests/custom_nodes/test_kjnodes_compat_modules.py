"""The ComfyUI names kijai/ComfyUI-KJNodes imports (patcher_extension, flux math, lumina / taesd blocks, video
types, tiled_scale_multidim, nodes_mask.composite, wrap_attn), imported by a fixture pack as the real pack does."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F


@pytest.fixture
def loaded(packs):
    report = packs.load("kjnodes_imports_pack")["kjnodes_imports_pack"]
    assert report.status == "loaded", report.error or report.refused
    return packs


def test_patcher_extension_registers_runnable_wrappers_and_refuses_the_rest(loaded) -> None:
    """The module functions write ComfyUI's layout for the wrapper types Loom runs; other types, and callbacks kept
    in a dict (never called), are refused naming the type; the readers keep ComfyUI's layout."""
    import comfy.patcher_extension as pe

    first, second = (lambda *a: 1), (lambda *a: 2)
    model_options = {"transformer_options": {"wrappers": {"outer_sample": {"a": [first], None: [second]}},
                                             "callbacks": {"on_pre_run": {None: [first]}}}}
    assert pe.get_wrappers_with_key("outer_sample", "a", model_options, is_model_options=True) == [first]
    assert pe.get_all_wrappers("outer_sample", model_options, is_model_options=True) == [first, second]
    assert pe.get_all_wrappers("apply_model", {}) == []
    assert pe.get_all_callbacks("on_pre_run", model_options["transformer_options"]) == [first]
    assert pe.get_callbacks_with_key("on_pre_run", None, {}, is_model_options=True) == []
    options: dict = {}
    pe.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "k", first, options, is_model_options=True)
    pe.add_wrapper(pe.WrappersMP.APPLY_MODEL, second, options, is_model_options=True)
    assert options == {"transformer_options": {"wrappers": {"apply_model": {"k": [first], None: [second]}}}}
    with pytest.raises(NotImplementedError, match="'a_future_type': Loom's sampler does not run that type"):
        pe.add_wrapper_with_key("a_future_type", "a", first, {})  # every WrappersMP type runs; a new one would not
    with pytest.raises(NotImplementedError, match=r"\('on_pre_run'\) in a transformer_options dict"):
        pe.add_callback(pe.CallbacksMP.ON_PRE_RUN, first, {}, is_model_options=True)


def test_wrapper_executor_runs_the_chain_outside_in(loaded) -> None:
    from comfy.patcher_extension import WrapperExecutor

    calls: list[str] = []

    def outer(executor, x):
        calls.append("outer")
        return executor(x + 1) * 10

    def inner(executor, x):
        calls.append(f"inner:{type(executor.class_obj).__name__}")
        return executor(x * 2)

    owner = object()
    result = WrapperExecutor.new_class_executor(lambda x: x - 3, owner, [outer, inner]).execute(4)
    assert result == ((4 + 1) * 2 - 3) * 10 and calls == ["outer", "inner:object"]
    assert WrapperExecutor.new_executor(lambda x: x, []).execute(5) == 5


def test_nested_dict_helpers(loaded) -> None:
    from comfy.patcher_extension import copy_nested_dicts, merge_nested_dicts

    base = {"a": {"b": [1]}, "c": 1}
    copied = copy_nested_dicts(base)
    copied["a"]["b"].append(2)
    assert base == {"a": {"b": [1]}, "c": 1}
    merged = merge_nested_dicts(base, {"a": {"b": [3], "d": 4}, "c": 2, "e": [5]})
    assert merged == {"a": {"b": [3, 1], "d": 4}, "c": 2, "e": [5]} and base["a"]["b"] == [1]


def test_composite_pastes_in_place_at_latent_offsets(loaded) -> None:
    from comfy_extras.nodes_mask import composite

    destination = torch.zeros(2, 4, 8, 8)
    source = torch.ones(1, 4, 2, 3)
    out = composite(destination, source, 16, 8)  # latent pixels: x 16 // 8 = 2, y 1
    assert out is destination
    assert destination[:, :, 1:3, 2:5].eq(1).all() and destination.sum() == 2 * 4 * 6
    image = torch.zeros(1, 3, 4, 4)
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    composite(image, torch.ones(1, 3, 2, 2), 1, 1, mask, 1)  # multiplier 1: image pixels
    assert image[0, 0, 1:3, 1:3].tolist() == [[1.0, 0.0], [0.0, 1.0]] and image.sum() == 6
    with pytest.raises(ValueError, match="offsets"):
        composite(image, image, -8, 0)


def test_tiled_scale_multidim_matches_the_untiled_function(loaded) -> None:
    from comfy.utils import tiled_scale_multidim

    torch.manual_seed(0)
    video = torch.randn(2, 3, 5, 20, 24)
    up = lambda t: F.interpolate(t, scale_factor=(1, 2, 2), mode="nearest")  # noqa: E731
    tiles: list[int] = []

    class Bar:
        def update(self, n: int) -> None:
            tiles.append(n)

    out = tiled_scale_multidim(video, up, tile=(4, 8, 8), overlap=(1, 2, 2), upscale_amount=(1, 2, 2),
                               out_channels=3, pbar=Bar())
    assert out.shape == (2, 3, 5, 40, 48)
    assert torch.allclose(out, up(video), atol=1e-5)
    assert len(tiles) > 2 * 4, "more than one tile per batch item"
    down = tiled_scale_multidim(torch.randn(1, 2, 16, 16), lambda t: t[..., ::2, ::2], tile=(8, 8), overlap=2,
                                upscale_amount=2, out_channels=2, downscale=True)
    assert down.shape == (1, 2, 8, 8)


def test_video_types_encode_and_read_back_through_every_comfyui_path(loaded, tmp_path) -> None:
    from comfy_api.input import VideoInput
    from comfy_api.input.video_types import VideoInput as ModuleVideoInput
    from comfy_api.input_impl import VideoFromComponents, VideoFromFile
    from comfy_api.input_impl.video_types import VideoCodec
    from comfy_api.input_impl.video_types import VideoFromFile as ModuleVideoFromFile
    from comfy_api.latest import Input, InputImpl, Types
    from comfy_api.latest._input_impl import VideoFromComponents as PrivateVideoFromComponents
    from comfy_api.util import VideoComponents, VideoContainer
    from comfy_api.util.video_types import VideoContainer as ModuleVideoContainer

    from engine.video import VideoFromFile as EngineVideoFromFile

    assert InputImpl.VideoFromFile is VideoFromFile is EngineVideoFromFile and Input.Video is VideoInput
    assert InputImpl.VideoFromComponents is VideoFromComponents is PrivateVideoFromComponents
    assert Types.VideoComponents is VideoComponents and Types.VideoCodec is VideoCodec
    assert ModuleVideoInput is VideoInput and ModuleVideoFromFile is VideoFromFile
    assert ModuleVideoContainer is VideoContainer is Types.VideoContainer
    assert Types.VideoContainer.as_input() == ["auto", "mp4"] and Types.VideoCodec.as_input() == ["auto", "h264"]
    assert VideoContainer.get_extension("auto") == "mp4"
    video = InputImpl.VideoFromComponents(Types.VideoComponents(images=torch.rand(6, 10, 16, 3),
                                                                frame_rate=Fraction(24)))
    assert video.get_dimensions() == (16, 10) and video.get_frame_count() == 6
    assert video.get_duration() == pytest.approx(0.25)
    path = str(tmp_path / "out.mp4")
    video.save_to(path, format=Types.VideoContainer("mp4"), codec="auto", metadata={"prompt": {"1": {}}})
    back = InputImpl.VideoFromFile(path)
    assert isinstance(back, VideoInput) and back.get_dimensions() == (16, 10) and back.get_frame_count() == 6
    assert back.get_frame_rate() == 24 and back.get_duration() == pytest.approx(0.25, abs=1e-3)
    parts = back.get_components()
    assert parts.images.shape == (6, 10, 16, 3) and parts.metadata["prompt"] == '{"1": {}}'
    with pytest.raises(ValueError, match="in.mp4.*does not exist"):
        InputImpl.VideoFromFile(str(tmp_path / "in.mp4")).get_components()
    from nodes import bind, builtin_node_classes

    for node_id in ("CreateVideo", "Video Slice"):  # comfy_extras modules expose the registry's built-ins
        loaded.registry.register(node_id, bind(builtin_node_classes()[node_id], None), source="builtin")
    from comfy_extras.nodes_video import CreateVideo, VideoSlice  # ComfyUI's module and class names

    (made,) = CreateVideo().create_video(images=torch.rand(4, 8, 8, 3), fps=4.0)
    (cut,) = VideoSlice().slice(video=made, start_time=0.5, duration=0.0, strict_duration=False)
    assert isinstance(cut, InputImpl.VideoFromComponents) and cut.get_frame_count() == 2
    from comfy_api.latest import io, ui

    # a V3 pack's video preview: the wire shape SaveVideo sends, which the frontend plays as a video
    shown = ui.PreviewVideo([ui.SavedResult("v_00001_.mp4", "video", io.FolderType.output)]).as_dict()
    assert shown == {"images": [{"filename": "v_00001_.mp4", "subfolder": "video", "type": "output"}],
                     "animated": (True,)}
    node = loaded.registry.get("KJImportsLoaded")
    assert node().run("mp4") == ("mp4",)


def test_wrap_attn_routes_through_the_override(loaded) -> None:
    import sys

    from comfy.ldm.modules.attention import optimized_attention

    pack = sys.modules["custom_nodes.kjnodes_imports_pack"]
    q, k, v = (torch.randn(1, 6, 8) for _ in range(3))
    plain = pack.pack_attention(q, k, v, 2)
    assert torch.allclose(plain, optimized_attention(q, k, v, 2))
    seen: list[object] = []

    def override(func, *args, **kwargs):
        seen.append(func)
        return func(*args, **kwargs) * 2

    doubled = pack.pack_attention(q, k, v, 2, transformer_options={"optimized_attention_override": override})
    assert torch.allclose(doubled, plain * 2)
    assert len(seen) == 1 and seen[0].__name__ == "pack_attention", "the inner call is not overridden again"


def test_flux_math_rope_and_attention(loaded) -> None:
    from comfy.ldm.flux.math import apply_rope, apply_rope1, attention, rope

    pos = torch.arange(6, dtype=torch.float32)[None]
    pe = rope(pos, 8, 10000)[:, None]
    assert pe.shape == (1, 1, 6, 4, 2, 2)
    q, k, v = (torch.randn(1, 2, 6, 8) for _ in range(3))
    rq, rk = apply_rope(q, k, pe)
    assert torch.equal(apply_rope1(q, pe), rq) and not torch.allclose(rq, q)
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1), atol=1e-5), "a rotation keeps norms"
    expected = F.scaled_dot_product_attention(rq, rk, v).transpose(1, 2).reshape(1, 6, 16)
    assert torch.allclose(attention(q, k, v, pe), expected, atol=1e-5)


def test_lumina_feed_forward_is_swiglu(loaded) -> None:
    from comfy.ldm.lumina.model import FeedForward

    ff = FeedForward(8, 10, multiple_of=4, ffn_dim_multiplier=1.5)
    assert ff.w1.out_features == 16 and ff.w2.in_features == 16  # int(1.5 * 10) = 15, rounded up to 16
    x = torch.randn(2, 3, 8)
    assert torch.allclose(ff(x), ff.w2(F.silu(ff.w1(x)) * ff.w3(x)))


def test_taesd_blocks_build_a_decoder(loaded) -> None:
    from comfy.taesd.taesd import Block, Clamp, Decoder, conv

    assert torch.allclose(Clamp()(torch.tensor([30.0])), torch.tensor([3.0]), atol=1e-4)
    decoder = Decoder(4)
    for p in decoder.parameters():
        torch.nn.init.normal_(p, std=0.05)
    assert decoder(torch.randn(1, 4, 8, 8)).shape == (1, 3, 64, 64)
    gn = Block(8, 16, use_midblock_gn=True)
    names = {name for name, _ in gn.named_parameters()}
    assert {"pool.0.weight", "pool.1.weight", "pool.3.weight", "skip.weight", "conv.4.weight"} <= names
    assert gn(torch.randn(1, 8, 4, 4)).shape == (1, 16, 4, 4)
    assert conv(3, 5, bias=False).bias is None


def test_bounding_box_io_type(loaded) -> None:
    from comfy_api.latest import io

    kind, options = io.BoundingBox.Input("bboxes", optional=True, force_input=True).as_v1()
    assert kind == "BOUNDING_BOX" and options["forceInput"] is True
    assert options["default"] == {"x": 0, "y": 0, "width": 512, "height": 512}
    box = {"x": 1, "y": 2, "width": 3, "height": 4}
    assert io.BoundingBox.Input("b", default=box).as_v1()[1]["default"] == box
    assert io.BoundingBox.Output("bounding_box").io_type == "BOUNDING_BOX"


@pytest.mark.parametrize(("name", "io_type"), [("Tracks", "TRACKS"), ("Hooks", "HOOKS"), ("MODEL_PATCH", "MODEL_PATCH"),
                                               ("LatentOperation", "LATENT_OPERATION"), ("Mesh", "MESH")])
def test_other_socket_types_declare_their_v1_type(loaded, name: str, io_type: str) -> None:
    """KJNodes' GetTrackRange / AddNoiseToTrackPath declare io.Tracks sockets; ComfyUI's other socket types too."""
    from comfy_api.latest import io

    kind = getattr(io, name)
    assert kind.Input("x").as_v1()[0] == io_type and kind.Output("y").io_type == io_type
