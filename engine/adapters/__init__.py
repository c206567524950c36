"""Image-conditioning adapters: ControlNet and T2I-Adapter (control residuals added inside the UNet).

    engine.adapters.detect        layout / family / config from a file's keys and shapes (torch-free)
    engine.adapters.networks      the ControlNet (cldm) and T2I-Adapter (full, light) networks
    engine.adapters.control_load  load_control(path, manager, model=None) -> ControlHandle
    engine.adapters.control       ControlHandle (CONTROL_NET), per-run ControlRun, bind_controls
    engine.adapters.control_contract  ContractControlRun: a pack's ComfyUI-contract control for one run
"""
