from nodes import LoraLoaderThatLoomLacks  # noqa: F401

NODE_CLASS_MAPPINGS = {}
