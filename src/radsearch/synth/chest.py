"""Longitudinal chest radiograph phantoms (frontal PA/AP) with CheXpert findings and reports.

Anatomy drawn: torso and shoulders, lung fields (darker, with vessel markings radiating from the
hila), heart, mediastinum with aortic knob and trachea, spine, posterior and anterior ribs,
clavicles, humeral heads, hemidiaphragms (the right one higher), gastric bubble, breast shadows.
A subject's shapes (thorax size, lung and heart outlines, diaphragm heights, rib spacing and
curvature, clavicle angle, marking texture) persist across visits and drift slowly with age (the
heart grows, bone density falls, the markings texture drifts).

Each visit (study) has a set of the 14 CheXpert findings, drawn from a per-subject course in which
chronic findings (cardiomegaly, widened mediastinum, nodule, pleural thickening, rib fracture,
pacemaker) persist once they appear and acute ones (effusion, edema, consolidation, pneumonia,
atelectasis, pneumothorax, opacities, lines and tubes) come and go. Every finding has a visible
signature in the drawing, and the study's report is written from the same labels. Studies of
inpatients (acute findings, lines) are mostly AP: magnified heart, lower inspiration.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from radsearch.datasets.splits import assign_by_subject
from radsearch.synth.common import (STREAM_ACQUISITION, STREAM_ANATOMY, STREAM_COURSE,
                                    STREAM_REPORT, STREAM_TEXTURE, Acquisition, Knob, SynthCohort,
                                    band_noise, check_common_args, ellipse_sd, fill,
                                    finish_cohort, flatten, grid, render, resolve_knobs, rim,
                                    run_subjects, sample, split_rng, subject_rng,
                                    write_png)
from radsearch.synth.reports import FINDINGS, write_report
from radsearch.errors import ConfigError

TEXTURE_EXTENT = 1.4

CHEST_KNOBS: dict[str, Knob] = {
    "subject_similarity": Knob(0.35, 0.0, 1.0, "0 = very distinct anatomies, 1 = everybody has the "
                               "same anatomy (only texture tells subjects apart)"),
    "change_per_year": Knob(1.0, 0.0, 5.0, "multiplier of ageing drift and of the yearly onset "
                            "rate of chronic findings"),
    "acquisition_noise": Knob(1.0, 0.0, 5.0, "multiplier of per-image variation: pose, "
                              "inspiration, exposure, blur, noise, collimation"),
    "finding_rate": Knob(1.0, 0.0, 5.0, "multiplier of how often acute findings appear "
                         "(0 = only chronic findings)"),
}

CHRONIC = {  # onset rate per year (times propensity and change_per_year)
    "Cardiomegaly": 0.035, "Enlarged Cardiomediastinum": 0.015, "Lung Lesion": 0.012,
    "Pleural Other": 0.012, "Fracture": 0.02, "Pacemaker": 0.012,
}
ACUTE = {  # probability per study (times propensity and finding_rate)
    "Pleural Effusion": 0.09, "Edema": 0.05, "Consolidation": 0.04, "Pneumonia": 0.05,
    "Atelectasis": 0.08, "Pneumothorax": 0.025, "Lung Opacity": 0.05, "Lines": 0.07,
}
ZONES = ("upper zone", "mid zone", "lower zone")
ZONE_Y = {"upper zone": -0.45, "mid zone": -0.1, "lower zone": 0.2}  # height of a zone's centre
SIDES = ("right", "left")
SIZES = ("small", "moderate", "large")


@dataclass
class ChestAnatomy:
    """Subject-specific shape of the chest (image frame: patient's right on the image's left)."""

    thorax: float            # lung field half-width scale
    lung_top: float          # apex height
    lung_rx: float
    lung_ry: float
    lung_power: float        # superellipse exponent (boxier lungs for larger values)
    diaphragm: tuple[float, float]  # dome heights right (image left), left
    dome: float              # dome curvature
    heart: tuple[float, float, float, float, float]  # cx, cy, rx, ry, angle
    mediastinum: float       # half-width
    aorta: tuple[float, float, float]  # knob x, y, radius
    rib: tuple[float, float, float, float, float]  # first y, spacing, slope, curvature, thickness
    clavicle: tuple[float, float, float]  # medial y, slope, curvature
    body: float              # soft tissue half-width
    density: float           # bone density
    female: bool
    breast: tuple[float, float]  # size, height
    trachea: float
    hilum: float             # hilar height


def _anatomy(rng: np.random.Generator, spread: float) -> ChestAnatomy:
    def g(mean: float, sd: float) -> float:
        return float(mean + spread * sd * rng.standard_normal())

    size = 1.0 + spread * 0.06 * rng.standard_normal()
    female = bool(rng.random() < 0.5)
    return ChestAnatomy(
        thorax=size, lung_top=g(-0.74, 0.04), lung_rx=g(0.33 * size, 0.03), lung_ry=g(0.62, 0.05),
        lung_power=g(2.4, 0.3), diaphragm=(g(0.40, 0.05), g(0.46, 0.05)), dome=g(0.13, 0.03),
        heart=(g(0.12, 0.04), g(-0.1, 0.03), g(0.33, 0.025), g(0.3, 0.02), g(-12.0, 5.0)),
        mediastinum=g(0.13, 0.015), aorta=(g(0.12, 0.02), g(-0.27, 0.04), g(0.065, 0.012)),
        rib=(g(-0.74, 0.03), g(0.13, 0.01), g(-0.28, 0.06), g(0.95, 0.12), g(0.05, 0.006)),
        clavicle=(g(-0.60, 0.04), g(-0.28, 0.08), g(0.15, 0.08)),
        body=g(0.93, 0.08), density=g(1.0, 0.1), female=female,
        breast=(g(0.3, 0.08) if female else 0.0, g(0.25, 0.06)),
        trachea=g(-0.01, 0.015), hilum=g(-0.06, 0.04),
    )


@dataclass
class StudyState:
    """What one study shows: findings with their drawing details, age drift and view."""

    findings: dict[str, dict[str, str]] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    years: float = 0.0
    view: str = "PA"
    nodule: tuple[float, float, float] = (0.0, 0.0, 0.0)  # x, y, radius
    fracture: tuple[int, int, float] = (1, 5, 0.5)  # side, rib, position along the rib
    pleural_side: int = 1


def _side_sign(side: str) -> int:
    """Patient's right is on the image's left (-1)."""
    return -1 if side == "right" else 1


def draw_chest(size: int, a: ChestAnatomy, st: StudyState, texture: np.ndarray,
               pose: tuple[float, float, tuple[float, float], float], change: float) -> np.ndarray:
    """Attenuation map of one frontal chest radiograph."""
    angle, scale, shift, inspiration = pose
    ap = st.view == "AP"
    x, y = grid(size, angle, scale * (0.97 if ap else 1.0), shift, extent=1.0)
    f = st.findings
    age = change * st.years
    # ---- lungs: two superellipses cut by the hemidiaphragm domes and the mediastinum
    low = 0.06 if ap else 0.0
    lungs = []
    dome_y = []
    for k, s in enumerate((-1, 1)):
        side = "right" if s < 0 else "left"
        cx = s * (a.lung_rx + a.mediastinum * 0.6)
        cy = a.lung_top + a.lung_ry
        p = a.lung_power
        # Narrow apex, broad base: the half-width grows downwards.
        widen = 0.78 + 0.32 * np.clip((y - a.lung_top) / (2 * a.lung_ry), 0.0, 1.0)
        r = (np.abs((x - cx) / (a.lung_rx * widen)) ** p
             + np.abs((y - cy) / a.lung_ry) ** p) ** (1.0 / p)
        lift = 0.06 if ("Atelectasis" in f and f["Atelectasis"]["side"] == side) else 0.0
        yd = a.diaphragm[k] - inspiration - low - lift
        dome = yd + a.dome * ((x - cx) / a.lung_rx) ** 2 - a.dome * 0.3
        dome_y.append(dome)
        lungs.append((np.maximum((r - 1.0) * a.lung_rx, y - dome), r, cx))
    lung_sd = np.minimum(lungs[0][0], lungs[1][0])

    # ---- heart and mediastinum (AP films magnify the heart)
    hx, hy, hrx, hry, hang = a.heart
    grow = 1.0 + 0.004 * age
    if "Cardiomegaly" in f:
        grow *= 1.32
    if ap:
        grow *= 1.1
    # The heart sits on the left hemidiaphragm (hy is its offset from the dome).
    hy = a.diaphragm[1] + hy - inspiration - low
    heart = ellipse_sd(x, y, hx + (grow - 1) * 0.12, hy, hrx * grow, hry * grow ** 0.5, hang)
    mw = a.mediastinum * (1.0 + 0.004 * age) * (1.55 if "Enlarged Cardiomediastinum" in f else 1.0)
    mediast = np.maximum(np.abs(x - 0.02) - mw, y - hy)
    ax, ay, ar = a.aorta
    knob = ellipse_sd(x, y, ax + 0.4 * (mw - a.mediastinum), ay, ar * (1 + 0.003 * age), ar)
    central = np.minimum(np.minimum(heart, mediast), knob)
    lung_sd = np.maximum(lung_sd, -central)
    edge = 0.8 / size
    lung = fill(lung_sd, 0.012)

    # ---- lung markings: vessels radiating from the hila, fading to the periphery
    markings = np.zeros_like(x)
    for s in (-1, 1):
        dx, dy = x - s * 0.16, y - a.hilum
        dist = np.sqrt(dx * dx + dy * dy) + 1e-3
        polar = sample(texture, np.arctan2(dy, dx) * 0.45, np.log(dist) * 0.35, TEXTURE_EXTENT)
        markings += (np.exp(-(polar * 2.0) ** 2) * np.exp(-dist / 0.42)
                     + 0.6 * np.exp(-(dist / 0.12) ** 2)) * (s * x > 0)

    # ---- soft tissue: torso, shoulders, neck, breasts; abdomen below the diaphragm
    body_half = a.body * (1.0 + 0.1 * np.clip(-y - 0.5, 0.0, 0.5))
    body = np.sqrt(np.clip(1.0 - (x / body_half) ** 2, 0.0, 1.0))
    neck = fill(np.abs(x) - 0.28, 0.05)
    body = np.where(y < -0.86, np.maximum(body * fill(-0.86 - y - 0.08, 0.04), neck * 0.8), body)
    diaphragm = np.where(x < 0, dome_y[0], dome_y[1])  # below it: abdomen, no heart shadow
    att = 0.34 * body + 0.05 * fill(np.maximum(central, y - diaphragm), 0.01)
    if a.female:
        bs, bh = a.breast
        for s in (-1, 1):
            ramp = np.clip((y - bh + 0.15) / 0.3, 0.0, 1.0)
            att += 0.08 * bs / 0.3 * fill(ellipse_sd(x, y, s * 0.48, bh, 0.36, 0.26), 0.02) * ramp
    att -= 0.2 * lung * body
    att += 0.05 * markings * lung

    # ---- bones: spine, posterior + anterior ribs, clavicles
    bone_density = a.density * (1.0 - 0.006 * age)
    vert = 0.6 + 0.4 * np.cos(2 * math.pi * (y + 0.03) / 0.11) ** 2
    att += 0.10 * bone_density * fill(np.abs(x - 0.0) - 0.07, edge) * vert
    y0, sp, slope, curv, thick = a.rib
    u = np.abs(x) - 0.06
    wall = fill(np.minimum(lungs[0][1], lungs[1][1]) - 1.12, 0.02)
    v = y - (slope * u + curv * u * u)
    phase = (v - y0) / sp
    rib_d = (np.abs(phase - np.round(phase)) * sp) - thick / 2
    ten_ribs = (u > 0) * (np.abs(phase - 4.5) < 5)
    ribs = (fill(rib_d, edge) * 0.45 + rim(rib_d, 0.01) * 0.55) * ten_ribs
    va = y + 0.45 * (0.75 - u)
    phase_a = (va - y0 - 0.1) / (sp * 1.1)
    ant = fill((np.abs(phase_a - np.round(phase_a)) * sp) - thick * 0.4, 0.01) * (u > 0.1) * (
        phase_a > 0.5) * (phase_a < 5.5)
    att += bone_density * wall * (0.06 * ribs + 0.02 * ant)
    cy0, cslope, ccurv = a.clavicle
    cu = np.abs(x) - 0.07
    cline = y - (cy0 - (0.02 if ap else 0.0) + cslope * cu + ccurv * cu * cu)
    clav = fill(np.abs(cline) - 0.028, edge) * fill(cu - 0.6, 0.03) * (cu > 0)
    clav_rim = rim(np.abs(cline) - 0.028, 0.01) * (cu > 0) * (cu < 0.6)
    att += bone_density * (0.11 * clav + 0.05 * clav_rim)

    # ---- trachea (air, darker) and the gastric bubble under the left hemidiaphragm
    att -= 0.06 * fill(np.abs(x - a.trachea) - 0.035, 0.01) * fill(y - (a.hilum - 0.14), 0.02)
    bubble = ellipse_sd(x, y, 0.38, float(np.mean(dome_y[1][size // 2])) + 0.12, 0.11, 0.06)
    att -= 0.08 * fill(bubble, 0.02) * fill(dome_y[1] + 0.03 - y, 0.01)

    att += _findings(x, y, a, st, lungs, lung, dome_y, texture, u, v, sp, y0)
    return att


def _findings(x, y, a: ChestAnatomy, st: StudyState, lungs, lung, dome_y, texture, u, v, sp,
              y0) -> np.ndarray:
    """Extra attenuation of the study's findings (each has a visible signature)."""
    f = st.findings
    out = np.zeros_like(x)
    patch = sample(texture, x * 1.3 + 0.5, y * 1.3 - 0.3, TEXTURE_EXTENT)

    def lobe(side: str, zone: str, radius: float) -> np.ndarray:
        s = _side_sign(side)
        d = np.sqrt((x - s * 0.42) ** 2 + ((y - ZONE_Y[zone]) / 1.2) ** 2)
        return np.exp(-(d / radius) ** 4)

    if "Consolidation" in f:
        for sd in _sides(f["Consolidation"]["side"]):
            out += 0.20 * lobe(sd, f["Consolidation"]["zone"], 0.24) * (0.85 + 0.15 * patch) * lung
    if "Pneumonia" in f:
        for sd in _sides(f["Pneumonia"]["side"]):
            patchy = np.clip(0.6 + 0.5 * patch, 0, 1)
            out += 0.13 * lobe(sd, f["Pneumonia"]["zone"], 0.3) * patchy * lung
    if "Lung Opacity" in f and not {"Consolidation", "Pneumonia", "Edema", "Atelectasis",
                                    "Lung Lesion"} & set(f):
        for sd in _sides(f["Lung Opacity"]["side"]):
            patchy = np.clip(0.5 + 0.6 * patch, 0, 1)
            out += 0.09 * lobe(sd, f["Lung Opacity"]["zone"], 0.22) * patchy * lung
    if "Edema" in f:
        for s in (-1, 1):
            d = np.sqrt((x - s * 0.16) ** 2 + (y - a.hilum) ** 2)
            out += 0.11 * np.exp(-d / 0.3) * lung * (s * x > 0)
    if "Atelectasis" in f:
        for sd in _sides(f["Atelectasis"]["side"]):
            k = 0 if sd == "right" else 1
            band = np.exp(-((y - (dome_y[k] - 0.09)) / 0.018) ** 2)
            out += 0.12 * band * lung * fill(np.abs(x - _side_sign(sd) * 0.42) - 0.2, 0.05)
    if "Lung Lesion" in f:
        nx, ny, nr = st.nodule
        out += 0.16 * fill(ellipse_sd(x, y, nx, ny, nr, nr * 0.9), nr * 0.25)
    if "Pleural Effusion" in f:
        for sd in _sides(f["Pleural Effusion"]["side"]):
            k = 0 if sd == "right" else 1
            s = _side_sign(sd)
            height = {"small": 0.09, "moderate": 0.18, "large": 0.3}[f["Pleural Effusion"]["size"]]
            lateral = np.clip((s * x - 0.1) / 0.6, 0.0, 1.0)
            level = dome_y[k] - height * (0.55 + 0.6 * lateral)
            out += 0.2 * fill(level - y, 0.03) * fill(lungs[k][0], 0.02) * (s * x > 0)
    if "Pneumothorax" in f:
        sd = f["Pneumothorax"]["side"]
        k = 0 if sd == "right" else 1
        depth = {"small": 0.09, "moderate": 0.16, "large": 0.26}[f["Pneumothorax"]["size"]]
        r = lungs[k][1]
        upper = fill(y - 0.15, 0.1)
        region = fill(lungs[k][0], 0.004) * fill((1.0 - depth) - r, 0.01) * upper
        out -= 0.05 * region  # no lung markings, more air
        line = np.exp(-((r - (1.0 - depth)) / 0.012) ** 2) * fill(lungs[k][0], 0.01) * upper
        out += 0.05 * line
    if "Pleural Other" in f:
        k = 0 if st.pleural_side < 0 else 1
        r = lungs[k][1]
        out += 0.09 * fill(lungs[k][0], 0.01) * fill(0.94 - r, 0.015) * fill(y - 0.3, 0.05)
    if "Fracture" in f:
        s, rib, pos = st.fracture
        uu = 0.15 + 0.5 * pos
        yy = y0 + rib * sp + a.rib[2] * uu + a.rib[3] * uu * uu
        xx = s * (uu + 0.06)
        out += 0.12 * fill(ellipse_sd(x, y, xx, yy, 0.05, 0.04), 0.008)  # callus
    for device in st.devices:
        out += _device(device, x, y, a)
    return out


