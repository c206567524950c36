"""What ComfyUI-Easy-Use needs at import: `comfy.conds`, `comfy.sd1_clip` / `comfy.ldm.models.autoencoder` reached
through `import comfy`, `comfy_extras.nodes_stable3d.camera_embeddings`, and an io.ComfyNode subclass that also
declares V1 attributes registering as the V3 node it is (as in ComfyUI)."""
from __future__ import annotations

import math
import textwrap

import pytest
import torch


def test_comfy_conds_values_batch_as_comfyui(packs) -> None:
    packs.load("good_pack")
    import comfy.conds

    regular = comfy.conds.CONDRegular(torch.ones(1, 3))
    batched = regular.process_cond(batch_size=4)
    assert type(batched) is comfy.conds.CONDRegular and batched.cond.shape == (4, 3)
    assert regular.can_concat(comfy.conds.CONDRegular(torch.zeros(1, 3)))
    assert not regular.can_concat(comfy.conds.CONDRegular(torch.zeros(1, 4)))
    assert regular.concat([comfy.conds.CONDRegular(torch.zeros(1, 3))]).shape == (2, 3)

    latent_shaped = comfy.conds.CONDNoiseShape(torch.arange(2 * 4 * 6.0).reshape(1, 2, 4, 6))
    cropped = latent_shaped.process_cond(2, area=(2, 3, 1, 2)).cond  # h, w, y, x
    assert cropped.shape == (2, 2, 2, 3) and torch.equal(cropped[0], latent_shaped.cond[0, :, 1:3, 2:5])

    short, long = torch.randn(1, 77, 8), torch.randn(1, 154, 8)
    attn = comfy.conds.CONDCrossAttn(short)
    assert attn.can_concat(comfy.conds.CONDCrossAttn(long))
    assert not attn.can_concat(comfy.conds.CONDCrossAttn(torch.randn(1, 77 * 5, 8)))  # over 4x padding
    both = attn.concat([comfy.conds.CONDCrossAttn(long)])
    assert both.shape == (2, 154, 8) and torch.equal(both[0], torch.cat([short[0], short[0]]))

    constant = comfy.conds.CONDConstant("ratio")
    assert constant.process_cond(8).cond == "ratio" and constant.size() == [1]
    assert constant.can_concat(comfy.conds.CONDConstant("ratio"))
    assert not constant.can_concat(comfy.conds.CONDConstant("other"))

    listed = comfy.conds.CONDList([torch.ones(1, 2, 5), torch.ones(1, 3)])
    assert [t.shape for t in listed.process_cond(2).cond] == [(2, 2, 5), (2, 3)]
    assert [t.shape for t in listed.concat([listed])] == [(2, 2, 5), (2, 3)]
    assert listed.size() == [1, 3, 4]  # 13 elements over the last 2-d tensor's 3 channels


def test_model_conds_on_a_conditioning_entry_are_refused(packs) -> None:
    packs.load("good_pack")
    import comfy.conds

    from engine.sampling.conditioning import resolve_conds
    from engine.sampling.model_sampling import ModelSamplingDiscrete

    entry = [torch.zeros(1, 77, 8), {"model_conds": {"c_concat": comfy.conds.CONDRegular(torch.zeros(1, 4, 8, 8))}}]
    with pytest.raises(ValueError, match="model_conds.*c_concat.*not supported"):
        resolve_conds([entry], torch.Size([1, 4, 8, 8]), ModelSamplingDiscrete(), torch.device("cpu"), "positive")


def test_import_comfy_reaches_the_clip_and_vae_network_modules(packs) -> None:
    packs.load("good_pack")
    import comfy

    from engine.networks.vae import AutoencoderKL

    assert comfy.ldm.models.autoencoder.AutoencoderKL is AutoencoderKL  # type: ignore[attr-defined]
    assert isinstance(comfy.sd1_clip.SD1ClipModel, type)  # type: ignore[attr-defined]
    assert isinstance(comfy.sdxl_clip.SDXLClipModel, type)  # type: ignore[attr-defined]


def test_stable3d_camera_embeddings(packs) -> None:
    packs.load("good_pack")
    from comfy_extras.nodes_stable3d import camera_embeddings

    emb = camera_embeddings(30.0, 90.0)
    assert emb.shape == (1, 1, 4)
    expected = torch.tensor([-math.pi / 6, 1.0, 0.0, math.pi / 2])
    torch.testing.assert_close(emb.reshape(4).float(), expected, atol=1e-6, rtol=0)
    with pytest.raises(ImportError, match="StableZero123_Conditioning"):  # Loom registers no Zero123 node
        exec("from comfy_extras.nodes_stable3d import StableZero123_Conditioning", {})


def test_a_v3_node_subclass_with_v1_attributes_registers_as_its_schema(packs) -> None:
    """Easy-Use's showAnythingLazy: an io.ComfyNode subclass adding INPUT_TYPES / FUNCTION naming no method. ComfyUI
    lists and runs it by its schema and execute; Loom registers it the same way instead of refusing it."""
    pack = packs.root / "v3_subclass_pack"
    pack.mkdir()
    (pack / "__init__.py").write_text(textwrap.dedent('''
        from comfy_api.latest import io

        class Show(io.ComfyNode):
            @classmethod
            def define_schema(cls):
                return io.Schema(node_id="Show", category="tests", inputs=[io.String.Input("text")],
                                 outputs=[io.String.Output()])

            @classmethod
            def execute(cls, text):
                return io.NodeOutput(text + "!")

        class ShowLazy(Show):
            @classmethod
            def INPUT_TYPES(cls):
                return {"required": {}, "optional": {"anything": ("*", {})}}

            RETURN_TYPES = ("*",)
            FUNCTION = "log_input"

        NODE_CLASS_MAPPINGS = {"Show": Show, "Show Lazy": ShowLazy}
    '''))
    reports = packs.load()
    assert reports["v3_subclass_pack"].status == "loaded", reports["v3_subclass_pack"]
    lazy = packs.registry.get("Show Lazy")
    assert list(lazy.INPUT_TYPES()["required"]) == ["text"] and lazy.RETURN_TYPES == ("STRING",)
    out = getattr(lazy(), lazy.FUNCTION)(text="hi")
    assert out == ("hi!",) or out.get("result") == ("hi!",)
