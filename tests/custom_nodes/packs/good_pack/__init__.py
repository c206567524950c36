"""A well-formed V1 pack: one node, display names, a web directory."""
from .nodes import GoodAdd

NODE_CLASS_MAPPINGS = {"GoodAdd": GoodAdd}
NODE_DISPLAY_NAME_MAPPINGS = {"GoodAdd": "Good: add two ints"}
WEB_DIRECTORY = "./js"
NODE_DISPLAY_NAME_MAPPINGS["CoreNode"] = "Core Node (retitled by good_pack)"
