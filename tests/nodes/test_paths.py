from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.paths import ModelPaths, PathError


def _touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_folder_table_and_aliases(tmp_path: Path) -> None:
    mp = ModelPaths(tmp_path)
    assert mp.get_folder_paths("unet") == mp.get_folder_paths("diffusion_models")
    roots = mp.get_folder_paths("text_encoders")
    assert roots[0] == str(tmp_path / "models" / "text_encoders")
    assert roots[1] == str(tmp_path / "models" / "clip")
    assert str(tmp_path / "output" / "checkpoints") in mp.get_folder_paths("checkpoints")
    for key in ("checkpoints", "vae", "loras", "embeddings", "upscale_models", "controlnet", "vae_approx",
                "clip_vision", "style_models", "hypernetworks", "configs"):
        assert key in mp.folder_names()
    with pytest.raises(PathError, match="unknown model folder 'nope'"):
        mp.get_filename_list("nope")


def test_filename_list_recursive_sorted_filtered_and_refreshed(tmp_path: Path) -> None:
    mp = ModelPaths(tmp_path)
    ck = tmp_path / "models" / "checkpoints"
    _touch(ck / "b.safetensors")
    _touch(ck / "sub" / "a.CKPT")
    _touch(ck / "notes.txt")
    _touch(ck / ".git" / "x.safetensors")
    assert mp.get_filename_list("checkpoints") == ["b.safetensors", os.path.join("sub", "a.CKPT")]
    time.sleep(0.01)
    _touch(ck / "sub" / "c.pt")
    os.utime(ck / "sub", (time.time() + 5, time.time() + 5))
    assert os.path.join("sub", "c.pt") in mp.get_filename_list("checkpoints")


def test_full_path_refuses_escapes(tmp_path: Path) -> None:
    mp = ModelPaths(tmp_path)
    f = _touch(tmp_path / "models" / "vae" / "v.safetensors")
    _touch(tmp_path / "secret.safetensors")
    assert mp.get_full_path("vae", "v.safetensors") == str(f)
    assert mp.get_full_path("vae", "missing.safetensors") is None
    with pytest.raises(PathError, match="outside"):
        mp.get_full_path("vae", "../../secret.safetensors")
    with pytest.raises(PathError, match="outside"):
        mp.get_full_path("vae", str(tmp_path / "secret.safetensors"))
    with pytest.raises(PathError, match="not found in folder 'vae'"):
        mp.get_full_path_or_raise("vae", "missing.safetensors")


def test_annotated_paths(tmp_path: Path) -> None:
    mp = ModelPaths(tmp_path)
    assert mp.split_annotation("x.png [output]") == ("x.png", "output")
    assert mp.split_annotation("x.png") == ("x.png", None)
    assert mp.get_annotated_filepath("x.png [temp]") == str(tmp_path / "temp" / "x.png")
    assert mp.get_annotated_filepath("sub/x.png") == str(tmp_path / "input" / "sub" / "x.png")
    with pytest.raises(PathError):
        mp.get_annotated_filepath("../x.png [output]")
    assert not mp.exists_annotated_filepath("../../etc/passwd")


def test_extra_model_paths_yaml(tmp_path: Path) -> None:
    other = tmp_path / "a1111"
    _touch(other / "models" / "Stable-diffusion" / "m.safetensors")
    _touch(other / "extra_vae" / "e.pt")
    _touch(tmp_path / "rel" / "lora.safetensors")
    yaml_file = tmp_path / "extra_model_paths.yaml"
    yaml_file.write_text(
        "a111:\n"
        f"  base_path: {other}\n"
        "  checkpoints: models/Stable-diffusion\n"
        "  vae: |\n    extra_vae\n    more_vae\n"
        "  unet: models/unet\n"
        "local:\n"
        "  is_default: true\n"
        "  loras: rel\n"
        "  my_new_kind: rel\n"
    )
    mp = ModelPaths(tmp_path / "base", extra_model_paths=[yaml_file])
    assert "m.safetensors" in mp.get_filename_list("checkpoints")
    assert "e.pt" in mp.get_filename_list("vae")
    assert mp.get_folder_paths("vae")[-1] == str(other / "more_vae")
    assert str(other / "models" / "unet") in mp.get_folder_paths("diffusion_models")
    assert mp.get_folder_paths("loras")[0] == str(tmp_path / "rel")
    assert mp.get_filename_list("my_new_kind") == ["lora.safetensors"]


def test_base_dir_extra_model_paths_yaml_applies_by_itself(tmp_path: Path) -> None:
    _touch(tmp_path / "shared" / "ckpts" / "s.safetensors")
    (tmp_path / "extra_model_paths.yaml").write_text("mine:\n  checkpoints: shared/ckpts\n")
    assert "s.safetensors" in ModelPaths(tmp_path).get_filename_list("checkpoints")
    assert ModelPaths(tmp_path, load_base_extra_paths=False).get_filename_list("checkpoints") == []


def test_save_image_path_counter_rule(tmp_path: Path) -> None:
    mp = ModelPaths(tmp_path)
    out = tmp_path / "output"
    target = mp.get_save_image_path("ComfyUI", str(out), 64, 32)
    assert (target.counter, target.filename, target.subfolder) == (1, "ComfyUI", "")
    _touch(out / "ComfyUI_00001_.png")
    _touch(out / "ComfyUI_00007_.png")
    _touch(out / "comfyui_extra_00050_.png")  # different prefix: "comfyui_" + "extra" is not digits
    _touch(out / "ComfyUI_abc_.png")
    _touch(out / "ComfyUIx_00099_.png")
    assert mp.get_save_image_path("ComfyUI", str(out)).counter == 8
    sub = mp.get_save_image_path("portraits/cat", str(out))
    assert (sub.subfolder, sub.filename, sub.counter) == ("portraits", "cat", 1)
    assert (out / "portraits").is_dir()
    sized = mp.get_save_image_path("img_%width%x%height%", str(out), 128, 64)
    assert sized.filename == "img_128x64"
    with pytest.raises(PathError, match="outside the output folder"):
        mp.get_save_image_path("../escape", str(out))
    folder, name, counter, subfolder, prefix = mp.get_save_image_path("ComfyUI", str(out))
    assert (name, counter) == ("ComfyUI", 8)
