"""Loom's own CLIP-L tower matches transformers' CLIPTextModel (same weights) without importing it at load."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict

import pytest
import torch

from engine.networks.text_encoders import ClipTextConfig, ClipTextEncoder

CFG = ClipTextConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                     num_attention_heads=4, max_position_embeddings=16, projection_dim=64)


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, ClipTextEncoder]:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_cfg = transformers.CLIPTextConfig(**asdict(CFG), bos_token_id=0, eos_token_id=2, pad_token_id=1)
    ref = transformers.CLIPTextModel(hf_cfg).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours = ClipTextEncoder(CFG)
    sd = {f"transformer.{k}": v for k, v in ref.state_dict().items() if not k.endswith("position_ids")}
    if not any(k.startswith("transformer.text_model.") for k in sd):
        sd = {k.replace("transformer.", "transformer.text_model.", 1): v for k, v in sd.items()}
    ours.load_state_dict(sd, strict=True)
    return ref, ours


def _tokens() -> torch.Tensor:
    t = torch.randint(3, 900, (2, 16), generator=torch.Generator().manual_seed(1))
    t[0, 9:] = 999  # end token (highest id) then padding with it, as CLIP-L prompts are
    t[1, 15] = 999
    return t


@pytest.mark.parametrize("layer", [None, -1, -2, 0, 2, -4, 7])
def test_hidden_and_pooled_match_transformers(pair: tuple[torch.nn.Module, ClipTextEncoder], layer: int | None
                                              ) -> None:
    ref, ours = pair
    tokens = _tokens()
    with torch.no_grad():
        out = ref(input_ids=tokens, output_hidden_states=True)
        hidden, pooled = ours(tokens, layer=layer)
    if layer is None or abs(layer) > CFG.num_hidden_layers:
        want = out.last_hidden_state
    else:
        want = ref.text_model.final_layer_norm(out.hidden_states[layer]) if hasattr(ref, "text_model") else \
            ref.final_layer_norm(out.hidden_states[layer])
    torch.testing.assert_close(hidden, want, rtol=1e-5, atol=1e-5)
    want_pooled = out.last_hidden_state[torch.arange(2), tokens.argmax(-1)]
    torch.testing.assert_close(pooled, want_pooled, rtol=1e-5, atol=1e-5)


def test_state_dict_keys_are_the_checkpoint_names() -> None:
    keys = set(ClipTextEncoder(CFG).state_dict())
    assert "transformer.text_model.embeddings.token_embedding.weight" in keys
    assert "transformer.text_model.encoder.layers.2.self_attn.q_proj.weight" in keys
    assert "transformer.text_model.final_layer_norm.bias" in keys
    assert not any(k.endswith("position_ids") for k in keys)


def test_loading_a_checkpoint_does_not_import_transformers_clip_model(fixtures_dir: object) -> None:
    code = ("import sys, torch; torch.set_num_threads(1)\n"
            "from engine.loading import load_checkpoint\n"
            "from engine.model_management import ModelManager\n"
            "from engine.device import DevicePolicy\n"
            f"load_checkpoint({str(fixtures_dir)!r} + '/tiny-sd15/tiny-sd15.safetensors', "
            "ModelManager(DevicePolicy.cpu()))\n"
            "print('transformers.models.clip.modeling_clip' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
