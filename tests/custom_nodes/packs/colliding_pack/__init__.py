"""Declares ids already taken: one by a built-in, one by good_pack; plus one of its own."""


class _Node:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "fixtures/colliding"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self):
        return (666,)


class CoreNode(_Node):
    pass


class GoodAdd(_Node):
    pass


class CollidingUnique(_Node):
    pass


NODE_CLASS_MAPPINGS = {"CoreNode": CoreNode, "GoodAdd": GoodAdd, "CollidingUnique": CollidingUnique}