def _sides(side: str) -> tuple[str, ...]:
    return SIDES if side == "bilateral" else (side,)


def _device(name: str, x: np.ndarray, y: np.ndarray, a: ChestAnatomy) -> np.ndarray:
    """Radiopaque lines, tubes and a pacemaker: thin bands along simple curves, metal boxes."""
    metal = 0.6
    if name == "pacemaker":
        gen = fill(ellipse_sd(x, y, 0.5, -0.56, 0.09, 0.065), 0.006)
        lead_x = 0.5 - 0.55 * np.clip((y + 0.56) / 0.8, 0, 1) ** 0.6
        apex = a.diaphragm[1] + a.heart[1] + 0.08
        lead = fill(np.abs(x - lead_x) - 0.006, 0.004) * (y > -0.56) * (y < apex)
        return metal * (1.5 * gen + 0.7 * lead)
    if name == "central line":
        along = np.abs(x + 0.39) < 0.31  # subclavian part, then down the superior vena cava
        horiz = fill(np.abs(y - (-0.6 + 0.25 * (x + 0.65) ** 2)) - 0.006, 0.004) * along
        vert = fill(np.abs(x - (-0.08 + 0.02 * (y + 0.6))) - 0.006, 0.004) * (y > -0.6) * (y < -0.1)
        return metal * 0.6 * np.maximum(horiz, vert)
    if name == "endotracheal tube":
        tube = fill(np.abs(np.abs(x - a.trachea) - 0.02) - 0.005, 0.004) * (y < a.hilum - 0.2)
        return metal * 0.5 * tube
    if name == "nasogastric tube":
        path = 0.04 + 0.45 * np.clip((y - a.diaphragm[1]) / 0.4, 0, 1) ** 1.5
        return metal * 0.45 * fill(np.abs(x - path) - 0.006, 0.004) * (y < a.diaphragm[1] + 0.32)
    # ECG electrodes: small bright rings
    out = np.zeros_like(x)
    for cx, cy in ((-0.55, -0.45), (0.55, -0.45), (0.45, 0.3)):
        ring = np.abs(np.sqrt((x - cx) ** 2 + (y - cy) ** 2) - 0.035) - 0.007
        out += metal * 0.4 * fill(ring, 0.004)
    return out


