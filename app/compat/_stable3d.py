"""`comfy_extras.nodes_stable3d.camera_embeddings`: Zero123's camera pose vector (Easy-Use imports it at load).

Loom loads no Zero123 / SV3D model and registers none of that module's nodes; the function is plain arithmetic.
"""
from __future__ import annotations

import torch


def camera_embeddings(elevation: float, azimuth: float) -> torch.Tensor:
    """[1, 1, 4]: polar offset (-elevation, radians), sin and cos of the azimuth, and the fixed 90 degree radius
    term, as Stable Zero123 is conditioned."""
    elev = torch.as_tensor([elevation])
    azim = torch.deg2rad(torch.as_tensor([azimuth]))
    columns = [torch.deg2rad(-elev), torch.sin(azim), torch.cos(azim), torch.deg2rad(torch.full_like(elev, 90.0))]
    return torch.stack(columns, dim=-1).unsqueeze(1)
