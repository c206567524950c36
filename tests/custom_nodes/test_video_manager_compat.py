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


def _loom_server(tmp_path: Path, preview_method: str):
    from app.compat.prompt_server import PromptServer
    from app.config import Config
    from app.engine_factory import Engine
    from app.loom import Loom
    from engine.paths import ModelPaths
    from executor import InterruptFlag, NodeRegistry, PromptExecutor, validate_prompt
    from nodes.services import NodeServices

    registry = NodeRegistry()
    engine = Engine(registry, PromptExecutor(registry), services=NodeServices(paths=ModelPaths(tmp_path)))
    loom = Loom(config=Config(base_directory=tmp_path, preview_method=preview_method), engine=engine,
                validate_fn=validate_prompt, interrupt_flag=InterruptFlag())
    return loom, PromptServer(loom, None, None)


def test_latent_preview_has_cli_args_preview_methods(packs, tmp_path: Path) -> None:
    loom, packs.prompt_server = _loom_server(tmp_path, "latent2rgb")
    packs.environment.handles.config = loom.config  # as the server's environment has it
    try:
        report = packs.load("manager_imports_pack")["manager_imports_pack"]
        assert report.status == "loaded", report.error or report.refused
        import comfy.cli_args
        import latent_preview

        assert latent_preview.LatentPreviewMethod is comfy.cli_args.LatentPreviewMethod
        assert latent_preview.args is comfy.cli_args.args
        pack = sys.modules["custom_nodes.manager_imports_pack"]
        assert pack.METHOD_AT_IMPORT is latent_preview.LatentPreviewMethod.Latent2RGB
    finally:
        loom.close()


def test_setting_args_preview_method_changes_the_servers_default(packs, tmp_path: Path) -> None:
    loom, packs.prompt_server = _loom_server(tmp_path, "none")
    try:
        assert packs.load("manager_imports_pack")["manager_imports_pack"].status == "loaded"
        import latent_preview
        from comfy.cli_args import args

        assert latent_preview.get_previewer(None, None) is None  # "none": no previewer
        args.preview_method = latent_preview.LatentPreviewMethod.TAESD
        assert args.preview_method is latent_preview.LatentPreviewMethod.TAESD
        assert loom.services is not None and loom.services.preview_method == "taesd"
        assert loom.worker is not None and loom.worker.lifecycle.preview_method == "taesd"

        class Format:
            taesd_decoder_name = "taesd_decoder"
            latent_rgb_factors = [[1.0, 0.0, 0.0]] * 4

        assert isinstance(latent_preview.get_previewer(None, Format()), latent_preview.Latent2RGBPreviewer)
        with pytest.raises(ValueError):
            args.preview_method = "sparkles"
    finally:
        loom.close()


def test_changing_preview_method_without_a_server_is_refused(packs) -> None:
    assert packs.load("manager_imports_pack")["manager_imports_pack"].status == "loaded"  # same value: accepted
    import latent_preview
    from comfy.cli_args import args

    with pytest.raises(NotImplementedError, match="no Loom server"):
        args.preview_method = latent_preview.LatentPreviewMethod.Auto
    assert args.preview_method is latent_preview.LatentPreviewMethod.NoPreviews
