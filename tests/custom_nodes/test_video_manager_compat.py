"""The ComfyUI names Kosinkadink/ComfyUI-VideoHelperSuite and ltdrdata/ComfyUI-Manager import, through fixture
packs that import them at module level as the real packs do."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture
def video(packs):
    report = packs.load("video_imports_pack")["video_imports_pack"]
    assert report.status == "loaded", report.error or report.refused
    return packs


def test_folder_of_images_lists_images_recursively_in_path_order(video, tmp_path: Path) -> None:
    from comfy.k_diffusion.utils import FolderOfImages

    root = tmp_path / "frames"
    (root / "sub").mkdir(parents=True)
    Image.new("L", (3, 2), 200).save(root / "b.PNG")
    Image.new("RGB", (4, 2), (255, 0, 0)).save(root / "sub" / "a.jpg")
    (root / "notes.txt").write_text("not an image")
    folder = FolderOfImages(root)
    assert [p.relative_to(root).as_posix() for p in folder.paths] == ["b.PNG", "sub/a.jpg"]
    assert len(folder) == 2 and repr(folder) == f'FolderOfImages(root="{root}", len: 2)'
    (image,) = folder[0]
    assert image.mode == "RGB" and image.size == (3, 2) and image.getpixel((0, 0)) == (200, 200, 200)
    sized = FolderOfImages(root, transform=lambda im: im.size)
    assert sized[1] == ((4, 2),)
    module = sys.modules["custom_nodes.video_imports_pack"]
    assert ".webp" in module.IMAGE_EXTENSIONS and ".txt" not in module.IMAGE_EXTENSIONS


def test_folder_key_set_without_roots_exists_and_takes_roots_later(video, tmp_path: Path) -> None:
    import folder_paths

    module = sys.modules["custom_nodes.video_imports_pack"]
    assert module.FORMATS_AT_IMPORT == []
    assert folder_paths.folder_names_and_paths["video_formats_fixture"][1] == {".json"}
    formats = tmp_path / "formats"
    formats.mkdir()
    (formats / "h264.json").write_text("{}")
    (formats / "skip.txt").write_text("")
    folder_paths.add_model_folder_path("video_formats_fixture", str(formats))
    assert folder_paths.get_filename_list("video_formats_fixture") == ["h264.json"]
    assert folder_paths.get_full_path("video_formats_fixture", "h264.json") == str(formats / "h264.json")
