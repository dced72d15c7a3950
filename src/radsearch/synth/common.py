"""Shared machinery of the phantom generators: knobs, seeded RNG streams, drawing, acquisition, output.

Both phantoms are drawn the same way: an *attenuation map* is built from soft masks evaluated on a
coordinate grid (signed-distance-like functions, so edges are smooth and the cortex of a bone is a
thin band at distance ~0 inside its outline), then an *acquisition* turns it into a radiograph
(exposure curve, blur, quantum noise, collimation) and 8-bit pixels. The grid itself is posed
(rotation, scale, shift) before anything is evaluated, so anatomy and its texture move together.

Determinism: every subject draws from its own RNG streams derived from ``(seed, subject index,
stream)`` with :class:`numpy.random.SeedSequence`, so the output does not depend on the number of
worker processes, and changing one knob (e.g. acquisition noise) does not reshuffle the anatomy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
import multiprocessing

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from radsearch.cohort import Cohort
from radsearch.errors import ConfigError
from radsearch.io import atomic_path

# Independent RNG streams per subject (index into SeedSequence.spawn_key).
STREAM_ANATOMY = 0
STREAM_COURSE = 1      # disease course / visits / findings
STREAM_ACQUISITION = 2
STREAM_TEXTURE = 3
STREAM_REPORT = 4      # report wording and which studies have one


@dataclass
class SynthCohort:
    """A generated cohort: the manifest table and, in memory mode, the pixels (uint8 [N, H, W]).

    When the generator was given ``out_dir``, PNGs and ``out_dir/manifest.csv`` were written and
    ``images`` is None; otherwise ``images[i]`` is the image of ``cohort.table`` row ``i``.
    """

    cohort: Cohort
    images: np.ndarray | None
    manifest: Path | None = None


# ------------------------------------------------------------------ knobs
@dataclass(frozen=True)
class Knob:
    """A difficulty knob: documented default and the closed range a user may set."""

    default: float
    low: float
    high: float
    help: str


def resolve_knobs(spec: dict[str, Knob], given: dict[str, object], generator: str) -> dict[str, float]:
    """Defaults overridden by ``given``; unknown names or out-of-range values raise ConfigError."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise ConfigError(f"{generator}: unknown difficulty knob(s) {', '.join(unknown)}; "
                          f"known knobs are {', '.join(sorted(spec))}.")
    out: dict[str, float] = {}
    for name, knob in spec.items():
        value = given.get(name, knob.default)
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"{generator}: knob {name}={value!r} is not a number; use a value in "
                              f"[{knob.low}, {knob.high}] (default {knob.default}).") from None
        if not (math.isfinite(number) and knob.low <= number <= knob.high):
            raise ConfigError(f"{generator}: knob {name}={value!r} is out of range; use a value in "
                              f"[{knob.low}, {knob.high}] (default {knob.default}): {knob.help}")
        out[name] = number
    return out


def check_common_args(generator: str, n_subjects: object, image_size: object) -> None:
    """Validate the arguments every generator shares."""
    if not isinstance(n_subjects, (int, np.integer)) or isinstance(n_subjects, bool) or n_subjects < 1:
        raise ConfigError(f"{generator}: n_subjects={n_subjects!r}; give a whole number >= 1.")
    if (not isinstance(image_size, (int, np.integer)) or isinstance(image_size, bool)
            or not 32 <= image_size <= 2048):
        raise ConfigError(f"{generator}: image_size={image_size!r}; give a whole number of pixels "
                          "between 32 and 2048 (default 256).")


def subject_rng(seed: int, subject: int, stream: int) -> np.random.Generator:
    """The RNG of one subject's stream; independent of worker count and of other subjects."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(subject, stream)))


def split_rng(seed: int, salt: int) -> np.random.Generator:
    """The RNG of a cohort's subject-grouped split (independent of every subject's streams)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(10**9 + salt,)))