# ------------------------------------------------------------------ one subject
@dataclass(frozen=True)
class _ChestJob:
    seed: int
    size: int
    knobs: tuple[tuple[str, float], ...]
    report_fraction: float
    out_dir: str | None


def _course(rng: np.random.Generator, n_visits: int, gaps: np.ndarray, propensity: float,
            knobs: dict[str, float]) -> list[StudyState]:
    """Findings per visit: chronic ones persist once present, acute ones come and go."""
    change, rate = knobs["change_per_year"], knobs["finding_rate"]
    # Where this subject's chronic findings would be (fixed for life, so drawing and report agree).
    side_of = {name: SIDES[int(rng.integers(2))] for name in ("Lung Lesion", "Pleural Other",
                                                               "Fracture")}
    nodule_zone = ZONES[int(rng.integers(3))]
    fracture = (_side_sign(side_of["Fracture"]), int(rng.integers(3, 8)), float(rng.random()))
    nodule_xy = (_side_sign(side_of["Lung Lesion"]) * float(rng.uniform(0.3, 0.55)),
                 ZONE_Y[nodule_zone] + float(rng.normal(0, 0.06)))
    nodule_r0 = float(rng.uniform(0.025, 0.05))
    nodule_since = 0.0

    chronic: dict[str, dict[str, str]] = {}
    acute: dict[str, dict[str, str]] = {}
    states: list[StudyState] = []
    years = 0.0
    for visit in range(n_visits):
        gap = float(gaps[visit])
        years += gap
        # Onset of chronic findings; the first visit carries some prevalence from earlier life.
        exposure = gap if visit else 6.0
        for name, per_year in CHRONIC.items():
            onset = 1.0 - math.exp(-per_year * propensity * max(change, 0.05) * exposure)
            if name not in chronic and rng.random() < onset:
                chronic[name] = {"side": side_of.get(name, "right"), "zone": nodule_zone,
                                 "size": "small"}
                nodule_since = years if name == "Lung Lesion" else nodule_since
        # Acute findings persist to the next study with some probability (likelier when close).
        previous, acute = acute, {}
        for name, p in ACUTE.items():
            if name in previous and rng.random() < (0.45 if gap < 1.0 else 0.15):
                acute[name] = previous[name]
                continue
            boost = 3.0 if name in ("Edema", "Pleural Effusion") and "Cardiomegaly" in chronic \
                else 1.0
            if rng.random() < min(0.9, p * propensity * rate * boost):
                side = ("right", "left", "bilateral")[int(rng.choice(3, p=(0.4, 0.35, 0.25)))]
                if name == "Pneumothorax" and side == "bilateral":
                    side = "right"
                acute[name] = {"side": side, "zone": ZONES[int(rng.choice(3, p=(0.2, 0.3, 0.5)))],
                               "size": SIZES[int(rng.choice(3, p=(0.5, 0.35, 0.15)))]}
        findings = {k: v for k, v in {**chronic, **acute}.items()
                    if k not in ("Pacemaker", "Lines")}  # these two are Support Devices
        # CheXpert hierarchy: parenchymal findings are also "Lung Opacity".
        for child in ("Edema", "Consolidation", "Pneumonia", "Atelectasis", "Lung Lesion"):
            if child in findings and "Lung Opacity" not in findings:
                findings["Lung Opacity"] = {**findings[child], "implied": child}
        devices = ["pacemaker"] if "Pacemaker" in chronic else []
        if "Lines" in acute:
            picks = rng.random(4) < (0.7, 0.5, 0.5, 0.4)
            names = ("central line", "endotracheal tube", "nasogastric tube", "electrodes")
            devices += [n for n, keep in zip(names, picks) if keep] or ["central line"]
        if devices:
            findings["Support Devices"] = {"device": _device_text(devices)}
        view = "AP" if rng.random() < (0.8 if acute else 0.15) else "PA"  # inpatients: AP
        radius = min(0.12, nodule_r0 * (1.0 + 0.1 * (years - nodule_since) * change))
        states.append(StudyState(findings=findings, devices=tuple(devices), years=years, view=view,
                                 nodule=(*nodule_xy, radius), fracture=fracture,
                                 pleural_side=_side_sign(side_of["Pleural Other"])))
    return states


