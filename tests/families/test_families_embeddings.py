"""Textual inversion through the real nodes: an embedding made of the token embeddings of two words must give
exactly the conditioning of those words (SD1 and SDXL's clip_l / clip_g files; .safetensors and weights-only
A1111 .pt; with or without extension; inside weights). /embeddings and /models/loras list the files."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

WORDS = "photo cat"


def _node(runtime: Any, class_type: str, **inputs: Any) -> Any:
    cls = runtime.registry.get(class_type)
    return getattr(cls(), cls.FUNCTION)(**inputs)


def _ids(clip: Any, key: str) -> list[int]:
    window = clip.tokenize(WORDS)[key][0]
    return [int(t) for t, _ in window[1:3]]


def _token_vectors(clip: Any, key: str) -> torch.Tensor:
    tower = clip.encoders[{"l": "clip_l", "g": "clip_g", "h": "clip_h"}[key]]
    table = (tower.transformer.text_model.embeddings.token_embedding.weight if key == "l"
             else tower.token_embedding.weight)
    return table[_ids(clip, key)].detach().float().clone()


def _cond(runtime: Any, clip: Any, text: str) -> Any:
    return _node(runtime, "CLIPTextEncode", clip=clip, text=text)[0]


@pytest.fixture(scope="module")
def sd15_clip(runtime: Any, models_base: Path) -> Any:
    clip = _node(runtime, "CheckpointLoaderSimple", ckpt_name="tiny-sd15.safetensors")[1]
    emb = models_base / "models" / "embeddings"
    vecs = _token_vectors(clip, "l")
    save_file({"emb_params": vecs}, str(emb / "two-words.safetensors"))
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vecs.clone()}, "name": "two-words-pt",
                "step": 100}, str(emb / "two-words-pt.pt"))
    return clip


@pytest.mark.parametrize("prompt,reference", [
    ("a embedding:two-words on a mat", f"a {WORDS} on a mat"),
    ("a embedding:two-words.safetensors on a mat", f"a {WORDS} on a mat"),
    ("a embedding:two-words-pt on a mat", f"a {WORDS} on a mat"),
    ("a (embedding:two-words:1.2) on a mat", f"a ({WORDS}:1.2) on a mat"),
    ("embedding:two-words, blurry", f"{WORDS}, blurry"),
])
def test_sd15_embedding_equals_its_words(runtime: Any, sd15_clip: Any, prompt: str, reference: str) -> None:
    got, want = _cond(runtime, sd15_clip, prompt), _cond(runtime, sd15_clip, reference)
    assert torch.allclose(got[0][0], want[0][0], atol=1e-5)
    assert not torch.allclose(got[0][0], _cond(runtime, sd15_clip, "a on a mat")[0][0], atol=1e-3)


def test_sdxl_embedding_with_clip_l_and_clip_g(runtime: Any, models_base: Path) -> None:
    clip = _node(runtime, "CheckpointLoaderSimple", ckpt_name="tiny-sdxl.safetensors")[1]
    save_file({"clip_l": _token_vectors(clip, "l"), "clip_g": _token_vectors(clip, "g")},
              str(models_base / "models" / "embeddings" / "xl-two-words.safetensors"))
    got = _cond(runtime, clip, "a embedding:xl-two-words on a mat")
    want = _cond(runtime, clip, f"a {WORDS} on a mat")
    assert torch.allclose(got[0][0], want[0][0], atol=1e-5)
    assert torch.allclose(got[0][1]["pooled_output"], want[0][1]["pooled_output"], atol=1e-5)


def test_missing_embedding_names_the_file(runtime: Any, sd15_clip: Any) -> None:
    with pytest.raises(Exception, match="no-such-embedding"):
        _cond(runtime, sd15_clip, "embedding:no-such-embedding")


async def test_routes_list_embeddings_and_loras(aiohttp_client: Any, models_base: Path, sd15_clip: Any) -> None:
    from app.config import Config
    from app.loom import build_loom
    from server import create_app

    loom = build_loom(Config(base_directory=models_base, cpu=True,
                             user_directory=models_base / "user"))
    try:
        client = await aiohttp_client(create_app(loom, web_root=None, load_custom_nodes=False, start_worker=False))
        names = await (await client.get("/embeddings")).json()
        assert {"tiny-sd15-ti", "two-words", "two-words-pt"} <= set(names)
        loras = await (await client.get("/models/loras")).json()
        assert {"tiny-sd15-lora.safetensors", "tiny-sdxl-lora.safetensors"} <= set(loras)
    finally:
        loom.close()


@pytest.mark.parametrize("ckpt,default_layer", [("tiny-sd15.safetensors", -1), ("tiny-sd21v.safetensors", -2),
                                                ("tiny-sdxl.safetensors", -2),
                                                ("tiny-sdxl-refiner.safetensors", -2)])
def test_clip_set_last_layer_per_family(runtime: Any, ckpt: str, default_layer: int) -> None:
    clip = _node(runtime, "CheckpointLoaderSimple", ckpt_name=ckpt)[1]
    default = _cond(runtime, clip, "a photo of a cat")[0][0]
    by_layer = {layer: _cond(runtime, _node(runtime, "CLIPSetLastLayer", clip=clip, stop_at_clip_layer=layer)[0],
                             "a photo of a cat")[0][0] for layer in (-1, -2)}
    assert torch.equal(by_layer[default_layer], default)  # the family's standard layer
    other = -1 if default_layer == -2 else -2
    assert not torch.allclose(by_layer[other], default, atol=1e-4)
    assert _cond(runtime, clip, "a photo of a cat")[0][0].shape == default.shape  # the input CLIP is unchanged
    assert clip.layer_idx is None


@pytest.mark.parametrize("ckpt,keys", [("tiny-sd21v.safetensors", ("h",)), ("tiny-sdxl-refiner.safetensors", ("g",))])
def test_openclip_family_embeddings(runtime: Any, models_base: Path, ckpt: str, keys: tuple[str, ...]) -> None:
    clip = _node(runtime, "CheckpointLoaderSimple", ckpt_name=ckpt)[1]
    name = f"words-{keys[0]}"
    tensors = {"emb_params": _token_vectors(clip, keys[0])} if keys == ("h",) else {"clip_g": _token_vectors(clip, "g")}
    save_file(tensors, str(models_base / "models" / "embeddings" / f"{name}.safetensors"))
    got = _cond(runtime, clip, f"a embedding:{name} on a mat")
    want = _cond(runtime, clip, f"a {WORDS} on a mat")
    assert torch.allclose(got[0][0], want[0][0], atol=1e-5)
