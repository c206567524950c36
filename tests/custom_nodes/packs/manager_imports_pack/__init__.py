"""Imports, at module level, what ltdrdata/ComfyUI-Manager reads at import: `latent_preview.LatentPreviewMethod`
(ComfyUI's latent_preview imports it from comfy.cli_args) and `args.preview_method`, which it sets again."""
import latent_preview
from comfy.cli_args import args

METHOD_AT_IMPORT = args.preview_method
args.preview_method = latent_preview.LatentPreviewMethod(args.preview_method.value)  # Manager's start-up write

NODE_CLASS_MAPPINGS: dict = {}
