"""Imports, at module level, what Kosinkadink/ComfyUI-VideoHelperSuite reads at import: FolderOfImages'
extensions and a folder key added to folder_names_and_paths with no roots yet."""
import folder_paths
from comfy.k_diffusion.utils import FolderOfImages

if "video_formats_fixture" not in folder_paths.folder_names_and_paths:
    folder_paths.folder_names_and_paths["video_formats_fixture"] = ((), {".json"})
if len(folder_paths.folder_names_and_paths["video_formats_fixture"][1]) == 0:
    folder_paths.folder_names_and_paths["video_formats_fixture"][1].add(".json")

IMAGE_EXTENSIONS = sorted(FolderOfImages.IMG_EXTENSIONS)
FORMATS_AT_IMPORT = folder_paths.get_filename_list("video_formats_fixture")


class VideoImportsLoaded:
    CATEGORY = "fixtures"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self):
        return (",".join(IMAGE_EXTENSIONS),)


NODE_CLASS_MAPPINGS = {"VideoImportsLoaded": VideoImportsLoaded}
