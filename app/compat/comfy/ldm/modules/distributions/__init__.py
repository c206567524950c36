"""ComfyUI's `comfy.ldm.modules.distributions` for packs: `distributions.DiagonalGaussianDistribution`."""
