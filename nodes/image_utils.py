"""Image and mask utility nodes (ComfyUI names): size, flip, rotate, stitch, fit-and-pad, longest-side scaling,
noise, colour keying, alpha join / split, Porter-Duff compositing and MaskPreview. Maths in `engine.image_utils`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine import image_utils as ops
from nodes._base import BuiltinNode, InputTypes, input_error
from nodes.io import PreviewImage
from nodes.services import MAX_RESOLUTION

if TYPE_CHECKING:
    import torch

__all__ = ["GetImageSize", "ImageFlip", "ImageRotate", "ImageStitch", "ResizeAndPadImage",
           "ImageScaleToMaxDimension", "ImageAddNoise", "ImageColorToMask", "JoinImageWithAlpha",
           "SplitImageWithAlpha", "PorterDuffImageComposite", "MaskPreview"]


def _image(class_name: str, input_name: str, image: Any) -> torch.Tensor:
    if getattr(image, "ndim", None) != 4:
        raise input_error(class_name, input_name,
                          f"expected an IMAGE tensor [B,H,W,C], got {getattr(image, 'shape', type(image).__name__)}")
    tensor: torch.Tensor = image
    return tensor


class GetImageSize(BuiltinNode):
    """Width, height and batch size of an image."""

    DISPLAY_NAME = "Get Image Size"
    DESCRIPTION = "Returns width and height of the image, and passes it through unchanged."
    CATEGORY = "image"
    RETURN_TYPES = ("INT", "INT", "INT")
    RETURN_NAMES = ("width", "height", "batch_size")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"image": ("IMAGE",)}, "hidden": {"unique_id": "UNIQUE_ID"}}

    def execute(self, image: torch.Tensor, unique_id: str | None = None) -> tuple[int, int, int]:
        image = _image("GetImageSize", "image", image)
        return (int(image.shape[2]), int(image.shape[1]), int(image.shape[0]))


class ImageFlip(BuiltinNode):
    """Mirror top-bottom (x-axis) or left-right (y-axis)."""

    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "flip"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"image": ("IMAGE",), "flip_method": (list(ops.FLIP_METHODS),)}}

    def flip(self, image: torch.Tensor, flip_method: str) -> tuple[torch.Tensor]:
        return (ops.flip(_image("ImageFlip", "image", image), flip_method),)


class ImageRotate(BuiltinNode):
    """Rotate clockwise by a multiple of 90 degrees."""

    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "rotate"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"image": ("IMAGE",), "rotation": (list(ops.ROTATIONS),)}}

    def rotate(self, image: torch.Tensor, rotation: str) -> tuple[torch.Tensor]:
        return (ops.rotate(_image("ImageRotate", "image", image), rotation),)


class ImageStitch(BuiltinNode):
    """Join image2 to image1 on one side, optionally resized to match and with a coloured gap."""

    DISPLAY_NAME = "Image Stitch"
    DESCRIPTION = ("\nStitches image2 to image1 in the specified direction.\n"
                   "If image2 is not provided, returns image1 unchanged.\n"
                   "Optional spacing can be added between images.\n")
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "stitch"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {
            "required": {
                "image1": ("IMAGE",),
                "direction": (list(ops.STITCH_DIRECTIONS), {"default": "right"}),
                "match_image_size": ("BOOLEAN", {"default": True}),
                "spacing_width": ("INT", {"default": 0, "min": 0, "max": 1024, "step": 2}),
                "spacing_color": (list(ops.SPACING_COLORS), {"default": "white"}),
            },
            "optional": {"image2": ("IMAGE",)},
        }

    def stitch(self, image1: torch.Tensor, direction: str, match_image_size: bool, spacing_width: int,
               spacing_color: str, image2: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        image1 = _image("ImageStitch", "image1", image1)
        if image2 is not None:
            image2 = _image("ImageStitch", "image2", image2)
        return (ops.stitch(image1, image2, direction, match_image_size, spacing_width, spacing_color),)


class ResizeAndPadImage(BuiltinNode):
    """Fit inside target_width x target_height keeping the aspect, padded with white or black."""

    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "resize_and_pad"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        size = {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}
        return {"required": {
            "image": ("IMAGE",),
            "target_width": ("INT", dict(size)),
            "target_height": ("INT", dict(size)),
            "padding_color": (["white", "black"],),
            "interpolation": (["area", "bicubic", "nearest-exact", "bilinear", "lanczos"],),
        }}

    def resize_and_pad(self, image: torch.Tensor, target_width: int, target_height: int, padding_color: str,
                       interpolation: str) -> tuple[torch.Tensor]:
        image = _image("ResizeAndPadImage", "image", image)
        return (ops.resize_and_pad(image, target_width, target_height, padding_color, interpolation),)


class ImageScaleToMaxDimension(BuiltinNode):
    """Resize so that the longer side is `largest_size`."""

    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        # ComfyUI lists "bilinear" twice; kept so saved workflows' widget values line up
        methods = ["area", "lanczos", "bilinear", "nearest-exact", "bilinear", "bicubic"]
        return {"required": {
            "image": ("IMAGE",),
            "upscale_method": (methods,),
            "largest_size": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
        }}

    def upscale(self, image: torch.Tensor, upscale_method: str, largest_size: int) -> tuple[torch.Tensor]:
        image = _image("ImageScaleToMaxDimension", "image", image)
        if largest_size == 0:
            raise input_error("ImageScaleToMaxDimension", "largest_size", "must be at least 1 to resize to")
        return (ops.scale_to_max_dimension(image, upscale_method, largest_size),)


class ImageAddNoise(BuiltinNode):
    """Add seeded Gaussian noise times `strength`, clipped to 0..1."""

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "repeat"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "image": ("IMAGE",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                             "tooltip": "The random seed used for creating the noise."}),
            "strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}

    def repeat(self, image: torch.Tensor, seed: int, strength: float) -> tuple[torch.Tensor]:
        return (ops.add_noise(_image("ImageAddNoise", "image", image), seed, strength),)


class ImageColorToMask(BuiltinNode):
    """1 where a pixel's 8-bit colour equals `color` (0xRRGGBB), else 0."""

    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "image": ("IMAGE",),
            "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}),
        }}

    def image_to_mask(self, image: torch.Tensor, color: int) -> tuple[torch.Tensor]:
        return (ops.color_to_mask(_image("ImageColorToMask", "image", image), color),)


