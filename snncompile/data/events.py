"""Event digits: a neuromorphic version of the bundled digits, generated the way N-MNIST was made.

N-MNIST (Orchard et al., 2015) was recorded by an event camera looking at MNIST digits while
the camera made three saccades along a triangle.  We simulate that recording for the scikit-learn
digits so that event-data models have a small data set that needs no download.  This docstring is
the specification of the data set.

Generation, for every digit (all 1797 at once), with S = ``img_size`` and T = ``time_steps``:

1. Scene.  The digit scaled to [0, 1] (grey level / 16) and resized bilinearly to S x S, on a
   black background (intensity 0 outside the image).
2. Saccades.  The scene moves by a displacement p (pixels; dx right, dy down) at constant speed
   along three straight saccades around a fixed triangle, r = 0.4 S / 16:
   (0, 0) -> (r, r) -> (-r, r) -> (0, 0), i.e. right-down, left, right-up.  The total travel is
   (2 + 2 sqrt 2) r, about 1.9 px at S = 16, and scales with S.
3. Time.  Each saccade takes K = 16 ceil(T / 16) sub-steps, M = 3K in all; p_0 = (0, 0) and p_m
   (m = 1 .. M) is the position after sub-step m.  The scene seen at sub-step m is the image
   shifted by p_m with bilinear sub-pixel sampling (``grid_sample``, zero padding = background).
4. DVS pixel.  Each pixel sees the log intensity L = log(eps + I), eps = 0.1, and keeps a
   reference level, initialised to L at p_0 (a static scene emits nothing).  At each sub-step,
   with D = L - reference and contrast threshold C = 0.2, the pixel emits floor(D / C) ON events
   when D > 0, or floor(-D / C) OFF events when D < 0, and its reference level moves by C per
   event towards L (the usual multi-event DVS pixel model; with these small sub-steps a pixel
   rarely fires more than once per sub-step).  Arithmetic is in float64.
5. Frames.  Sub-step m goes to frame floor((m - 1) T / M); a frame counts the events of its
   sub-steps, channel 0 ON and channel 1 OFF.
6. Noise.  Background activity: at each sub-step each pixel fires a spurious ON event with
   probability 0.05 / M and, independently, a spurious OFF event with the same probability
   (0.05 per pixel and polarity per recording).  These are drawn per frame, as Binomial(number
   of the frame's sub-steps, 0.05 / M) counts, from a ``torch.Generator`` seeded with ``seed``.

A sample is [T, 2, S, S] float32 of integer counts.  The train/test split is the bundled digits'
stratified split (``test_fraction``, ``seed``).  The same (S, T, seed) gives bit-identical tensors
in every call and process on a given machine and torch build (a different CPU or build may round
the float64 log or grid sample differently and so move a rare threshold crossing).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..config import DataConfig, ModelConfig

from .common import TensorPairs, stratified_split
from .digits import NUM_CLASSES, digit_images, raw_digits

SACCADE_RADIUS = 0.4     # r at img_size 16, in pixels
LOG_EPS = 0.1
CONTRAST_THRESHOLD = 0.2
NOISE_PER_RECORDING = 0.05

# Samples are simulated in passes of about 2^22 values per [M, chunk, S, S] array (32 MiB of
# float64): memory stays bounded and the whole-array ops stay few.
PASS_ELEMENTS = 2 ** 22
# The sequential scan works on slices below torch's parallel grain size (32768 elements), where an
# op stays on one thread: thousands of tiny parallel regions cost far more than they save, and
# far more still on a busy machine.
SCAN_ELEMENTS = 2 ** 14


def saccade_path(img_size: int, num_substeps: int) -> torch.Tensor:
    """Displacements (dx, dy) in pixels at sub-steps 0 .. num_substeps, [num_substeps + 1, 2]."""
    r = SACCADE_RADIUS * img_size / 16
    corners = torch.tensor([[0.0, 0.0], [r, r], [-r, r], [0.0, 0.0]], dtype=torch.float64)
    per_leg = num_substeps // 3
    frac = torch.arange(per_leg, dtype=torch.float64) / per_leg
    legs = [a + frac[:, None] * (b - a) for a, b in zip(corners[:-1], corners[1:])]
    return torch.cat(legs + [corners[-1:]])


def _shifted_log_intensity(scene: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
    """log(eps + I) of ``scene`` [N, 1, S, S] shifted by each displacement: [len(path), N, S, S]."""
    size = scene.shape[-1]
    centres = (torch.arange(size, dtype=torch.float64) * 2 + 1) / size - 1
    gy, gx = torch.meshgrid(centres, centres, indexing="ij")
    base = torch.stack([gx, gy], dim=-1)  # grid_sample wants (x, y) order
    # Content moves by +shift, so sample at (x - dx, y - dy); normalised units are 2/S per pixel.
    grids = base[None] - path[:, None, None, :] * (2.0 / size)
    # Samples ride on the channel axis so that one grid (one displacement) serves all of them.
    frames = scene[:, 0][None].expand(len(path), -1, -1, -1)
    shifted = F.grid_sample(frames, grids, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    return shifted.add_(LOG_EPS).log_()


def _dvs_events(scene: torch.Tensor, path: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ON and OFF event counts per sub-step, each [M, N, S, S], for ``path`` [M + 1, 2].

    The reference level is always L(0) + C k for an integer k, and the multi-event rule of step 4
    amounts to k <- clamp(k, floor(u), ceil(u)) with u = (L - L(0)) / C: the sequential loop is
    then one exact clamp on small integers per sub-step, and a change of exactly C counts as an
    event (a float reference level updated step by step can miss it through rounding).
    """
    level = _shifted_log_intensity(scene.to(torch.float64), path)
    u = level[1:].sub_(level[0]).div_(CONTRAST_THRESHOLD)
    lo = torch.floor(u).to(torch.float32).flatten(1)
    hi = torch.ceil(u).to(torch.float32).flatten(1)
    signed = torch.empty_like(lo)
    for start in range(0, lo.shape[1], SCAN_ELEMENTS):
        part = slice(start, start + SCAN_ELEMENTS)
        k = torch.zeros_like(lo[0, part])
        for m in range(len(lo)):
            k_next = torch.clamp(k, lo[m, part], hi[m, part])
            torch.sub(k_next, k, out=signed[m, part])
            k = k_next
    signed = signed.view(u.shape)
    return signed.clamp(min=0), (-signed).clamp(min=0)


