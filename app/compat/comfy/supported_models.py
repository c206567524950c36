"""ComfyUI's `comfy.supported_models` for packs: the model-family config classes under ComfyUI's names. The families
Loom loads (SD15, SD20, SD21UnclipH, SDXL, SDXLRefiner, SD3, Flux, FluxSchnell) are `engine.model_configs`' views of
`engine.families`, and a loaded MODEL's `model.model_config` is an instance of its family's; ComfyUI's other families
are classes nothing is an instance of (so a pack's chain of `isinstance` checks runs through), with ComfyUI's parents.
`models` lists them in ComfyUI's order."""
from __future__ import annotations

from comfy.supported_models_base import BASE

from engine.model_configs import CONFIGS

SD15, SD20, SD21UnclipH = CONFIGS["SD15"], CONFIGS["SD20"], CONFIGS["SD21UnclipH"]
SDXL, SDXLRefiner, SD3 = CONFIGS["SDXL"], CONFIGS["SDXLRefiner"], CONFIGS["SD3"]
Flux, FluxSchnell = CONFIGS["Flux"], CONFIGS["FluxSchnell"]


def _absent(name: str, parent: type[BASE]) -> type[BASE]:
    return type(name, (parent,), {"__module__": __name__, "__doc__": f"ComfyUI's {name} family (not loaded by Loom)."})


LotusD = _absent("LotusD", SD20)
Stable_Zero123 = _absent("Stable_Zero123", BASE)
SD15_instructpix2pix = _absent("SD15_instructpix2pix", SD15)
SD21UnclipL = _absent("SD21UnclipL", SD20)
SDXL_instructpix2pix = _absent("SDXL_instructpix2pix", SDXL)
SSD1B = _absent("SSD1B", SDXL)
KOALA_700M = _absent("KOALA_700M", SDXL)
KOALA_1B = _absent("KOALA_1B", SDXL)
Segmind_Vega = _absent("Segmind_Vega", SDXL)
SD_X4Upscaler = _absent("SD_X4Upscaler", SD20)
Stable_Cascade_C = _absent("Stable_Cascade_C", BASE)
Stable_Cascade_B = _absent("Stable_Cascade_B", Stable_Cascade_C)
SVD_img2vid = _absent("SVD_img2vid", BASE)
SV3D_u = _absent("SV3D_u", SVD_img2vid)
SV3D_p = _absent("SV3D_p", SV3D_u)
StableAudio = _absent("StableAudio", BASE)
AuraFlow = _absent("AuraFlow", BASE)
PixArtAlpha = _absent("PixArtAlpha", BASE)
PixArtSigma = _absent("PixArtSigma", PixArtAlpha)
HunyuanDiT = _absent("HunyuanDiT", BASE)
HunyuanDiT1 = _absent("HunyuanDiT1", HunyuanDiT)
FluxInpaint = _absent("FluxInpaint", Flux)
GenmoMochi = _absent("GenmoMochi", BASE)
LTXV = _absent("LTXV", BASE)
HunyuanVideo = _absent("HunyuanVideo", BASE)
HunyuanImage21Refiner = _absent("HunyuanImage21Refiner", HunyuanVideo)
HunyuanImage21 = _absent("HunyuanImage21", HunyuanVideo)
HunyuanVideoSkyreelsI2V = _absent("HunyuanVideoSkyreelsI2V", HunyuanVideo)
HunyuanVideoI2V = _absent("HunyuanVideoI2V", HunyuanVideo)
CosmosT2V = _absent("CosmosT2V", BASE)
CosmosI2V = _absent("CosmosI2V", CosmosT2V)
CosmosT2IPredict2 = _absent("CosmosT2IPredict2", BASE)
CosmosI2VPredict2 = _absent("CosmosI2VPredict2", CosmosT2IPredict2)
Lumina2 = _absent("Lumina2", BASE)
WAN21_T2V = _absent("WAN21_T2V", BASE)
WAN22_T2V = _absent("WAN22_T2V", WAN21_T2V)
WAN21_I2V = _absent("WAN21_I2V", WAN21_T2V)
WAN21_FunControl2V = _absent("WAN21_FunControl2V", WAN21_T2V)
WAN21_Vace = _absent("WAN21_Vace", WAN21_T2V)
WAN21_Camera = _absent("WAN21_Camera", WAN21_T2V)
WAN22_Camera = _absent("WAN22_Camera", WAN21_T2V)
WAN22_S2V = _absent("WAN22_S2V", WAN21_T2V)
WAN21_HuMo = _absent("WAN21_HuMo", WAN21_T2V)
WAN22_Animate = _absent("WAN22_Animate", WAN21_T2V)
Hunyuan3Dv2 = _absent("Hunyuan3Dv2", BASE)
Hunyuan3Dv2mini = _absent("Hunyuan3Dv2mini", Hunyuan3Dv2)
Hunyuan3Dv2_1 = _absent("Hunyuan3Dv2_1", Hunyuan3Dv2)
HiDream = _absent("HiDream", BASE)
Chroma = _absent("Chroma", BASE)
ChromaRadiance = _absent("ChromaRadiance", Chroma)
ACEStep = _absent("ACEStep", BASE)
Omnigen2 = _absent("Omnigen2", BASE)
QwenImage = _absent("QwenImage", BASE)

models = [LotusD, Stable_Zero123, SD15_instructpix2pix, SD15, SD20, SD21UnclipL, SD21UnclipH, SDXL_instructpix2pix, SDXLRefiner, SDXL, SSD1B, KOALA_700M, KOALA_1B, Segmind_Vega, SD_X4Upscaler, Stable_Cascade_C, Stable_Cascade_B, SV3D_u, SV3D_p, SD3, StableAudio, AuraFlow, PixArtAlpha, PixArtSigma, HunyuanDiT, HunyuanDiT1, FluxInpaint, Flux, FluxSchnell, GenmoMochi, LTXV, HunyuanImage21Refiner, HunyuanImage21, HunyuanVideoSkyreelsI2V, HunyuanVideoI2V, HunyuanVideo, CosmosT2V, CosmosI2V, CosmosT2IPredict2, CosmosI2VPredict2, Lumina2, WAN22_T2V, WAN21_T2V, WAN21_I2V, WAN21_FunControl2V, WAN21_Vace, WAN21_Camera, WAN22_Camera, WAN22_S2V, WAN21_HuMo, WAN22_Animate, Hunyuan3Dv2mini, Hunyuan3Dv2, Hunyuan3Dv2_1, HiDream, Chroma, ChromaRadiance, ACEStep, Omnigen2, QwenImage]