class JoinImageWithAlpha(BuiltinNode):
    """RGBA image whose alpha is 1 - mask."""

    DISPLAY_NAME = "Join Image with Alpha"
    CATEGORY = "mask/compositing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "join_image_with_alpha"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"image": ("IMAGE",), "alpha": ("MASK",)}}

    def join_image_with_alpha(self, image: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor]:
        return (ops.join_alpha(_image("JoinImageWithAlpha", "image", image), alpha),)


class SplitImageWithAlpha(BuiltinNode):
    """RGB image and mask = 1 - alpha (zeros without an alpha channel)."""

    DISPLAY_NAME = "Split Image with Alpha"
    CATEGORY = "mask/compositing"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "split_image_with_alpha"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"image": ("IMAGE",)}}

    def split_image_with_alpha(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ops.split_alpha(_image("SplitImageWithAlpha", "image", image))


class PorterDuffImageComposite(BuiltinNode):
    """Composite source over destination with a Porter-Duff operator; alphas travel as masks."""

    DISPLAY_NAME = "Porter-Duff Image Composite"
    CATEGORY = "mask/compositing"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {
            "source": ("IMAGE",),
            "source_alpha": ("MASK",),
            "destination": ("IMAGE",),
            "destination_alpha": ("MASK",),
            "mode": (list(ops.PORTER_DUFF_MODES), {"default": "DST"}),
        }}

    def composite(self, source: torch.Tensor, source_alpha: torch.Tensor, destination: torch.Tensor,
                  destination_alpha: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        source = _image("PorterDuffImageComposite", "source", source)
        destination = _image("PorterDuffImageComposite", "destination", destination)
        if mode not in ops.PORTER_DUFF_MODES:
            raise input_error("PorterDuffImageComposite", "mode",
                              f"{mode!r} is not one of {list(ops.PORTER_DUFF_MODES)}")
        try:
            return ops.porter_duff_batch(source, source_alpha, destination, destination_alpha, mode)
        except ValueError as exc:
            raise input_error("PorterDuffImageComposite", "source", str(exc)) from exc


class MaskPreview(PreviewImage):
    """Show a mask in the editor: saved to temp/ as a grey PNG (`ui.images`, as PreviewImage)."""

    DISPLAY_NAME = "MaskPreview"  # ComfyUI 0.3.64 gives it no display name
    CATEGORY = "mask"
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."
    FUNCTION = "execute"
    _compress_level = 4

    @classmethod
    def INPUT_TYPES(cls) -> InputTypes:
        return {"required": {"mask": ("MASK",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def execute(self, mask: torch.Tensor, filename_prefix: str = "ComfyUI", prompt: Any = None,
                extra_pnginfo: dict[str, Any] | None = None) -> dict[str, Any]:
        if getattr(mask, "ndim", 0) not in (2, 3, 4):
            raise input_error("MaskPreview", "mask", f"expected a MASK tensor [B,H,W], got {type(mask).__name__}")
        return self.save_images(ops.mask_preview_pixels(mask), filename_prefix, prompt, extra_pnginfo)


NODES = [GetImageSize, ImageFlip, ImageRotate, ImageStitch, ResizeAndPadImage, ImageScaleToMaxDimension,
         ImageAddNoise, ImageColorToMask, JoinImageWithAlpha, SplitImageWithAlpha, PorterDuffImageComposite,
         MaskPreview]
