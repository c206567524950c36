"""Validation-time adapter checks (the executor's `extra_checks` hook), from safetensors headers only.

Beyond ComfyUI, before anything loads or runs, errors that name both files instead of a shape error mid-run:
- a ControlNet / T2I-Adapter applied to conditioning that reaches a sampler whose model is of another family (an
  SDXL ControlNet on an SD1.5 model), on the apply node;
- an IP-Adapter file (from `IPAdapterModelLoader`, any pack node taking `ipadapter`) whose cross-attention width is
  not the model's, or whose image projection does not take the CLIP vision model's embeds (a ViT-bigG encoder into
  an SD1.5 ViT-H IP-Adapter), on the node using them.

Values are traced to their loaders with `nodes.checks.trace` (loaders declare `FILE_INPUTS`; `builtin_checks`
hands it in) and the headers are read through the same `nodes.check_facts.ModelFiles` cache as the other
built-in checks.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from engine.families import base_family
from executor.registry import NodeRegistry
from executor.validation import NodeError
from nodes.check_facts import HeaderFacts, ModelFiles
from nodes.services import NodeServices

if TYPE_CHECKING:
    from nodes.checks import Origin

Tracer = Callable[[Mapping[str, Any], "NodeRegistry | None", Any, str], "Origin | None"]

__all__ = ["AdapterFamilyCheck"]

Prompt = Mapping[str, Any]
_APPLY = ("ControlNetApplyAdvanced", "ControlNetApply")
_IPADAPTER_LOADER = ("IPAdapterModelLoader", "ipadapter_file", "ipadapter")  # the pack's loader, its input, folder
_COND_INPUTS = ("conditioning", "conditioning_1", "conditioning_2", "conditioning_to", "conditioning_from",
                "positive", "negative")


def _is_link(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str)


def _describe(origin: Origin, family: str | None) -> str:
    return f"'{origin.names}' ({family}, node #{origin.node_id} {origin.class_type})"


class AdapterFamilyCheck:
    """ControlNet / T2I-Adapter family and IP-Adapter widths vs the model (and CLIP vision) they are used with."""

    def __init__(self, services: NodeServices, files: ModelFiles, trace: Tracer) -> None:
        self.services = services
        self.files = files
        self.trace = trace

    # ------------------------------------------------------------------ facts
    def _model_family(self, origin: Origin | None) -> str | None:
        if origin is None or len(origin.files) != 1:
            return None
        folder, name = origin.files[0]
        unet = self.files.unet(folder, name, checkpoint=folder == "checkpoints")
        return unet.family if unet else None

    def _control_family(self, origin: Origin | None) -> str | None:
        facts = self._single(origin)
        if facts is None:
            return None
        from engine.adapters.detect import control_family
        from engine.errors import EngineError

        try:
            return control_family(facts.shapes).family.name
        except (EngineError, KeyError, IndexError):  # the loader node reports unknown layouts
            return None

    def _single(self, origin: Origin | None) -> HeaderFacts | None:
        if origin is None or len(origin.files) != 1:
            return None
        return self.files.header(*origin.files[0])

    # ------------------------------------------------------------------ ControlNet / T2I-Adapter
    @staticmethod
    def _applies(prompt: Prompt, link: Any) -> list[str]:
        """Ids of the ControlNet apply nodes upstream of a conditioning link."""
        found: list[str] = []
        seen: set[str] = set()
        stack = [link]
        while stack:
            current = stack.pop()
            if not _is_link(current) or current[0] not in prompt or current[0] in seen:
                continue
            seen.add(current[0])
            node = prompt[current[0]]
            if node.get("class_type") in _APPLY:
                found.append(current[0])
            stack += [v for k, v in node.get("inputs", {}).items() if k in _COND_INPUTS]
        return found

    def _controls(self, prompt: Prompt, registry: NodeRegistry | None, node_id: str, ct: str,
                  inputs: Mapping[str, Any], reported: set[str]) -> list[NodeError]:
        model = self.trace(prompt, registry, inputs.get("model"), "MODEL")
        model_family = self._model_family(model)
        if model is None or model_family is None:
            return []
        problems = []
        for side in ("positive", "negative"):
            for apply_id in self._applies(prompt, inputs.get(side)):
                link = prompt[apply_id].get("inputs", {}).get("control_net")
                control = self.trace(prompt, registry, link, "CONTROL_NET")
                family = self._control_family(control)
                if (control is None or family is None or base_family(family) == base_family(model_family)
                        or apply_id in reported):
                    continue
                reported.add(apply_id)
                problems.append(NodeError(
                    apply_id, "control_family_mismatch", "ControlNet of another model family",
                    f"node #{apply_id} ({prompt[apply_id]['class_type']}) input 'control_net': the control file "
                    f"{_describe(control, family)} was made for {family} models, but the conditioning reaches node "
                    f"#{node_id} ({ct}) sampling the model {_describe(model, model_family)}; load a {model_family} "
                    "ControlNet / T2I-Adapter or sample with a model of the control's family",
                    {"input_name": "control_net", "control_file": control.names, "control_family": family,
                     "model_file": model.names, "model_family": model_family, "sampler_node": node_id}))
        return problems

    # ------------------------------------------------------------------ IP-Adapter (pack nodes)
    def _ipadapter(self, prompt: Prompt, registry: NodeRegistry | None, node_id: str, ct: str,
                   inputs: Mapping[str, Any]) -> list[NodeError]:
        link: Any = inputs.get("ipadapter")
        loader_ct, input_name, folder = _IPADAPTER_LOADER
        if not _is_link(link) or link[0] not in prompt or prompt[link[0]].get("class_type") != loader_ct:
            return []
        name = prompt[link[0]].get("inputs", {}).get(input_name)
        facts = self.files.header(folder, name)
        to_k = facts.shapes.get("ip_adapter.1.to_k_ip.weight") if facts else None
        if facts is None or to_k is None:
            return []
        cross = int(to_k[1])
        proj = facts.shapes.get("image_proj.proj.weight") or facts.shapes.get("image_proj.proj_in.weight")
        label = f"node #{node_id} ({ct})"
        problems = []
        model = self.trace(prompt, registry, inputs.get("model"), "MODEL")
        model_facts = self._single(model)
        context = model_facts.context_dim if model_facts else None
        if model is not None and context is not None and context != cross:
            family = self._model_family(model)
            problems.append(NodeError(
                node_id, "ipadapter_family_mismatch", "IP-Adapter of another model family",
                f"{label} input 'ipadapter': the IP-Adapter '{name}' (node #{link[0]}) writes {cross}-wide image "
                f"tokens, but the model {_describe(model, family)} cross-attends over {context}-wide context; use "
                f"the IP-Adapter made for {family} models",
                {"input_name": "ipadapter", "ipadapter_file": name, "ipadapter_cross_attention_dim": cross,
                 "model_file": model.names, "model_family": family, "model_context_dim": context}))
        vision = self.trace(prompt, registry, inputs.get("clip_vision"), "CLIP_VISION")
        vision_facts = self._single(vision)
        if vision is not None and vision_facts is not None and proj is not None:
            shapes = vision_facts.shapes
            projected = shapes.get("visual_projection.weight", (0,))[0] or shapes.get("visual.proj", (0, 0))[1]
            hidden = (shapes.get("vision_model.embeddings.patch_embedding.weight", (0,))[0]
                      or shapes.get("visual.conv1.weight", (0,))[0])
            wants = int(proj[1])
            if wants not in (projected, hidden):
                problems.append(NodeError(
                    node_id, "clip_vision_mismatch", "CLIP vision model does not fit the IP-Adapter",
                    f"{label} input 'clip_vision': the IP-Adapter '{name}' takes {wants}-wide image embeds, but the "
                    f"CLIP vision model '{vision.names}' (node #{vision.node_id}) gives {projected} (projected) / "
                    f"{hidden} (hidden); use the image encoder the IP-Adapter was trained with (ViT-H for most "
                    "SD1.5 ones)",
                    {"input_name": "clip_vision", "ipadapter_file": name, "clip_vision_file": vision.names,
                     "ipadapter_embed_dim": wants}))
        return problems

    def __call__(self, prompt: Prompt, registry: NodeRegistry | None = None) -> list[NodeError]:
        problems: list[NodeError] = []
        reported: set[str] = set()
        for node_id, node in prompt.items():
            if not isinstance(node, Mapping):
                continue
            ct, inputs = node.get("class_type", ""), node.get("inputs", {})
            if _is_link(inputs.get("ipadapter")):
                problems += self._ipadapter(prompt, registry, node_id, ct, inputs)
            elif all(_is_link(inputs.get(n)) for n in ("model", "positive", "negative")):
                problems += self._controls(prompt, registry, node_id, ct, inputs, reported)
        return problems
