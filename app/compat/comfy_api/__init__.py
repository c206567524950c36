"""ComfyUI's `comfy_api` package for packs: the schema-based ("V3") node API, adapted to V1 classes."""
