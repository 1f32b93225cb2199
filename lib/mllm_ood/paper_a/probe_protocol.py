"""Which linear probe decides hypothesis 2 (notebook 02's ``PROBE_PROTOCOL``): the project's own, or paper A's.

``"project"`` (the embedded profile's): standardised features, logistic regression with C chosen by stratified
cross-validation on the training half (:func:`mllm_ood.paper_a.probes.fit_probe`), every class of the dataset,
the probe source's own image preprocessing (CLIP's processor: resize, centre crop, CLIP mean/std).

``"paper_a"`` (the paper profile's), read off paper A's code (``evaluation/eval_linear_probe.py`` and
``data/dataset_info_linear.json`` of ``jiansheng-li/MLLMs``):

- classifier: ``LogisticRegression(C=0.316, max_iter=10000, random_state=0)`` on the raw CLIP ``encode_image``
  features, no scaling, no model selection (here ``random_state`` is ``SEED``; SEED 0 is paper A's, and the
  default lbfgs solver does not draw on it);
- classes: paper A's binary class pair where its linear list names the dataset (shipped in
  ``resources/paper_a_datasets.json``, entry ``linear``: of the hub datasets only HAM10000, benign
  keratosis-like lesions vs melanocytic nevi); every class of the other datasets;
- preprocessing (when the probe reads CLIP): ``cv2.imread`` (so **BGR** channel order, fed to CLIP as it is),
  ``cv2.resize`` to 224 x 224 (a squash, no crop; bilinear), / 255, ImageNet mean and std in paper A's channel
  order (:func:`paper_a_pixels`).

What still differs from paper A's run (stated where notebook 02 prints the protocol; untested online):

- data: paper A trains on a whole train folder and tests on a separate, disjoint test folder of one domain.
  The hub copies load one split, so train and test are a fixed, seeded, stratified half / half split of the
  first ``PROBE_PER_CLASS`` images per class of each domain (disjoint, as paper A's) -- not whole folders;
- domains: paper A probes HAM10000's ``histo`` images only; here the pair is probed on every OOD domain;
- comparison: the pair's probe is a two-way task (chance 50 %), while zero-shot chooses among all the
  dataset's classes (paper A compares them the same way);
- resize: OpenCV's 8-bit bilinear resize is reproduced with torch's bilinear interpolation (half-pixel
  centres, no antialiasing) rounded to 8 bits (OpenCV is not a dependency); images come decoded by PIL
  (``cv2.imread`` also applies EXIF orientation).
"""

from __future__ import annotations

import numpy as np

from ..data import paper_a_lists
from ..data.catalog import HUB_PREFIX
from ..validation import ParameterError, check_choice

PROTOCOLS = ("project", "paper_a")
# The image preprocessing each protocol gives a CLIP probe source (ClipProbeFeatures' ``preprocess``).
PREPROCESSING = {"project": "clip", "paper_a": "paper_a"}
PAPER_A_C = 0.316
PAPER_A_MAX_ITER = 10_000
PAPER_A_SIZE = 224  # cv.resize(img, (224, 224))
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # paper A's, applied to its BGR channels in this order
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_protocol(protocol: str) -> None:
    check_choice("probe protocol", protocol, PROTOCOLS)


def paper_a_classifier(seed: int = 0):
    """Paper A's probe: an unfitted ``LogisticRegression(C=0.316, max_iter=10000)``, no scaler in front."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=PAPER_A_C, max_iter=PAPER_A_MAX_ITER, random_state=int(seed))


def class_pair(dataset: str, class_names) -> list[int] | None:
    """The label indices (in ``class_names``) of paper A's probe class pair for ``dataset`` ('hub:<spec>'), in
    paper A's order; None for a dataset paper A's linear list does not name. A pair class the dataset lacks is
    refused."""
    if not dataset.startswith(HUB_PREFIX):
        return None
    entry = paper_a_lists.linear_entry(dataset[len(HUB_PREFIX):])
    if entry is None:
        return None
    names = list(class_names)
    missing = [c for c in entry["class_names"] if c not in names]
    if missing:
        raise ParameterError(f"{dataset}: paper A's probe classes {missing} are not among its classes {names}")
    return [names.index(c) for c in entry["class_names"]]


def probed_classes(dataset: str, class_names, protocol: str) -> list[int]:
    """The label indices the probe of ``protocol`` separates on ``dataset``: every class for 'project' and for
    datasets without a pair; paper A's pair (:func:`class_pair`) otherwise."""
    check_protocol(protocol)
    pair = class_pair(dataset, class_names) if protocol == "paper_a" else None
    return list(range(len(class_names))) if pair is None else pair


