"""ComfyUI's `comfy` package for packs: the submodules packs use most, as thin views over Loom's engine.

Only the names listed in docs/custom-nodes.md exist; importing any other `comfy.*` module fails with the
usual ImportError naming it, and the pack's report says so.
"""
