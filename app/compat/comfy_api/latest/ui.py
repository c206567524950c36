"""`comfy_api.latest.ui`: output helpers for V3 nodes (previews saved to temp/, text)."""
from __future__ import annotations

import os
import random
from typing import Any


class _UIOutput:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)


class SavedResult(dict[str, str]):
    """One file reference `{"filename", "subfolder", "type"}`."""

    def __init__(self, filename: str, subfolder: str, type: str) -> None:
        super().__init__(filename=filename, subfolder=subfolder, type=type)


class SavedImages(_UIOutput):
    def __init__(self, results: list[SavedResult], is_animated: bool = False) -> None:
        values: dict[str, Any] = {"images": list(results)}
        if is_animated:
            values["animated"] = (True,)
        super().__init__(values)


def _save_images(images: Any, folder_type: str, prefix: str) -> list[SavedResult]:
    import folder_paths
    import numpy as np
    from PIL import Image

    base = folder_paths.get_temp_directory() if folder_type == "temp" else folder_paths.get_output_directory()
    if folder_type == "temp":
        prefix += "_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
    h, w = int(images.shape[1]), int(images.shape[2])
    folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, base, w, h)
    results = []
    for batch_number, image in enumerate(images):
        arr = np.clip(image.cpu().numpy() * 255.0, 0, 255).astype(np.uint8)
        name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr).save(os.path.join(folder, name),
                                                                              compress_level=1)
        results.append(SavedResult(name, subfolder, folder_type))
        counter += 1
    return results


class PreviewImage(SavedImages):
    """Saves an IMAGE batch to temp/ and shows it on the node."""

    def __init__(self, image: Any, animated: bool = False, cls: Any = None, **kwargs: Any) -> None:
        super().__init__(_save_images(image, "temp", "ComfyUI"), is_animated=animated)


class PreviewMask(PreviewImage):
    """Shows a MASK as a greyscale image."""

    def __init__(self, mask: Any, animated: bool = False, cls: Any = None, **kwargs: Any) -> None:
        image = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(-1, -1, -1, 3)
        super().__init__(image, animated, cls)


class PreviewText(_UIOutput):
    """Shows text on the node."""

    def __init__(self, value: str, **kwargs: Any) -> None:
        super().__init__({"text": (value,)})
