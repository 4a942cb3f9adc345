"""Class-index masks as COCO polygons, for annotation tools that import COCO (CVAT, Label Studio).

One annotation per connected region of each class but 0 (COCO's background: no annotation, as
segcli's own COCO reader takes it). Polygons follow the pixels' outer edges, not their centres,
and a region's holes are joined to its outline by a zero-width cut (the outline, then each hole
from and back to the outline's first point), so decoding the polygons (pycocotools, even-odd)
gives back exactly the mask's pixels: `segcli train` on the folder reads the masks written.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def region_polygons(mask: np.ndarray) -> list[list[int]]:
    """One flat [x0, y0, x1, y1, ...] polygon per 8-connected region of a boolean mask, holes cut in.

    Contours are traced on the mask upsampled twice, where a region's boundary cells 2x and 2x+1
    map to the pixel edges x and x+1 (ceil(i / 2)): the polygon runs along the pixels' edges."""
    import cv2

    big = np.kron(mask.astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, hierarchy = cv2.findContours(big, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    links = hierarchy[0]
    rings = [np.ceil(c.reshape(-1, 2) / 2).astype(np.int64) for c in contours]
    polygons = []
    for i, (_, _, child, parent) in enumerate(links):
        if parent != -1:
            continue
        outline = rings[i]
        parts = [outline]
        while child != -1:  # each hole: from the outline's first point round the hole and back
            parts += [outline[:1], rings[child], rings[child][:1], outline[:1]]
            child = links[child][0]
        pts = np.concatenate(parts)
        keep = np.r_[True, (np.diff(pts, axis=0) != 0).any(1)]  # the doubled points of the upsampled trace
        flat = pts[keep].ravel().tolist()
        polygons.append(flat if len(flat) >= 6 else flat + flat[:2] * 2)
    return polygons


class CocoWriter:
    """A COCO instance file built image by image: categories = the classes but 0, ids = class indices."""

    def __init__(self, class_names: list[str]) -> None:
        self.doc: dict[str, Any] = {
            "info": {"description": "suggested masks from segcli select: a head start, to be corrected"},
            "images": [], "annotations": [],
            "categories": [{"id": i, "name": name, "supercategory": ""} for i, name in enumerate(class_names) if i],
        }

    def add(self, file_name: str, labels: np.ndarray) -> None:
        from pycocotools import mask as mask_utils

        h, w = labels.shape
        image_id = len(self.doc["images"]) + 1
        self.doc["images"].append({"id": image_id, "file_name": file_name, "width": int(w), "height": int(h)})
        for k in np.unique(labels).tolist():
            if k == 0 or k >= len(self.doc["categories"]) + 1:
                continue
            for poly in region_polygons(labels == k):
                xs, ys = poly[0::2], poly[1::2]
                rle = mask_utils.frPyObjects([[float(v) for v in poly]], h, w)
                self.doc["annotations"].append({
                    "id": len(self.doc["annotations"]) + 1, "image_id": image_id, "category_id": int(k),
                    "segmentation": [poly], "area": int(mask_utils.area(rle).sum()), "iscrowd": 0,
                    "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]})