def simulate_dvs(scene: torch.Tensor, time_steps: int, seed: int) -> torch.Tensor:
    """Record ``scene`` [N, 1, S, S] (intensities in [0, 1]) as [N, T, 2, S, S] event counts."""
    n, _, size, _ = scene.shape
    num_substeps = 3 * 16 * math.ceil(time_steps / 16)
    path = saccade_path(size, num_substeps)
    frame_of = torch.arange(num_substeps) * time_steps // num_substeps

    counts = torch.empty(n, time_steps, 2, size, size)
    chunk = max(1, PASS_ELEMENTS // ((num_substeps + 1) * size * size))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        for polarity, per_step in enumerate(_dvs_events(scene[start:stop], path)):
            per_frame = torch.zeros(time_steps, stop - start, size, size)
            per_frame.index_add_(0, frame_of, per_step)
            counts[start:stop, :, polarity] = per_frame.transpose(0, 1)

    # Independent Bernoulli(p) noise at each of a frame's b sub-steps is Binomial(b, p) per frame.
    substeps_per_frame = torch.bincount(frame_of, minlength=time_steps).to(torch.float32)
    trials = substeps_per_frame[None, :, None, None, None].expand_as(counts).contiguous()
    p_noise = torch.full_like(trials, NOISE_PER_RECORDING / num_substeps)
    gen = torch.Generator().manual_seed(seed)
    return counts + torch.binomial(trials, p_noise, generator=gen)


@lru_cache(maxsize=4)
def event_digits(img_size: int, time_steps: int, seed: int) -> torch.Tensor:
    """All 1797 recordings, [1797, T, 2, S, S] float32 counts.

    Cached because several callers load it; the tensor is shared, so index it (a copy) before
    changing anything.
    """
    return simulate_dvs(digit_images(img_size), time_steps, seed)


def load_event_digits(data: DataConfig, model: ModelConfig, split: str) -> TensorPairs:
    """Event digits as [T, 2, H, W] per sample, split like the bundled digits."""
    _, labels = raw_digits()
    idx = stratified_split(labels, split, data.test_fraction, data.seed)
    x = event_digits(model.img_size, model.time_steps, data.seed)[idx]
    return TensorPairs(x, torch.tensor(labels[idx]), NUM_CLASSES)
