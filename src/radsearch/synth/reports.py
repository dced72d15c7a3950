"""Radiology reports (FINDINGS + IMPRESSION) that agree with a study's CheXpert labels.

Each positive finding gets one sentence chosen from several phrasings (synonyms, word order,
laterality and size from the drawing), a random subset of the absent findings is mentioned with a
negation ("No pleural effusion."), and the impression lists the positives (or says the study is
normal). Negated mentions only ever concern absent labels, so a rule-based labeller (CheXpert /
NegBio style) reading these reports recovers the labels.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

FINDINGS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity",
            "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax",
            "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices")

# Sentences for present findings: {side} = "right"/"left"/"bilateral", {size}, {zone}, {device}.
POSITIVE: dict[str, tuple[str, ...]] = {
    "Cardiomegaly": ("The heart is enlarged.", "There is cardiomegaly.",
                     "Moderate enlargement of the cardiac silhouette.",
                     "The cardiac silhouette is enlarged."),
    "Enlarged Cardiomediastinum": ("The mediastinum is widened.",
                                   "Widened superior mediastinal contour.",
                                   "The cardiomediastinal silhouette is enlarged.",
                                   "Mediastinal widening is noted."),
    "Lung Opacity": ("Patchy opacity in the {side} {zone}.", "Hazy airspace opacity at the {side} "
                     "{zone}.", "Ill-defined opacity projects over the {side} {zone}."),
    "Lung Lesion": ("A {size} nodule in the {side} {zone}.", "There is a {size} rounded "
                    "nodular density in the {side} {zone}.", "{Size} pulmonary nodule in the "
                    "{side} {zone}, follow-up recommended."),
    "Edema": ("Perihilar haziness consistent with pulmonary edema.",
              "Interstitial pulmonary edema.", "Findings are compatible with mild pulmonary "
              "edema with vascular congestion.", "There is bilateral perihilar edema."),
    "Consolidation": ("Dense consolidation in the {side} {zone}.", "There is {side} {zone} "
                      "consolidation.", "Focal consolidation at the {side} {zone}."),
    "Pneumonia": ("Airspace disease in the {side} {zone} suspicious for pneumonia.",
                  "Findings concerning for {side} {zone} pneumonia.",
                  "Patchy infiltrate in the {side} {zone} compatible with pneumonia."),
    "Atelectasis": ("Linear atelectasis at the {side} base.", "Plate-like atelectasis in the "
                    "{side} lower zone.", "Subsegmental atelectasis at the {side} base."),
    "Pneumothorax": ("There is a {size} {side} apical pneumothorax.", "{Size} {side} pneumothorax "
                     "with a visible pleural line.", "A {side} pneumothorax is present."),
    "Pleural Effusion": ("{Size} {side} pleural effusion.", "There is a {size} {side} pleural "
                         "effusion blunting the costophrenic angle.", "{Side} pleural effusion, "
                         "{size}."),
    "Pleural Other": ("Pleural thickening along the {side} lateral chest wall.",
                      "Calcified pleural plaques on the {side}.",
                      "{Side} pleural thickening is again seen."),
    "Fracture": ("Healing fracture of a {side} posterior rib.", "There is a {side} rib fracture "
                 "with callus formation.", "Old {side} rib fracture."),
    "Support Devices": ("{Device} in place.", "{Device} is seen.", "Interval placement of "
                        "{device}."),
}

# Negated mentions for absent findings (only used when every label they exclude is absent).
NEGATIVE: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = (
    (frozenset({"Pleural Effusion", "Pneumothorax"}),
     ("No pleural effusion or pneumothorax.", "There is no effusion or pneumothorax.")),
    (frozenset({"Pleural Effusion"}), ("No pleural effusion.", "No effusion is seen.")),
    (frozenset({"Pneumothorax"}), ("No pneumothorax.", "There is no pneumothorax.")),
    (frozenset({"Cardiomegaly"}), ("Heart size is normal.", "The heart is not enlarged.")),
    (frozenset({"Cardiomegaly", "Enlarged Cardiomediastinum"}),
     ("The cardiomediastinal silhouette is within normal limits.",
      "Normal heart size and mediastinal contours.")),
    (frozenset({"Consolidation", "Pneumonia", "Lung Opacity"}),
     ("No focal consolidation.", "The lungs are clear without focal airspace opacity.")),
    (frozenset({"Edema"}), ("No pulmonary edema.", "No signs of vascular congestion or edema.")),
    (frozenset({"Fracture"}), ("No acute osseous abnormality.", "No displaced rib fracture.")),
    (frozenset({"Lung Lesion"}), ("No suspicious pulmonary nodule.",)),
)

IMPRESSION_POSITIVE = {
    "Cardiomegaly": ("Cardiomegaly.", "Enlarged heart."),
    "Enlarged Cardiomediastinum": ("Widened mediastinum.", "Enlarged cardiomediastinal contour."),
    "Lung Opacity": ("{Side} {zone} opacity.", "Airspace opacity, {side}."),
    "Lung Lesion": ("{Side} pulmonary nodule.", "{Size} nodule, {side} {zone}."),
    "Edema": ("Pulmonary edema.", "Mild interstitial edema."),
    "Consolidation": ("{Side} {zone} consolidation.",),
    "Pneumonia": ("{Side} pneumonia.", "Findings suggest {side} {zone} pneumonia."),
    "Atelectasis": ("{Side} basilar atelectasis.", "Atelectasis at the {side} base."),
    "Pneumothorax": ("{Side} pneumothorax.", "{Size} {side} pneumothorax."),
    "Pleural Effusion": ("{Side} pleural effusion.", "{Size} {side} effusion."),
    "Pleural Other": ("{Side} pleural thickening.",),
    "Fracture": ("{Side} rib fracture.",),
    "Support Devices": ("Support devices as described.", "{Device} in standard position."),
}
NORMAL_IMPRESSION = ("No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.",
                     "Normal chest radiograph.", "No acute findings.")


def write_report(labels: Mapping[str, Mapping[str, str]], rng: np.random.Generator) -> str:
    """FINDINGS + IMPRESSION for a study whose positive findings (with details) are ``labels``.

    ``labels`` maps each positive CheXpert name (not "No Finding") to details used in the text:
    ``side`` (right / left / bilateral), ``size`` (small / moderate / large), ``zone`` (upper
    zone, lower lobe...), ``device`` (e.g. "a left-sided pacemaker").
    """
    unknown = set(labels) - set(FINDINGS[1:])
    if unknown:
        raise ValueError(f"unknown finding(s) {sorted(unknown)}")
    present = [f for f in FINDINGS[1:] if f in labels]
    # A "Lung Opacity" implied by a more specific finding (CheXpert's hierarchy) is described by
    # that finding's sentence; only a standalone opacity gets its own.
    described = [f for f in present if not labels[f].get("implied")]
    order = rng.permutation(len(described))
    sentences = [_fill(_pick(rng, POSITIVE[described[i]]), labels[described[i]]) for i in order]
    negatives = [pick for absent, pick in NEGATIVE if not absent & set(present)]
    for k in rng.permutation(len(negatives))[: int(rng.integers(1, 4))]:
        sentences.append(_pick(rng, negatives[k]))
    if not present and rng.random() < 0.5:
        sentences.insert(0, _pick(rng, ("The lungs are clear.", "Lungs are well expanded and clear.",
                                        "Clear lungs bilaterally.")))
    if present:
        impression = " ".join(_fill(_pick(rng, IMPRESSION_POSITIVE[f]), labels[f])
                              for f in described)
    else:
        impression = _pick(rng, NORMAL_IMPRESSION)
    return f"FINDINGS: {' '.join(sentences)}\nIMPRESSION: {impression}"


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _fill(template: str, details: Mapping[str, str]) -> str:
    values = {"side": details.get("side", "right"), "size": details.get("size", "small"),
              "zone": details.get("zone", "lower zone"),
              "device": details.get("device", "a support device")}
    values.update({k.capitalize(): v[:1].upper() + v[1:] for k, v in list(values.items())})
    return template.format(**values)
