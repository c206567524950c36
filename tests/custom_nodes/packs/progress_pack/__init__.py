"""Reports progress with comfy.utils.ProgressBar and checks for interrupts through comfy.model_management."""
import comfy.model_management
import comfy.utils


class SlowCounter:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"default": 3, "min": 1})}}

    def run(self, steps):
        pbar = comfy.utils.ProgressBar(steps)
        for _ in range(steps):
            comfy.model_management.throw_exception_if_processing_interrupted()
            pbar.update(1)
        return (steps,)


NODE_CLASS_MAPPINGS = {"SlowCounter": SlowCounter}
