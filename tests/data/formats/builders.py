"""Tiny COCO / VOC / Cityscapes / multi-band datasets written in code, each with the masks segcli
must derive from it, drawn by hand (rectangles in numpy, not through segcli or a rasteriser).

COCO polygons are rectangles with corners on pixel corners: the polygon (x0, y0)-(x1, y1) covers
exactly the pixels x0 <= x < x1, y0 <= y < y1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 32, 40  # not square: a swapped height and width shows


def _image(mask: np.ndarray, colors: dict[int, tuple[int, int, int]], seed: int) -> np.ndarray:
    """Noise, with each labelled region painted in its class colour (so a model can learn them)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(40, 90, mask.shape + (3,)).astype(np.uint8)
    for k, c in colors.items():
        img[mask == k] = c
    return img


def _rect(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _uncompressed_rle(m: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a 0-run."""
    flat = m.flatten(order="F").astype(np.uint8)
    counts, value, run = [], 0, 0
    for v in flat:
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    return {"size": [m.shape[0], m.shape[1]], "counts": counts}


def _compressed_rle(m: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _box(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


# COCO: categories 3 (cat) and 7 (dog) -> classes 1 and 2; crowd -> 255
COCO_CLASSES = ["background", "cat", "dog"]
_CAT, _DOG = (200, 60, 60), (60, 60, 200)


def _coco_images() -> list[tuple[str, list[dict], np.ndarray]]:
    """(file name, annotations without ids, expected mask) for the six images."""
    out = []
    e = np.zeros((H, W), np.uint8)
    e[4:20, 4:20] = 1
    e[10:26, 24:36] = 2
    out.append(("a.png", [dict(category_id=3, segmentation=_rect(4, 4, 20, 20)),
                          dict(category_id=7, segmentation=_compressed_rle(_box(24, 10, 36, 26)))], e))
    e = np.zeros((H, W), np.uint8)
    e[2:28, 2:30] = 1
    e[8:16, 10:18] = 2  # the smaller dog stays on top of the larger cat, though listed first
    out.append(("b.png", [dict(category_id=7, segmentation=_rect(10, 8, 18, 16)),
                          dict(category_id=3, segmentation=_rect(2, 2, 30, 28))], e))
    e = np.zeros((H, W), np.uint8)
    e[20:32, :] = 255  # a crowd of cats: ignored ...
    e[22:30, 5:15] = 2  # ... under the dog annotated inside it
    e[2:6, 25:30] = 1
    e[2:6, 32:38] = 1  # one cat in two polygons
    out.append(("c.png", [dict(category_id=7, segmentation=_rect(5, 22, 15, 30)),
                          dict(category_id=3, iscrowd=1, segmentation=_uncompressed_rle(_box(0, 20, W, H))),
                          dict(category_id=3, segmentation=_rect(25, 2, 30, 6) + _rect(32, 2, 38, 6))], e))
    out.append(("d.png", [], np.zeros((H, W), np.uint8)))  # no annotations: all background
    e = np.zeros((H, W), np.uint8)
    e[0:10, 0:10] = 1
    e[10:32, 20:40] = 2
    out.append(("e.png", [dict(category_id=3, segmentation=_rect(0, 0, 10, 10)),
                          dict(category_id=7, segmentation=_rect(20, 10, 40, 32))], e))
    e = np.zeros((H, W), np.uint8)
    e[5:15, 5:15] = 2
    e[18:30, 22:34] = 1
    out.append(("f.png", [dict(category_id=7, segmentation=_uncompressed_rle(_box(5, 5, 15, 15))),
                          dict(category_id=3, segmentation=_rect(22, 18, 34, 30))], e))
    return out


def _coco_json(entries: list[tuple[str, list[dict], np.ndarray]], first_id: int) -> dict:
    images, anns = [], []
    for i, (name, listed, _) in enumerate(entries):
        images.append({"id": first_id + i, "file_name": name, "width": W, "height": H})
        for a in listed:
            anns.append({"id": 100 + first_id * 10 + len(anns), "image_id": first_id + i, "iscrowd": 0, **a})
    cats = [{"id": 7, "name": "dog", "supercategory": "animal"}, {"id": 3, "name": "cat", "supercategory": "animal"}]
    return {"images": images, "annotations": anns, "categories": cats}


def make_coco(root: Path, split: bool = True) -> dict[str, np.ndarray]:
    """CVAT-style COCO export: images/ + annotations/instances_{train,val}.json (or one
    instances_default.json). Returns the expected mask of each image file name."""
    entries = _coco_images()
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for i, (name, _, mask) in enumerate(entries):
        colour_mask = np.where(mask == 255, 1, mask)  # a crowd of cats looks like cats
        Image.fromarray(_image(colour_mask, {1: _CAT, 2: _DOG}, i)).save(root / "images" / name)
    files = {"instances_train.json": entries[:4], "instances_val.json": entries[4:]} if split else \
        {"instances_default.json": entries}
    for k, (fname, part) in enumerate(files.items()):
        (root / "annotations" / fname).write_text(json.dumps(_coco_json(part, 1 + 10 * k)))
    return {name: mask for name, _, mask in entries}


# VOC: palette PNGs of class indices with a 255 boundary
def _voc_mask(i: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    k = (1, 15, 7)[i % 3]  # aeroplane, person, car
    m[6 + i:20 + i, 8:28] = k
    m[5 + i, 8:28] = 255  # the "void" outline VOC draws around objects
    m[20 + i, 8:28] = 255
    if i % 2:
        m[24:30, 30:38] = 15
    return m


def make_voc(root: Path, count: int = 6, colour: bool = False) -> dict[str, np.ndarray]:
    """VOCdevkit/VOC2012/ with JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/{train,val}.txt.
    `colour`: RGB masks coded by a labelmap.txt (as CVAT exports them), classes background/road/tree."""
    base = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / d).mkdir(parents=True)
    expected = {}
    colours = {0: (0, 0, 0), 1: (128, 64, 128), 2: (0, 128, 0), 255: (224, 224, 192)}
    for i in range(count):
        stem = f"2007_{i:06d}"
        m = _voc_mask(i)
        if colour:
            m = np.where(m == 15, 2, np.where((m == 1) | (m == 7), 1, m)).astype(np.uint8)
            rgb = np.zeros((H, W, 3), np.uint8)
            for k, c in colours.items():
                rgb[m == k] = c
            Image.fromarray(rgb).save(base / "SegmentationClass" / f"{stem}.png")
        else:
            p = Image.fromarray(m, "P")
            p.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] * 85 + [224, 224, 192])
            p.save(base / "SegmentationClass" / f"{stem}.png")
        Image.fromarray(_image(m, {1: (220, 40, 40), 2: (40, 220, 40), 7: (40, 40, 220), 15: (220, 220, 40)}, i)
                        ).save(base / "JPEGImages" / f"{stem}.jpg", quality=95)
        expected[f"{stem}.jpg"] = m
    stems = sorted(expected)
    (base / "ImageSets/Segmentation/train.txt").write_text("\n".join(s[:-4] for s in stems[: count - 2]) + "\n")
    (base / "ImageSets/Segmentation/val.txt").write_text("\n".join(s[:-4] for s in stems[count - 2:]) + "\n")
    if colour:
        (base / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\n"
                                           "road:128,64,128::\ntree:0,128,0::\n")
    return expected


# Cityscapes: labelIds -> train ids, by hand: 7 road -> 0, 23 sky -> 10, 24 person -> 11, 26 car -> 13,
# 0 unlabeled, 4 static, 9 parking -> 255
def _city_pair(i: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.zeros((H, W), np.uint8)
    train = np.full((H, W), 255, np.uint8)
    ids[:8], train[:8] = 23, 10
    ids[20:], train[20:] = 7, 0
    ids[12:20, 4 + i:14 + i], train[12:20, 4 + i:14 + i] = 26, 13
    ids[10:20, 30:34], train[10:20, 30:34] = 24, 11
    ids[8:12, :4], train[8:12, :4] = 4, 255
    ids[28:, 36:], train[28:, 36:] = 9, 255
    return ids, train


def make_cityscapes(root: Path) -> dict[str, np.ndarray]:
    """leftImg8bit/{train,val}/<city>/ + gtFine/{train,val}/<city>/*_gtFine_labelIds.png: 4 train, 2 val."""
    expected = {}
    colours = {10: (70, 130, 180), 0: (128, 64, 128), 13: (0, 0, 142), 11: (220, 20, 60)}
    for i, (split, city) in enumerate([("train", "aachen")] * 2 + [("train", "bonn")] * 2 + [("val", "lindau")] * 2):
        stem = f"{city}_{i:06d}_000019"
        ids, train = _city_pair(i)
        for top, name, arr in (("leftImg8bit", f"{stem}_leftImg8bit.png", _image(train, colours, i)),
                               ("gtFine", f"{stem}_gtFine_labelIds.png", ids)):
            folder = root / top / split / city
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(folder / name)
        expected[f"{stem}_leftImg8bit.png"] = train
    return expected


def make_multiband(root: Path, bands: int = 6, count: int = 6, size: int = 32, layout: str = "chw") -> Path:
    """uint16 TIFF stacks (bands x size x size, saved as tifffile writes a CxHxW array) with binary
    0/255 masks; the foreground is bright in band 5 (a 'near infrared') and faint elsewhere."""
    import tifffile

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        y, x = rng.integers(4, size // 2, 2)
        mask[y:y + size // 3, x:x + size // 3] = 255
        stack = rng.integers(800, 1200, (bands, size, size)).astype(np.uint16)
        stack[min(4, bands - 1)][mask > 0] = 9000
        stack[0][mask > 0] += 300
        arr = stack if layout == "chw" else stack.transpose(1, 2, 0)
        kw = {} if layout == "chw" else {"photometric": "minisblack", "planarconfig": "contig"}
        tifffile.imwrite(root / "images" / f"tile{i:02d}.tif", arr, **kw)
        Image.fromarray(mask).save(root / "masks" / f"tile{i:02d}.png")
    return root