def _device_text(devices: list[str]) -> str:
    words = {"pacemaker": "a left chest wall pacemaker with leads", "central line":
             "a right subclavian central venous catheter", "endotracheal tube": "an endotracheal "
             "tube", "nasogastric tube": "a nasogastric tube", "electrodes": "ECG leads"}
    parts = [words[d] for d in devices]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _subject_rows(index: int, job: _ChestJob) -> tuple[list[dict], list[np.ndarray]]:
    """All images of one subject: visits at irregular intervals, 1-3 images per visit."""
    knobs = dict(job.knobs)
    spread = 1.0 - knobs["subject_similarity"]
    change, noise = knobs["change_per_year"], knobs["acquisition_noise"]
    rng_a = subject_rng(job.seed, index, STREAM_ANATOMY)
    rng_c = subject_rng(job.seed, index, STREAM_COURSE)
    rng_q = subject_rng(job.seed, index, STREAM_ACQUISITION)
    rng_t = subject_rng(job.seed, index, STREAM_TEXTURE)
    rng_r = subject_rng(job.seed, index, STREAM_REPORT)
    subject = f"C{index:05d}"
    anatomy = _anatomy(rng_a, spread)
    age0 = float(rng_a.uniform(20, 85))
    tex_size = max(96, min(job.size, 384))
    sigma = 1.6 * tex_size / 256
    base = band_noise(rng_t, tex_size, sigma, 5 * sigma, anisotropy=(1.0, 3.0))
    drift = band_noise(rng_t, tex_size, sigma, 5 * sigma, anisotropy=(1.0, 3.0))

    n_visits = int(min(10, 2 + rng_c.poisson(2.0)))
    gaps = np.concatenate([[0.0], np.maximum(0.05, rng_c.exponential(1.3, n_visits - 1))])
    propensity = 0.25 if rng_c.random() < 0.35 else float(rng_c.lognormal(0.2, 0.5))
    states = _course(rng_c, n_visits, gaps, propensity, knobs)
    rows: list[dict] = []
    pixels: list[np.ndarray] = []
    for visit, st in enumerate(states):
        labels = "|".join(f for f in FINDINGS[1:] if f in st.findings) or FINDINGS[0]
        has_report = rng_r.random() < job.report_fraction
        report = write_report(st.findings, rng_r) if has_report else ""
        study = f"{subject}_s{visit:02d}"
        theta = 0.06 * change * st.years
        texture = math.cos(theta) * base + math.sin(theta) * drift
        n_images = int(rng_c.choice(3, p=(0.6, 0.3, 0.1))) + 1
        for k in range(n_images):
            view = st.view if rng_c.random() > 0.1 else ("PA" if st.view == "AP" else "AP")
            image_state = StudyState(**{**st.__dict__, "view": view})
            angle, scale = rng_q.normal(0, 2.0 * noise), np.exp(rng_q.normal(0, 0.03 * noise))
            shift = (float(rng_q.normal(0, 0.03 * noise)), float(rng_q.normal(0, 0.03 * noise)))
            inspiration = rng_q.normal(0, 0.03 * noise)
            pose = (float(angle), float(scale), shift, float(inspiration))
            att = draw_chest(job.size, anatomy, image_state, texture, pose, change)
            acq = Acquisition(
                gain=2.3 * float(np.exp(rng_q.normal(0, 0.1 * noise))),
                gamma=float(np.exp(rng_q.normal(0.05, 0.1 * noise))),
                offset=0.02, blur=0.7 * float(np.exp(rng_q.normal(0, 0.25 * noise))),
                noise=0.02 * min(noise, 3.0) * float(np.exp(rng_q.normal(0, 0.2))),
                collimation=_collimation(rng_q, noise))
            image = render(att, acq, rng_q)
            path = f"{subject}/s{visit:02d}_{k}.png"
            if job.out_dir is not None:
                write_png(Path(job.out_dir) / path, image)
            else:
                pixels.append(image)
            rows.append({"image": path, "subject": subject, "time": round(st.years, 4),
                         "view": view, "study": study, "labels": labels, "report": report,
                         "age": round(age0 + st.years, 2), "sex": "F" if anatomy.female else "M"})
    return rows, pixels


