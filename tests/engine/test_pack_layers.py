"""Text towers built from a pack's own layer set (engine.pack_layers, ComfyUI's ``custom_operations``): the layers
are the pack's, with the same hyper-parameters, and they read their own tensors; the result equals Loom's own
towers; tensors for Loom's own parts are taken plain, and a packed one there or a missing one is refused by name."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import CheckpointError
from engine.pack_layers import adopt, swap_layers

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "families2"
PROMPT = "a red cube on a (blue:1.2) table"


class Ops:
    """A minimal layer set with ComfyUI's contract: weights cast to the input per call, ``out_dtype`` on
    embeddings; each layer counts its calls."""

    calls = 0

    class Linear(nn.Linear):
        comfy_cast_weights = True

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            Ops.calls += 1
            return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    class Embedding(nn.Embedding):
        comfy_cast_weights = True

        def forward(self, ids: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
            Ops.calls += 1
            out = F.embedding(ids, self.weight)
            return out if out_dtype is None else out.to(out_dtype)

    class LayerNorm(nn.LayerNorm):
        comfy_cast_weights = True

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            Ops.calls += 1
            return F.layer_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


class Packed(torch.Tensor):
    @property
    def shape(self) -> torch.Size:  # a (2, 3) weight stored as 12 values
        return torch.Size((2, 3))


class Tagged(torch.Tensor):
    """A tensor subclass that is not packed (GGUF's F32 tensors come as such)."""


class Tower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 3, padding_idx=0, device="meta")
        self.proj = nn.Linear(3, 2, bias=False, device="meta")
        self.scale = nn.Parameter(torch.empty(2, device="meta"))  # Loom's own part, outside the layer set

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.emb(ids)) * self.scale


def test_swapped_layers_keep_their_shapes_read_their_tensors_and_embed_in_float32() -> None:
    tower = swap_layers(Tower(), Ops)
    assert isinstance(tower.emb, Ops.Embedding) and isinstance(tower.proj, Ops.Linear)
    assert (tower.emb.num_embeddings, tower.emb.embedding_dim, tower.emb.padding_idx) == (10, 3, 0)
    assert (tower.proj.in_features, tower.proj.out_features, tower.proj.bias) == (3, 2, None)
    table = torch.randn(10, 3).half()
    adopt(tower, {"emb.weight": table, "proj.weight": torch.randn(2, 3).half(),
                  "scale": torch.ones(2).as_subclass(Tagged)}, "tower", "t.safetensors")
    assert tower.emb.weight.dtype == torch.float16 and not tower.training
    assert not isinstance(tower.scale, Tagged)  # Loom's own part gets a plain tensor
    out = tower(torch.tensor([[1, 2]]))
    assert out.dtype == torch.float32  # the fp16 table answers in float32, so the linear computes in float32
    assert torch.equal(tower.emb(torch.tensor([3])), table[3:4].float())


def test_a_packed_tensor_for_a_part_the_layers_do_not_cover_is_refused_by_name() -> None:
    packed = torch.zeros(12).as_subclass(Packed)
    with pytest.raises(CheckpointError, match=r"t\.gguf: scale is stored packed \(Packed\)"):
        adopt(swap_layers(Tower(), Ops), {"emb.weight": torch.zeros(10, 3), "proj.weight": torch.zeros(2, 3),
                                          "scale": packed}, "tower", "t.gguf")
    with pytest.raises(CheckpointError, match=r"t\.gguf: the tower has no tensors for 1 .*\['proj\.weight'\]"):
        adopt(swap_layers(Tower(), Ops), {"emb.weight": torch.zeros(10, 3), "scale": torch.ones(2)}, "tower",
              "t.gguf")


def _text_encoder_file(tmp: Path, checkpoint: Path, prefix: str) -> Path:
    """A checkpoint's text encoder (keys under ``prefix``) as a file of its own, with the checkpoint's config."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(checkpoint), "pt") as f:
        meta = f.metadata()
    target = tmp / f"{checkpoint.stem}-te.safetensors"
    save_file({k[len(prefix):]: v for k, v in load_file(str(checkpoint)).items() if k.startswith(prefix)},
              str(target), metadata=meta)
    return target


@pytest.mark.parametrize("case", ["sd15 CLIP-L", "sd21 OpenCLIP-H", "flux CLIP-L + T5"])
def test_towers_built_from_a_layer_set_encode_as_loom_s_own(case: str, tmp_path: Path) -> None:
    from engine.device import DevicePolicy
    from engine.loading import clip_from_state_dicts, load_clip
    from engine.model_management import ModelManager
    from engine.state_files import read_state_dict

    fixtures = FIX.parent
    paths, clip_type = {
        "sd15 CLIP-L": ([_text_encoder_file(tmp_path, fixtures / "tiny-sd15" / "tiny-sd15.safetensors",
                                            "cond_stage_model.transformer.")], "stable_diffusion"),
        "sd21 OpenCLIP-H": ([_text_encoder_file(tmp_path, fixtures / "families" / "tiny-sd21v.safetensors",
                                                "cond_stage_model.model.")], "sd2"),
        "flux CLIP-L + T5": ([FIX / "tiny-clip_l.safetensors", FIX / "tiny-t5xxl_fp16.safetensors"], "flux"),
    }[case]
    manager = ModelManager(DevicePolicy.cpu())
    ref = load_clip(paths, clip_type, manager=manager)
    clip = clip_from_state_dicts([(p, *read_state_dict(p)) for p in paths], clip_type, manager=manager,
                                 operations=Ops)
    Ops.calls = 0
    cond, pooled = clip.encode_from_tokens(clip.tokenize(PROMPT), return_pooled=True)
    assert Ops.calls > 0  # the pack's layers ran
    ref_cond, ref_pooled = ref.encode_from_tokens(ref.tokenize(PROMPT), return_pooled=True)
    assert cond.dtype == torch.float32
    torch.testing.assert_close(cond, ref_cond, rtol=0, atol=1e-5)
    torch.testing.assert_close(pooled, ref_pooled, rtol=0, atol=1e-5)
