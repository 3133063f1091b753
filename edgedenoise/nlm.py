"""The OpenCV NLM anchor (fastNlMeansDenoisingColored), with the one table of its strength h.

Every figure that sets the models beside NLM (`bench --vs nlm`, benchmarks/quality.py,
latency.py, video.py) uses this h, so "NLM" means the same thing everywhere. It is the h that
gave the best PSNR on one held-out training image (CBSD432, camera protocol, h scanned in steps
of 0.1 sigma), as benchmarks/quality.py tunes it and records it in results/quality.json; never
tuned on a test image. Other sigmas: linear between the table's, proportional to sigma beyond them.
"""
from __future__ import annotations

import numpy as np

NLM_H = {15: 6.7, 25: 13.7, 50: 27.5}  # benchmarks/results/quality.json "nlm_h"
TEMPLATE, SEARCH = 7, 21


def nlm_h(sigma: float) -> float:
    """h for noise of std `sigma` (0-255 scale): the table, linear between its sigmas and
    proportional to sigma beyond them."""
    s = sorted(NLM_H)
    if sigma <= s[0] or sigma >= s[-1]:
        end = s[0] if sigma <= s[0] else s[-1]
        return round(NLM_H[end] * sigma / end, 2)
    lo, hi = next((a, b) for a, b in zip(s, s[1:]) if a <= sigma <= b)
    return round(NLM_H[lo] + (NLM_H[hi] - NLM_H[lo]) * (sigma - lo) / (hi - lo), 2)


def nlm_denoise(frame: np.ndarray, h: float) -> np.ndarray:
    """uint8 BGR frame -> OpenCV NLM with strength h (colour h = h), template 7, search 21."""
    import cv2

    return cv2.fastNlMeansDenoisingColored(frame, None, h, h, TEMPLATE, SEARCH)