def _collimation(rng: np.random.Generator, noise: float) -> tuple[float, float, float, float]:
    if noise <= 0 or rng.random() > 0.15 * min(1.0, noise):
        return (0.0, 0.0, 0.0, 0.0)
    return tuple(float(rng.uniform(0.0, 0.08)) if rng.random() < 0.5 else 0.0
                 for _ in range(4))  # type: ignore[return-value]


# ------------------------------------------------------------------ public API
def generate_chest(n_subjects: int, seed: int = 0, image_size: int = 256,
                   out_dir: str | Path | None = None, report_fraction: float = 1.0, *,
                   workers: int | None = None, progress: Callable[[int], None] | None = None,
                   **difficulty: float) -> SynthCohort:
    """Frontal chest radiographs of ``n_subjects``, 2-10 visits each over years, 1-3 images a visit.

    Difficulty knobs (see ``CHEST_KNOBS``): ``subject_similarity`` (default 0.35),
    ``change_per_year`` (1.0), ``acquisition_noise`` (1.0), ``finding_rate`` (1.0).
    ``report_fraction``: share of studies with a report (the others get ""). Columns: image,
    subject (``C00017``), time (years since the first visit), view PA/AP, study, split
    (patient-disjoint ~70/10/20 train/val/test), labels (CheXpert names joined by '|', "No
    Finding" when none), report, age, sex.
    """
    check_common_args("generate_chest", n_subjects, image_size)
    knobs = resolve_knobs(CHEST_KNOBS, difficulty, "generate_chest")
    try:
        fraction = float(report_fraction)
    except (TypeError, ValueError):
        fraction = float("nan")
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"generate_chest: report_fraction={report_fraction!r}; give the share of "
                          "studies with a report, between 0 and 1 (default 1.0).")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    job = _ChestJob(int(seed), int(image_size), tuple(sorted(knobs.items())), fraction,
                    None if out is None else str(out))
    results = run_subjects(functools.partial(_subject_rows, job=job), int(n_subjects), workers,
                           progress)
    table = pd.DataFrame(flatten(r[0] for r in results))
    subjects = sorted(set(table["subject"]))
    split = assign_by_subject(subjects, {"train": 0.7, "val": 0.1, "test": 0.2},
                              split_rng(seed, salt=2), rest=None)
    table["split"] = table["subject"].map(split)
    table = table[["image", "subject", "time", "view", "study", "split", "labels", "report", "age",
                   "sex"]]
    return finish_cohort(table, [r[1] for r in results], out)


