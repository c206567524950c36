"""Uses Loom's real core nodes through ComfyUI's module names: subclassing, common_ksampler, comfy.sd."""
import comfy.samplers
import comfy.sd
import folder_paths

import nodes


class BigLatent(nodes.EmptyLatentImage):
    """EmptyLatentImage at twice the size."""

    def generate(self, width, height, batch_size=1):
        return super().generate(width * 2, height * 2, batch_size)


class PackCheckpointLoader:
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (folder_paths.get_filename_list("checkpoints"),)}}

    def load(self, ckpt_name):
        path = folder_paths.get_full_path_or_raise("checkpoints", ckpt_name)
        out = comfy.sd.load_checkpoint_guess_config(path, output_vae=True, output_clip=True,
                                                    embedding_directory=folder_paths.get_folder_paths("embeddings"))
        return out[:3]


class PackSampler:
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
            "latent_image": ("LATENT",), "seed": ("INT", {"default": 0}), "steps": ("INT", {"default": 2}),
            "sampler_name": (comfy.samplers.KSampler.SAMPLERS,), "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
        }}

    def run(self, model, positive, negative, latent_image, seed, steps, sampler_name, scheduler):
        return nodes.common_ksampler(model, seed, steps, 7.5, sampler_name, scheduler, positive, negative,
                                     latent_image, 1.0)


NODE_CLASS_MAPPINGS = {"BigLatent": BigLatent, "PackCheckpointLoader": PackCheckpointLoader,
                       "PackSampler": PackSampler}
