"""The inpainting fine-tune's examples: masks chosen before the shape hold the shape, and the picture outside
the mask is the base scene's (engine/demo/inpaint_data.py)."""
from __future__ import annotations

import numpy as np

from engine.demo.inpaint_data import box_inside, free_rect, inpaint_batch
from engine.demo.world import training_scenes


def test_free_masks_cover_sides_and_boxes_and_hold_the_shape() -> None:
    rng = np.random.default_rng(0)
    sides = 0
    for _ in range(400):
        x0, y0, x1, y1 = free_rect(128, rng)
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
        edges = (x0 == 0) + (y0 == 0) + (x1 == 128) + (y1 == 128)
        sides += edges >= 3
        assert 0.3 * 128 <= min(x1 - x0, y1 - y0)
        left, top, side = box_inside((x0, y0, x1, y1), 128, rng)
        assert x0 <= left and left + side <= x1 and y0 <= top and top + side <= y1
        assert side <= 0.72 * 128
    assert 120 < sides < 280  # about half are one side of the picture


def test_examples_keep_one_background_outside_the_mask() -> None:
    images, masks, captions = inpaint_batch(training_scenes(), 64, 24, np.random.default_rng(1), partial_prob=0.25,
                                            distractor_prob=0.0, short_caption_prob=0.0, free_prob=1.0)
    assert images.shape == (24, 64, 64, 3) and masks.shape == (24, 64, 64) and len(captions) == 24
    for image, mask in zip(images, masks, strict=True):
        outside = image[mask == 0]
        assert outside.size and np.all(outside == outside[0])  # no distractor: the background only
        inside = image[mask == 1].reshape(-1, 3)
        assert np.any(np.any(inside != outside[0], axis=1))  # the captioned shape was drawn inside