# ------------------------------------------------------------------ drawing on a grid
def grid(size: int, angle_deg: float = 0.0, scale: float = 1.0, shift: tuple[float, float] = (0, 0),
         extent: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Anatomical coordinates (x right, y down, [-extent, extent] at scale 1) of each pixel.

    A posed acquisition is the inverse map: the pixel grid is rotated / scaled / shifted into the
    anatomy's frame, so every shape and texture evaluated on it moves together.
    """
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    px, py = np.meshgrid(axis * extent, axis * extent)
    a = math.radians(angle_deg)
    c, s = math.cos(a) / scale, math.sin(a) / scale
    x = c * px - s * py - shift[0]
    y = s * px + c * py - shift[1]
    return x.astype(np.float32), y.astype(np.float32)


def ellipse_sd(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float,
               angle_deg: float = 0.0) -> np.ndarray:
    """Approximate signed distance to an ellipse (negative inside)."""
    dx, dy = x - cx, y - cy
    if angle_deg:
        a = math.radians(angle_deg)
        dx, dy = math.cos(a) * dx + math.sin(a) * dy, -math.sin(a) * dx + math.cos(a) * dy
    r = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)
    return (r - 1.0) * min(rx, ry)


def box_sd(x: np.ndarray, y: np.ndarray, x0: float, x1: float, y0: float, y1: float,
           radius: float = 0.0) -> np.ndarray:
    """Signed distance to an axis-aligned box with rounded corners."""
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hx, hy = (x1 - x0) / 2 - radius, (y1 - y0) / 2 - radius
    qx, qy = np.abs(x - cx) - hx, np.abs(y - cy) - hy
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    inside = np.minimum(np.maximum(qx, qy), 0)
    return outside + inside - radius


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: union of two shapes with a fillet of size ``k``."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def fill(sd: np.ndarray, edge: float) -> np.ndarray:
    """Soft inside-mask of a signed distance field (edge = half-width of the ramp)."""
    return np.clip(0.5 - sd / (2 * edge), 0.0, 1.0)


def rim(sd: np.ndarray, width: float) -> np.ndarray:
    """A band just inside the outline (cortical bone), peak at the edge, fading inward."""
    inside = np.clip(-sd / width, 0.0, None)
    return np.exp(-inside * inside) * fill(sd, width * 0.35)


def band_noise(rng: np.random.Generator, size: int, sigma_small: float, sigma_large: float,
               anisotropy: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Band-pass filtered white noise (difference of Gaussians), zero mean, unit std.

    Used as trabecular bone texture (anisotropic: trabeculae run along the load axis) and as lung
    markings; it is drawn once per subject and sampled through the posed grid.
    """
    white = rng.standard_normal((size, size)).astype(np.float32)
    ax, ay = anisotropy
    fine = ndimage.gaussian_filter(white, (sigma_small * ay, sigma_small * ax), mode="wrap")
    coarse = ndimage.gaussian_filter(white, (sigma_large * ay, sigma_large * ax), mode="wrap")
    out = fine - coarse
    return (out - out.mean()) / (out.std() + 1e-8)


def sample(field: np.ndarray, x: np.ndarray, y: np.ndarray, extent: float) -> np.ndarray:
    """Nearest-neighbour sample of a field covering [-extent, extent]² at the grid coordinates.

    Nearest (not bilinear) because it is ten times faster and the acquisition blur that follows
    hides the difference; coordinates outside the field wrap around (band_noise is periodic).
    """
    n = field.shape[0]
    col = ((x / extent + 1.0) * (0.5 * n)).astype(np.int32) % n
    row = ((y / extent + 1.0) * (0.5 * n)).astype(np.int32) % n
    return field.ravel()[row * n + col]


# ------------------------------------------------------------------ acquisition
@dataclass
class Acquisition:
    """How one exposure renders an attenuation map into pixels (varies per image and per site)."""

    gain: float = 1.0          # exposure / kVp: steepness of 1 - exp(-gain * attenuation)
    gamma: float = 1.0         # display curve
    offset: float = 0.0        # background level
    blur: float = 0.6          # Gaussian blur sigma in pixels (focal spot, detector)
    noise: float = 0.02        # quantum noise std at mid-grey
    collimation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # top, bottom, left, right
    collimation_level: float = 0.85


def render(attenuation: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Attenuation map -> uint8 radiograph (bone bright, soft tissue grey, air dark)."""
    size = attenuation.shape[0]
    signal = 1.0 - np.exp(-acq.gain * np.maximum(attenuation, 0.0))
    sigma = acq.blur * size / 256.0
    if acq.noise > 0:
        # Quantum noise is larger where fewer photons arrive (bright = attenuated), plus a floor.
        # It is added before the detector blur (one filter pass instead of two), which gives it a
        # grain of about the blur's size; the factor keeps its visible std at ``acq.noise``.
        std = acq.noise * (0.4 + 0.8 * np.sqrt(np.clip(signal, 0.0, 1.0)))
        if sigma > 0.05:
            std *= max(1.0, 2.0 * math.sqrt(math.pi) * sigma)
        signal = signal + std * rng.standard_normal(signal.shape, dtype=np.float32)
    if sigma > 0.05:
        signal = ndimage.gaussian_filter(signal, sigma, mode="nearest")
    signal = np.clip(acq.offset + (1.0 - acq.offset) * np.clip(signal, 0.0, 1.0), 0.0, 1.0)
    signal = signal ** acq.gamma
    top, bottom, left, right = (int(round(f * size)) for f in acq.collimation)
    if top or bottom or left or right:
        shutter = np.zeros_like(signal, dtype=bool)
        if top:
            shutter[:top] = True
        if bottom:
            shutter[size - bottom:] = True
        if left:
            shutter[:, :left] = True
        if right:
            shutter[:, size - right:] = True
        signal = np.where(shutter, acq.collimation_level + 0.03 * signal, signal)
    return np.clip(signal * 255.0 + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ output
def write_png(path: Path, pixels: np.ndarray) -> None:
    """Write an 8-bit grayscale PNG atomically (fast zlib level: these are throw-away phantoms)."""
    with atomic_path(path) as tmp:
        Image.fromarray(pixels, mode="L").save(tmp, format="PNG", compress_level=1)


def default_workers(n_tasks: int) -> int:
    """One worker per available core, never more than there are tasks."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, n_tasks))


def run_subjects(task: Callable[[int], object], n_subjects: int, workers: int | None,
                 progress: Callable[[int], None] | None = None) -> list:
    """``[task(i) for i in range(n_subjects)]``, in worker processes when that helps.

    Results come back in subject order whatever the worker count, so the cohort is identical with
    1 or 16 workers. ``progress(k)`` is called with the number of subjects just finished.
    """
    workers = default_workers(n_subjects) if workers is None else int(workers)
    if workers < 1:
        raise ConfigError(f"workers={workers}; give a number of processes >= 1 (or None for one "
                          "per core).")
    if workers == 1 or n_subjects < 4:
        out = []
        for i in range(n_subjects):
            out.append(task(i))
            if progress:
                progress(1)
        return out
    chunk = max(1, min(16, n_subjects // (workers * 4)))
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    out = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for result in pool.map(task, range(n_subjects), chunksize=chunk):
            out.append(result)
            if progress:
                progress(1)
    return out


def flatten(per_subject: Iterable[list]) -> list:
    return [item for items in per_subject for item in items]


def finish_cohort(table: pd.DataFrame, pixels: list[list[np.ndarray]], out: Path | None,
                  ) -> SynthCohort:
    """In memory: stack the pixels in row order. On disk: write the manifest last, then reload it
    (so the returned cohort is exactly what a user's ``Cohort.load`` will see)."""
    if out is None:
        images = np.stack([p for ps in pixels for p in ps]) if len(table) else None
        return SynthCohort(Cohort(table, root=None, source="synthetic cohort"), images)
    manifest = out / "manifest.csv"
    Cohort(table, root=out, source=str(manifest)).save(manifest)
    return SynthCohort(Cohort.load(manifest), None, manifest)
