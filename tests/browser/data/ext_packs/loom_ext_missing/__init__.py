"""A fixture pack whose web extensions Loom's editor skips: one imports scripts/ui.js, one a custom widget hook."""
NODE_CLASS_MAPPINGS = {}
WEB_DIRECTORY = "./web"
