"""UNet and sampler patches behind ComfyUI's model-patch nodes, all on one mechanism: the MODEL handle's
``model_options`` (``transformer_options["patches"]`` / ``["patches_replace"]`` run by ``engine.networks.unet`` and
``engine.networks.attention``; ``sampler_post_cfg_function`` run by ``engine.sampling.guider``) and its weight
patches (``engine.patching``).

- ``options``: copy-on-write helpers over ``model_options`` and the per-call random generator.
- ``freeu``: FreeU / FreeU_V2 output-block patches (Fourier filter of the skips).
- ``deep_shrink``: PatchModelAddDownscale's input / output block patches.
- ``hypertile``: HyperTile's attn1 patches (self-attention queries in tiles).
- ``tome``: token merging (ToMeSD) for attn1.
- ``attention_guidance``: Perturbed-Attention Guidance and Self-Attention Guidance (post-CFG functions).
- ``weights``: attention-projection weight scales (UNet / CLIP AttentionMultiply nodes).
"""
