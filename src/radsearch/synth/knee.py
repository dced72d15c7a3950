"""Longitudinal knee radiograph phantoms (OAI-like: bilateral PA films, 0-96 months, KL grades).

What persists for a subject (the identity signal): bone widths, the shapes of the femoral condyles
and intercondylar notch, the tibial plateau and spines, the fibular head's position and size, the
patella's shadow, the soft-tissue envelope and the trabecular texture (a subject-specific random
field). Left and right knees share the anatomy up to a small asymmetry.

What changes with the years (the nuisance a forensic model must ignore): osteoarthritis progresses
per knee (joint-space narrowing, medial first; osteophytes at the margins; subchondral sclerosis;
the Kellgren-Lawrence grade is recorded and never decreases), bone density falls and the texture
drifts slowly with age, and some severe knees receive a total knee replacement at a later visit.
Each film also has its own acquisition (pose, scale, flexion, exposure, noise, blur, collimation)
and each of the five sites (A-E) has its own exposure style. Right knees are drawn as mirror images,
as they appear on a PA film (fibula on the image's left); the pipeline mirrors them back.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from radsearch.datasets.splits import assign_by_subject
from radsearch.synth.common import (STREAM_ACQUISITION, STREAM_ANATOMY, STREAM_COURSE,
                                    STREAM_TEXTURE, Acquisition, Knob, SynthCohort,
                                    band_noise, box_sd, check_common_args, ellipse_sd, fill,
                                    finish_cohort, flatten, grid, render, resolve_knobs, rim,
                                    run_subjects, sample, smooth_union, split_rng, subject_rng,
                                    write_png)

VISIT_MONTHS = (0, 12, 24, 36, 48, 72, 96)
SITES = ("A", "B", "C", "D", "E")
TEXTURE_EXTENT = 1.4  # the texture field covers [-1.4, 1.4]², enough for posed grids

KNEE_KNOBS: dict[str, Knob] = {
    "subject_similarity": Knob(0.35, 0.0, 1.0, "0 = very distinct anatomies, 1 = everybody has the "
                               "same anatomy (only texture and asymmetry tell subjects apart)"),
    "change_per_year": Knob(1.0, 0.0, 5.0, "multiplier of osteoarthritis progression, ageing and "
                            "texture drift per year (0 = nothing changes)"),
    "acquisition_noise": Knob(1.0, 0.0, 5.0, "multiplier of per-film variation: pose, scale, "
                              "flexion, exposure, blur, noise, collimation"),
    "replacement_rate": Knob(0.5, 0.0, 1.0, "probability that a knee reaching severe OA during "
                             "follow-up gets a total knee replacement at a later visit"),
}

# Acquisition style of each site: (gain, gamma, blur px, noise, background offset)
SITE_STYLE = {
    "A": (2.2, 1.00, 0.6, 0.020, 0.02),
    "B": (2.6, 0.90, 0.8, 0.025, 0.04),
    "C": (2.0, 1.10, 0.5, 0.030, 0.00),
    "D": (2.4, 0.95, 1.0, 0.018, 0.03),
    "E": (1.9, 1.05, 0.7, 0.028, 0.05),
}


@dataclass
class KneeAnatomy:
    """Subject-specific shape of one knee (left-knee frame: medial on the image's left)."""

    femur_shaft: float       # half-width of the femoral shaft
    condyle_m: tuple[float, float]  # medial condyle radii (x, y)
    condyle_l: tuple[float, float]
    condyle_half: float      # half-width across both condyles
    notch: tuple[float, float]      # intercondylar notch half-width, depth
    joint_y: float           # joint line height
    jsw_m: float             # baseline joint space width, medial / lateral
    jsw_l: float
    tibia_half: float        # half-width of the tibial plateau
    tibia_shaft: float
    plateau_depth: float     # how far down the plateau flares into the shaft
    spine: tuple[float, float]      # tibial spine height, separation
    tilt: float              # plateau tilt (degrees)
    varus: float             # femoral shaft angle against the tibia (degrees)
    fibula: tuple[float, float, float, float, float]  # head x, head y, head rx, head ry, shaft hw
    fibula_angle: float
    patella: tuple[float, float, float, float, float]  # cx, cy, rx, ry, density
    density: float           # bone density
    cortex: float            # cortical thickness
    texture_amp: float
    soft_half: float         # soft-tissue envelope half-width
    soft_density: float


def _anatomy(rng: np.random.Generator, spread: float,
             base: KneeAnatomy | None = None) -> KneeAnatomy:
    """Draw a subject's anatomy; with ``base``, a variant of it (``spread`` then scales the
    population SDs of the difference: the contralateral knee, or where ageing drifts to)."""

    def g(mean: float, sd: float, name: str | None = None) -> float:
        centre = mean if base is None else getattr_path(base, name)
        return float(centre + spread * sd * rng.standard_normal())

    size = 1.0 + spread * 0.07 * rng.standard_normal() if base is None else 1.0
    condyle_half = g(0.56 * size, 0.045, "condyle_half")
    anatomy = KneeAnatomy(
        femur_shaft=g(0.29 * size, 0.035, "femur_shaft"),
        condyle_m=(g(0.27 * size, 0.03, "condyle_m.0"), g(0.17 * size, 0.025, "condyle_m.1")),
        condyle_l=(g(0.25 * size, 0.03, "condyle_l.0"), g(0.155 * size, 0.025, "condyle_l.1")),
        condyle_half=condyle_half,
        notch=(g(0.06, 0.012, "notch.0"), g(0.12, 0.025, "notch.1")),
        joint_y=g(0.02, 0.04, "joint_y"),
        jsw_m=g(0.075, 0.014, "jsw_m"),
        jsw_l=g(0.085, 0.014, "jsw_l"),
        tibia_half=g(0.60 * size, 0.045, "tibia_half"),
        tibia_shaft=g(0.27 * size, 0.035, "tibia_shaft"),
        plateau_depth=g(0.28, 0.05, "plateau_depth"),
        spine=(g(0.07, 0.015, "spine.0"), g(0.075, 0.012, "spine.1")),
        tilt=g(0.0, 3.0, "tilt"),
        varus=g(0.0, 3.5, "varus"),
        fibula=(g(0.49 * size, 0.05, "fibula.0"), g(0.30, 0.04, "fibula.1"),
                g(0.13, 0.02, "fibula.2"), g(0.14, 0.02, "fibula.3"), g(0.065, 0.01, "fibula.4")),
        fibula_angle=g(-3.0, 3.0, "fibula_angle"),
        patella=(g(0.0, 0.06, "patella.0"), g(-0.30, 0.06, "patella.1"),
                 g(0.22, 0.035, "patella.2"), g(0.26, 0.035, "patella.3"), g(0.5, 0.12, "patella.4")),
        density=g(1.0, 0.12, "density"),
        cortex=g(0.035, 0.009, "cortex"),
        texture_amp=g(0.28, 0.07, "texture_amp"),
        soft_half=g(0.98, 0.12, "soft_half"),
        soft_density=g(0.19, 0.03, "soft_density"),
    )
    return anatomy


def _blend(a: KneeAnatomy, b: KneeAnatomy, w: float) -> KneeAnatomy:
    """The anatomy a fraction ``w`` of the way from ``a`` to ``b`` (w may exceed 1)."""
    def mix(u, v):
        if isinstance(u, tuple):
            return tuple(mix(p, q) for p, q in zip(u, v))
        return u + (v - u) * w
    return KneeAnatomy(**{k: mix(v, getattr(b, k)) for k, v in a.__dict__.items()})


def getattr_path(obj: object, name: str | None) -> float:
    """``getattr`` that also reads tuple items written as ``field.index``."""
    assert name is not None
    field, _, index = name.partition(".")
    value = getattr(obj, field)
    return float(value[int(index)] if index else value)


@dataclass
class KneeState:
    """Disease and age state of one knee at one visit."""

    severity: float          # continuous OA severity; KL grade = floor, capped at 4
    replaced: bool
    years: float             # years since baseline (ageing, texture drift)


def kl_grade(severity: float) -> int:
    return int(min(4, max(0, math.floor(severity))))


def draw_knee(size: int, a: KneeAnatomy, state: KneeState, texture: np.ndarray,
              pose: tuple[float, float, tuple[float, float], float], change: float) -> np.ndarray:
    """Attenuation map of one knee (left-knee frame) under one pose."""
    angle, scale, shift, flexion = pose
    x, y = grid(size, angle, scale, shift, extent=1.0)
    sev = 0.0 if state.replaced else state.severity
    j = a.joint_y
    # Flexion / beam angle changes the projected joint space and the patella's height.
    jsw_m = a.jsw_m * max(0.06, 1.0 - 0.235 * sev) * (1.0 + flexion)
    jsw_l = a.jsw_l * max(0.3, 1.0 - 0.07 * sev) * (1.0 + flexion)

    # ---- tibia: plateau (tilted, medial/lateral heights differ) flaring into the shaft
    t = math.radians(a.tilt)
    ty = y + math.tan(t) * x
    top = _plateau_top(a, x, jsw_m, jsw_l)
    depth = ty - top
    width = a.tibia_shaft + (a.tibia_half - a.tibia_shaft) * np.exp(
        -(np.maximum(depth - 0.05, 0.0) / a.plateau_depth) ** 2)
    tibia = _rounded(np.abs(x) - width, -depth, 0.06)
    sh, ss = a.spine
    spines = np.minimum(ellipse_sd(x, depth, -ss / 2, 0.0, 0.035, sh),
                        ellipse_sd(x, depth, ss / 2, 0.0, 0.035, sh * 0.8))
    tibia = smooth_union(tibia, spines, 0.02)

    # ---- femur: shaft flaring into two condyles (tilted by the varus/valgus angle)
    v = math.radians(a.varus - 1.2 * sev)  # medial OA tilts the knee into varus
    fx = math.cos(v) * x + math.sin(v) * (y - j)
    fy = -math.sin(v) * x + math.cos(v) * (y - j) + j
    rxm, rym = a.condyle_m
    rxl, ryl = a.condyle_l
    cym = j - jsw_m / 2 - rym
    cyl = j - jsw_l / 2 - ryl
    base = min(cym, cyl)
    height = np.maximum(base - fy, 0.0)
    fwidth = a.femur_shaft + (a.condyle_half - a.femur_shaft) * np.exp(-(height / 0.55) ** 2)
    profile = np.maximum(np.abs(fx) - fwidth, fy - base)
    condyles = np.minimum(ellipse_sd(fx, fy, -a.condyle_half + rxm, cym, rxm, rym),
                          ellipse_sd(fx, fy, a.condyle_half - rxl, cyl, rxl, ryl))
    femur = smooth_union(profile, condyles, 0.05)
    nw, nd = a.notch
    notch = ellipse_sd(fx, fy, (rxl - rxm) * 0.5, j, nw, nd + 0.04)
    femur = -smooth_union(-femur, notch, 0.03)

    # ---- osteophytes: lips growing outwards at the four joint margins (medial faster)
    spur = 0.011 * max(0.0, sev - 0.7) ** 1.2
    if spur > 0:
        rim_m = float(_plateau_top(a, -a.tibia_half, jsw_m, jsw_l)) + 0.02
        rim_l = float(_plateau_top(a, a.tibia_half, jsw_m, jsw_l)) + 0.02
        margins = ((-a.tibia_half, rim_m, -1, 0), (a.tibia_half, rim_l, 1, 0),
                   (-a.condyle_half, cym + 0.02, -1, 1), (a.condyle_half, cyl + 0.02, 1, 1))
        win = _rows_near(y, j, 0.25)  # spurs stay near the joint line: draw only those rows
        xw, yw = x[win], y[win]
        for ex, ey, sgn, on_femur in margins:
            grow = spur * (1.25 if sgn < 0 else 0.7)
            tilt = sgn * (-35 if on_femur else 35)
            bump = ellipse_sd(xw, yw, ex + sgn * grow * 0.1, ey, grow * 1.6, grow * 0.6,
                              angle_deg=tilt)
            bone_sd = femur if on_femur else tibia
            bone_sd[win] = smooth_union(bone_sd[win], bump, 0.015)

    # ---- fibula (lateral = image right), its head behind the tibia's lateral edge
    hx, hy, hrx, hry, fw = a.fibula
    fa = math.radians(a.fibula_angle)
    head_y = j + hy
    axis = hx + 0.015 + math.tan(fa) * (y - head_y)
    fibula = smooth_union(ellipse_sd(x, y, hx, head_y, hrx, hry),
                          np.maximum(np.abs(x - axis) - fw, head_y - y), 0.07)

    # ---- patella: a faint oval superimposed on the distal femur
    pcx, pcy, prx, pry, pden = a.patella
    patella = ellipse_sd(x, y, pcx, j + pcy - flexion * 0.5, prx, pry)

    # ---- bone material: network texture, cortex, sclerosis; ageing thins the bone
    n = sample(texture, x, y, TEXTURE_EXTENT)
    trabeculae = np.exp(-(n * 2.2) ** 2) - 0.35
    density = a.density * (1.0 - 0.006 * change * state.years)
    spongy = density * (0.20 + 0.08 * a.texture_amp / 0.28 * trabeculae)
    edge = 0.7 / size
    c = a.cortex
    bone = _bone(femur, spongy, density, c, edge) + _bone(tibia, spongy, density, c, edge)
    bone += 0.7 * _bone(fibula, spongy, density, 0.8 * c, edge)
    bone += pden * density * (0.18 * fill(patella, 0.03) + 0.05 * rim(patella, 0.02))
    sclerosis = 0.07 * max(0.0, sev - 1.2)
    if sclerosis > 0:
        win = _rows_near(y, j, 0.45)  # the dense band fades within ~0.3 of the joint
        medial = 1.0 / (1.0 + np.exp(x[win] / 0.1))
        near = (np.exp(-np.maximum(depth[win], 0.0) / 0.06) * fill(tibia[win], edge)
                + 0.5 * np.exp(-np.maximum(j - y[win], 0.0) / 0.06) * fill(femur[win], edge))
        bone[win] += sclerosis * density * near * (0.25 + 0.75 * medial)
    if state.replaced:
        bone += _replacement(x, fy, femur, tibia, ty, a)

    # ---- soft tissue: a cylinder-like leg, thicker towards the thigh
    half = a.soft_half * (1.0 + 0.06 * np.clip(-y, -1.5, 1.5))
    thickness = np.sqrt(np.clip(1.0 - (x / half) ** 2, 0.0, 1.0))
    return a.soft_density * thickness + bone


def _rows_near(y: np.ndarray, centre: float, half: float) -> slice:
    """The band of image rows whose anatomical y comes within ``half`` of ``centre``."""
    rows = np.flatnonzero((np.abs(y - centre) < half).any(axis=1))
    return slice(int(rows[0]), int(rows[-1]) + 1) if len(rows) else slice(0, 0)


def _rounded(qx: np.ndarray, qy: np.ndarray, r: float) -> np.ndarray:
    """Signed distance of the region {qx < 0, qy < 0} with its corner rounded by ``r``."""
    qx, qy = qx + r, qy + r
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - r


def _bone(sd: np.ndarray, spongy: np.ndarray, density: float, cortex: float,
          edge: float) -> np.ndarray:
    """Projected bone: spongy interior thickening away from the outline plus a bright cortex."""
    depth = np.clip(-sd / 0.1, 0.0, 1.0)
    inside = fill(sd, edge) * spongy * (0.45 + 0.55 * np.sqrt(depth))
    return inside + 0.2 * density * rim(sd, cortex)


def _plateau_top(a: KneeAnatomy, x, jsw_m: float, jsw_l: float):
    """Height of the tibial plateau: the medial (image left) and lateral joint spaces differ."""
    return a.joint_y + (jsw_m + jsw_l) / 4 + (jsw_m - jsw_l) / 4 * np.tanh(x / 0.12)


def _replacement(x: np.ndarray, fy: np.ndarray, femur: np.ndarray, tibia: np.ndarray,
                 ty: np.ndarray, a: KneeAnatomy) -> np.ndarray:
    """Total knee replacement: metal femoral shell, tibial tray with stem, radiolucent insert."""
    j = a.joint_y
    shell = fill(femur + 0.005, 0.004) * fill((j - 0.27) - fy, 0.006)
    box = fill(box_sd(x, fy, -0.07, 0.07, j - 0.24, j, 0.02), 0.004)
    flange = shell * (1.0 - 0.45 * box)
    tray_top = j + 0.055
    tray = fill(box_sd(x, ty, -a.tibia_half + 0.03, a.tibia_half - 0.03, tray_top, tray_top + 0.035,
                       0.01), 0.004)
    stem = fill(box_sd(x, ty, -0.055, 0.055, tray_top + 0.02, tray_top + 0.36, 0.045), 0.004)
    metal = np.maximum(flange, np.maximum(tray, stem))
    # The polyethylene insert between shell and tray replaces cartilage and resected bone.
    resected = fill(tibia, 0.004) * fill(ty - tray_top, 0.004)
    return 1.6 * metal - 0.35 * resected * (1.0 - metal)


# ------------------------------------------------------------------ one subject
@dataclass(frozen=True)
class _KneeJob:
    seed: int
    size: int
    knobs: tuple[tuple[str, float], ...]
    out_dir: str | None


def _subject_rows(index: int, job: _KneeJob) -> tuple[list[dict], list[np.ndarray]]:
    """All films of one subject (both knees, every visit): manifest rows and pixels."""
    knobs = dict(job.knobs)
    spread = 1.0 - knobs["subject_similarity"]
    change = knobs["change_per_year"]
    noise = knobs["acquisition_noise"]
    rng_a = subject_rng(job.seed, index, STREAM_ANATOMY)
    rng_c = subject_rng(job.seed, index, STREAM_COURSE)
    rng_q = subject_rng(job.seed, index, STREAM_ACQUISITION)
    rng_t = subject_rng(job.seed, index, STREAM_TEXTURE)

    subject = f"K{index:05d}"
    site = SITES[int(rng_a.integers(len(SITES)))]
    age0 = float(rng_a.uniform(45, 79))
    left = _anatomy(rng_a, spread)
    right = _anatomy(rng_a, 0.12, base=left)  # left/right asymmetry is small
    # Where each knee's shape drifts over ~8 years (remodelling, weight, bone density).
    aged = {"L": _anatomy(rng_a, 0.5, base=left), "R": _anatomy(rng_a, 0.5, base=right)}
    tex_size = max(96, min(job.size, 384))
    textures = {}
    for side in ("L", "R"):
        sigma = 1.6 * tex_size / 256
        base = band_noise(rng_t, tex_size, sigma, 4 * sigma, anisotropy=(1.0, 1.7))
        drift = band_noise(rng_t, tex_size, sigma, 4 * sigma, anisotropy=(1.0, 1.7))
        textures[side] = (base, drift)

    # Disease course: a subject-level OA propensity, shared by both knees, plus per-knee variation.
    propensity = rng_c.gamma(1.2, 0.8)
    courses = {}
    for side in ("L", "R"):
        sev0 = float(np.clip(propensity + 0.5 * rng_c.standard_normal(), 0.0, 3.95))
        kind = rng_c.choice(3, p=(0.6, 0.3, 0.1))
        rate = change * (0.02, 0.12, 0.40)[kind] * float(np.exp(0.3 * rng_c.standard_normal()))
        replace_draw = float(rng_c.random())
        delay = int(rng_c.integers(0, 3))
        courses[side] = (sev0, rate, replace_draw, delay)

    gain0, gamma0, blur0, noise0, offset0 = SITE_STYLE[site]
    rows: list[dict] = []
    pixels: list[np.ndarray] = []
    for side in ("L", "R"):
        native = left if side == "L" else right
        sev0, rate, replace_draw, delay = courses[side]
        severe_visits = [k for k, m in enumerate(VISIT_MONTHS) if sev0 + rate * m / 12 >= 3.5]
        replaced_from = None
        if severe_visits and replace_draw < knobs["replacement_rate"]:
            replaced_from = severe_visits[0] + 1 + delay
        last_kl = 0
        for k, months in enumerate(VISIT_MONTHS):
            years = months / 12
            replaced = replaced_from is not None and k >= replaced_from
            severity = min(sev0 + rate * years, 4.4)
            kl = last_kl if replaced else max(last_kl, kl_grade(severity))
            last_kl = kl
            anatomy = _blend(native, aged[side], min(2.0, change * years / 8.0))
            theta = 0.12 * change * years
            base, drift = textures[side]
            texture = math.cos(theta) * base + math.sin(theta) * drift
            # Standardised positioning (a fixed-flexion frame): small pose changes per film.
            angle, scale = rng_q.normal(0, 1.3 * noise), np.exp(rng_q.normal(0, 0.02 * noise))
            shift = (float(rng_q.normal(0, 0.02 * noise)), float(rng_q.normal(0, 0.02 * noise)))
            flexion = np.clip(rng_q.normal(0, 0.06 * noise), -0.5, 0.5)
            pose = (float(angle), float(scale), shift, float(flexion))
            state = KneeState(severity=severity, replaced=replaced, years=years)
            attenuation = draw_knee(job.size, anatomy, state, texture, pose, change)
            acq = Acquisition(
                gain=gain0 * float(np.exp(rng_q.normal(0, 0.05 * noise))),
                gamma=gamma0 * float(np.exp(rng_q.normal(0, 0.04 * noise))),
                offset=offset0,
                blur=blur0 * float(np.exp(rng_q.normal(0, 0.15 * noise))),
                noise=noise0 * min(noise, 3.0) * float(np.exp(rng_q.normal(0, 0.2))),
                collimation=_collimation(rng_q, noise),
            )
            image = render(attenuation, acq, rng_q)
            if side == "R":
                image = image[:, ::-1].copy()  # as on the film: a right knee's fibula is left
            study = f"{subject}_m{months:03d}"
            path = f"{subject}/m{months:03d}_{side}.png"
            if job.out_dir is not None:
                write_png(Path(job.out_dir) / path, image)
            else:
                pixels.append(image)
            rows.append({"image": path, "subject": subject, "time": years, "side": side,
                         "view": "PA", "study": study, "site": site, "kl": kl,
                         "tkr": int(replaced), "age": round(age0 + years, 2),
                         "visit_months": months})
    return rows, pixels


def _collimation(rng: np.random.Generator, noise: float) -> tuple[float, float, float, float]:
    if noise <= 0 or rng.random() > 0.1 * min(1.0, noise):
        return (0.0, 0.0, 0.0, 0.0)
    edges = [0.0, 0.0, 0.0, 0.0]
    for side in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
        edges[int(side)] = float(rng.uniform(0.03, 0.12))
    return tuple(edges)  # type: ignore[return-value]


# ------------------------------------------------------------------ public API
def generate_knee(n_subjects: int, seed: int = 0, image_size: int = 256,
                  out_dir: str | Path | None = None, *, workers: int | None = None,
                  progress: Callable[[int], None] | None = None,
                  **difficulty: float) -> SynthCohort:
    """Bilateral PA knee films of ``n_subjects`` at 0, 12, 24, 36, 48, 72 and 96 months.

    Difficulty knobs (keyword arguments, see ``KNEE_KNOBS``): ``subject_similarity`` (default
    0.35), ``change_per_year`` (1.0), ``acquisition_noise`` (1.0), ``replacement_rate`` (0.5).
    Columns: image, subject (``K00017``), time (visit months / 12), side, view ``PA``, study, split
    (test = site C, val ~15% of the other subjects, rest train), site, kl, tkr, age, visit_months.
    With ``out_dir`` the PNGs and ``out_dir/manifest.csv`` are written and ``images`` is None.
    ``workers`` = processes (default one per core); the output does not depend on it.
    """
    check_common_args("generate_knee", n_subjects, image_size)
    knobs = resolve_knobs(KNEE_KNOBS, difficulty, "generate_knee")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    job = _KneeJob(int(seed), int(image_size), tuple(sorted(knobs.items())),
                   None if out is None else str(out))
    results = run_subjects(functools.partial(_subject_rows, job=job), int(n_subjects), workers,
                           progress)
    table = pd.DataFrame(flatten(r[0] for r in results))
    table = _with_knee_split(table, int(seed))
    return finish_cohort(table, [r[1] for r in results], out)


def _with_knee_split(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Test = site C (as in the AdaTriplet OAI protocol); val = ~15% of the other subjects."""
    others = sorted(set(table.loc[table["site"] != "C", "subject"]))
    split = assign_by_subject(others, {"val": 0.15, "train": 0.85}, split_rng(seed, salt=1),
                              rest=None)
    table["split"] = [("test" if site == "C" else split[s])
                      for s, site in zip(table["subject"], table["site"])]
    columns = ["image", "subject", "time", "side", "view", "study", "split", "site", "kl", "tkr",
               "age", "visit_months"]
    return table[columns]
