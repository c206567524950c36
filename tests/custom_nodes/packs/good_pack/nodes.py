class GoodAdd:
    CATEGORY = "fixtures/good"
    RETURN_TYPES = ("INT",)
    FUNCTION = "add"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"default": 1}), "b": ("INT", {"default": 2})}}

    def add(self, a, b):
        return (a + b,)