def describe(protocol: str, datasets, class_names: dict) -> str:
    """What the probe of ``protocol`` does on ``datasets`` ({dataset: its class names} in ``class_names``)."""
    check_protocol(protocol)
    if protocol == "project":
        return ("probe protocol 'project': standardised features, logistic regression with C chosen by 5-fold "
                "cross-validation on the training half, every class")
    pairs = [f"{d}: {' vs '.join(class_names[d][i] for i in p)}" for d in datasets
             if (p := class_pair(d, class_names[d])) is not None]
    return (f"probe protocol 'paper_a': logistic regression C = {PAPER_A_C}, max_iter {PAPER_A_MAX_ITER}, no scaling; "
            f"CLIP input (when the probe reads CLIP) prepared as paper A did (BGR, 224 x 224 squash, "
            f"ImageNet mean/std); "
            f"paper A's class pairs ({'; '.join(pairs) or 'none of these datasets'}), every class elsewhere; "
            f"train/test: disjoint seeded halves of each domain's images (paper A: whole train and test folders)")


def paper_a_pixels(images):
    """Paper A's CLIP input for PIL ``images``: (n, 3, 224, 224) float32 torch tensor. The RGB image is turned to
    BGR (what ``cv2.imread`` returns), resized to 224 x 224 without keeping the aspect ratio (bilinear, half-pixel
    centres, no antialiasing, rounded to 8 bits like OpenCV's ``INTER_LINEAR`` on uint8), scaled to [0, 1] and
    normalised with the ImageNet mean and std in paper A's order (so its 'red' statistics meet the blue channel)."""
    import torch
    import torch.nn.functional as F

    from ..paper_b.embedders import load_image

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    for im in images:
        bgr = np.ascontiguousarray(np.asarray(load_image(im), np.uint8)[..., ::-1])
        t = torch.from_numpy(bgr).permute(2, 0, 1)[None].double()
        if t.shape[-2:] != (PAPER_A_SIZE, PAPER_A_SIZE):
            t = F.interpolate(t, size=(PAPER_A_SIZE, PAPER_A_SIZE), mode="bilinear", align_corners=False,
                              antialias=False)
            t = torch.floor(t + 0.5).clamp(0, 255)  # OpenCV rounds half up and saturates to uint8
        out.append(((t / 255.0 - mean) / std).float())
    return torch.cat(out)


def preprocessing_difference(clip_model: str, images, labels, seed: int = 0) -> dict:
    """How much paper A's preprocessing changes the CLIP probe, on ``images`` (PIL) with ``labels``: the CLIP
    features under CLIP's processor and under :func:`paper_a_pixels`, their per-image cosine (mean, min), and
    paper A's classifier's test accuracy on each (the same seeded half / half split). ``clip_model``: a CLIP
    checkpoint folder or cached hub id."""
    from .features import ClipProbeFeatures
    from .probes import split_indices

    y = np.asarray(labels)
    feats = {p: ClipProbeFeatures(None, clip_model, preprocess=p).vision_features(images) for p in ("clip", "paper_a")}
    a, b = feats["clip"].astype(np.float64), feats["paper_a"].astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    tr, te = split_indices(y, 0.5, seed)
    acc = {p: float((paper_a_classifier(seed).fit(x[tr], y[tr]).predict(x[te]) == y[te]).mean())
           for p, x in feats.items()}
    return {"n_images": len(y), "n_test": len(te), "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "accuracy_clip": acc["clip"], "accuracy_paper_a": acc["paper_a"],
            "accuracy_difference": acc["paper_a"] - acc["clip"]}
