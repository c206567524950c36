"""RebatchImages / RebatchLatents: ComfyUI's regrouping of list items into batches of a chosen size."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from nodes._base import NodeInputError
from nodes.batch import RebatchImages, RebatchLatents


def _images(*values: float) -> torch.Tensor:
    return torch.stack([torch.full((4, 6, 3), v) for v in values])


def test_rebatch_images_regroups_every_image_in_order() -> None:
    (out,) = RebatchImages().rebatch([_images(0.0, 0.1), _images(0.2, 0.3, 0.4)], [2])
    assert [b.shape[0] for b in out] == [2, 2, 1]
    assert [round(float(b[i, 0, 0, 0]), 1) for b in out for i in range(b.shape[0])] == [0.0, 0.1, 0.2, 0.3, 0.4]
    (one,) = RebatchImages().rebatch([_images(0.0), _images(0.5)], [8])
    assert len(one) == 1 and one[0].shape == (2, 4, 6, 3)


def test_rebatch_images_of_different_sizes_is_an_error_naming_the_input() -> None:
    with pytest.raises(NodeInputError, match="RebatchImages.*'images'.*different sizes"):
        RebatchImages().rebatch([_images(0.0), torch.zeros(1, 8, 8, 3)], [2])


def _latent(count: int, size: int, start: float = 0.0, **extra: Any) -> dict[str, Any]:
    samples = torch.arange(count, dtype=torch.float32).add(start).view(count, 1, 1, 1).expand(count, 4, size, size)
    return {"samples": samples.clone(), **extra}


def test_rebatch_latents_splits_at_size_changes_and_numbers_items() -> None:
    latents = [_latent(2, 8), _latent(1, 8, start=2), _latent(2, 16, start=3)]
    (out,) = RebatchLatents().rebatch(latents, [2])
    assert [o["samples"].shape for o in out] == [(2, 4, 8, 8), (1, 4, 8, 8), (2, 4, 16, 16)]
    assert [o["batch_index"] for o in out] == [[0, 1], [2], [3, 4]]
    assert [o["samples"][:, 0, 0, 0].tolist() for o in out] == [[0.0, 1.0], [2.0], [3.0, 4.0]]
    assert all("noise_mask" not in o for o in out)  # all-ones default masks are dropped again


def test_rebatch_latents_keeps_given_indices_and_masks() -> None:
    mask = torch.zeros(1, 1, 64, 64)  # one mask for a batch of three: repeated per item
    latents = [_latent(3, 8, noise_mask=mask, batch_index=[7, 8, 9]), _latent(1, 8)]
    (out,) = RebatchLatents().rebatch(latents, [3])
    assert [o["batch_index"] for o in out] == [[7, 8, 9], [3]]  # the running position counts given indices
    assert out[0]["noise_mask"].shape == (3, 1, 64, 64) and float(out[0]["noise_mask"].max()) == 0.0
    assert "noise_mask" not in out[1]


def test_rebatch_runs_as_a_list_node_in_a_graph(registry: Any) -> None:
    from executor.testing import run_graph

    class Frames:
        RETURN_TYPES = ("IMAGE",)
        OUTPUT_IS_LIST = (True,)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {}}

        def run(self) -> tuple[list[torch.Tensor]]:
            return ([_images(0.0), _images(0.5, 0.5), _images(1.0)],)

    registry.register("Frames", Frames)
    prompt = {"f": {"class_type": "Frames", "inputs": {}},
              "r": {"class_type": "RebatchImages", "inputs": {"images": ["f", 0], "batch_size": 3}}}
    run = run_graph(registry, prompt, validate=False, outputs=["r"])
    assert [b.shape[0] for b in run.outputs["r"][0]] == [3, 1]