# ------------------------------------------------------------------ draw from given labels
def draw_from_labels(labels: Sequence[str], seed: int = 0, image_size: int = 128,
                     subject_similarity: float = 0.35, acquisition_noise: float = 1.0,
                     with_report: bool = True) -> tuple[np.ndarray, str]:
    """One phantom radiograph (uint8 [size, size]) showing exactly ``labels`` (CheXpert names;
    "No Finding" or an empty list = normal), and a synthetic report of the same labels.

    Pairs real report text with an image whose findings come from that report (e.g. OpenI MeSH
    findings mapped to CheXpert): the anatomy, laterality, zones, sizes and acquisition are drawn
    from ``seed``, so the same (labels, seed) always gives the same image.
    """
    check_common_args("draw_from_labels", 1, image_size)
    unknown = [name for name in labels if name not in FINDINGS]
    if unknown:
        raise ConfigError(f"draw_from_labels: {unknown[0]!r} is not a CheXpert label; use "
                          f"{', '.join(FINDINGS)}.")
    rng = np.random.default_rng([int(seed), 7919])
    anatomy = _anatomy(rng, 1.0 - float(subject_similarity))
    findings: dict[str, dict[str, str]] = {}
    for name in labels:
        if name in ("No Finding", "Support Devices"):
            continue
        side = SIDES[int(rng.integers(2))] if name in CHRONIC else \
            ("right", "left", "bilateral")[int(rng.choice(3, p=(0.4, 0.35, 0.25)))]
        if name == "Pneumothorax" and side == "bilateral":
            side = "right"
        findings[name] = {"side": side, "zone": ZONES[int(rng.choice(3, p=(0.2, 0.3, 0.5)))],
                          "size": SIZES[int(rng.choice(3, p=(0.5, 0.35, 0.15)))]}
    devices: list[str] = []
    if "Support Devices" in labels:
        devices = ["pacemaker"] if rng.random() < 0.3 else ["central line"]
        findings["Support Devices"] = {"device": _device_text(devices)}
    acute = any(name in ACUTE for name in findings)
    lesion = findings.get("Lung Lesion", {"side": "right", "zone": "mid zone"})
    st = StudyState(findings=findings, devices=tuple(devices), years=0.0,
                    view="AP" if rng.random() < (0.8 if acute else 0.15) else "PA",
                    nodule=(_side_sign(lesion["side"]) * float(rng.uniform(0.3, 0.55)),
                            ZONE_Y[lesion["zone"]] + float(rng.normal(0, 0.06)),
                            float(rng.uniform(0.03, 0.06))),
                    fracture=(_side_sign(findings.get("Fracture", {"side": "right"})["side"]),
                              int(rng.integers(3, 8)), float(rng.random())),
                    pleural_side=_side_sign(findings.get("Pleural Other",
                                                         {"side": "right"})["side"]))
    tex_size = max(96, min(image_size, 384))
    sigma = 1.6 * tex_size / 256
    texture = band_noise(rng, tex_size, sigma, 5 * sigma, anisotropy=(1.0, 3.0))
    noise = float(acquisition_noise)
    pose = (float(rng.normal(0, 2.0 * noise)), float(np.exp(rng.normal(0, 0.03 * noise))),
            (float(rng.normal(0, 0.03 * noise)), float(rng.normal(0, 0.03 * noise))),
            float(rng.normal(0, 0.03 * noise)))
    att = draw_chest(int(image_size), anatomy, st, texture, pose, 1.0)
    acq = Acquisition(gain=2.3 * float(np.exp(rng.normal(0, 0.1 * noise))),
                      gamma=float(np.exp(rng.normal(0.05, 0.1 * noise))), offset=0.02,
                      blur=0.7 * float(np.exp(rng.normal(0, 0.25 * noise))),
                      noise=0.02 * min(noise, 3.0) * float(np.exp(rng.normal(0, 0.2))),
                      collimation=(0.0, 0.0, 0.0, 0.0))
    image = render(att, acq, rng)
    report = write_report(findings, rng) if with_report else ""
    return image, report
