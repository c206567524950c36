"""Adds model folders the ComfyUI ways and lists them in a COMBO."""
import os

import folder_paths

FIXTURE_DIR = os.path.join(folder_paths.models_dir, "fixture_models")
folder_paths.add_model_folder_path("fixture_models", FIXTURE_DIR)
folder_paths.folder_names_and_paths["onnx_models"] = (
    [os.path.join(folder_paths.models_dir, "onnx")], {".onnx"}
)


class PickFixtureModel:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"name": (folder_paths.get_filename_list("fixture_models"),)}}

    def run(self, name):
        return (folder_paths.get_full_path("fixture_models", name),)


NODE_CLASS_MAPPINGS = {"PickFixtureModel": PickFixtureModel}
