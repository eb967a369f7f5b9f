"""ImageNet (ILSVRC-2012): validate a user-supplied folder, index it, optionally pack it into
LMDB for sequential reads, and feed it with the original implementation's augmentation.

Expected layout (the original archives, extracted)::

    ROOT/train/n01440764/n01440764_10026.JPEG ...   one folder per class (WordNet id)
    ROOT/val/n01440764/ILSVRC2012_val_00000293.JPEG  class folders, or
    ROOT/val/ILSVRC2012_val_00000001.JPEG + a labels file: lines "<file name> <wnid or index>"
         (val/val_labels.txt, or --val-labels FILE)

The images stay where they are; ``prepare`` writes ``train.txt`` / ``val.txt`` (relative path,
label index), ``classes.txt`` and ``prepared.yaml`` into ``--out``, and with ``--lmdb``
``train.lmdb`` / ``val.lmdb`` (the encoded JPEG bytes and labels, read sequentially).
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..logs import progress
from . import DATASETS
from .files import DataError

_ILSVRC = DATASETS["imagenet"]
EXPECTED = {"classes": _ILSVRC.num_classes, "train": _ILSVRC.train_images, "val": _ILSVRC.val_images}
IMAGE_EXT = (".jpeg", ".jpg", ".png")
WNID = re.compile(r"^n\d{8}$")
# PCA of ImageNet RGB pixels (Krizhevsky et al. 2012), for the lighting noise. The eigenvalues are
# those of pixels in [0, 1]; the original applied them unscaled to pixels in [0, 255] (so its
# lighting noise is tiny), and so does this pipeline.
EIGVAL = np.array([0.2175, 0.0188, 0.0045])
EIGVEC = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


def _images(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXT))


def _readable(path: str) -> bool:
    """A cheap check of every file: non-empty, with a JPEG or PNG signature."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head[:2] == b"\xff\xd8" or head == b"\x89PNG\r\n\x1a\n"


def index_tree(root: str, val_labels: str | None = None, decode_check: bool = False):
    """Check an ILSVRC-2012 folder; returns (classes, {split: [(relative path, label)]}, notes).

    Raises DataError listing every problem found; differences from the full ILSVRC-2012 counts
    (a subset, say) are returned as notes, not errors.
    """
    problems, notes = [], []
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
    for d in (train_dir, val_dir):
        if not os.path.isdir(d):
            problems.append(f"{d} is missing")
    if problems:
        raise DataError(f"{root} is not an ILSVRC-2012 folder: " + "; ".join(problems)
                        + " (expected train/<wnid>/*.JPEG and val/)")
    classes = sorted(n for n in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, n)))
    odd = [c for c in classes if not WNID.match(c)]
    if odd:
        problems.append(f"train/ has folders that are not WordNet ids: {', '.join(odd[:5])}")
    label_of = {c: i for i, c in enumerate(classes)}
    splits = {"train": []}
    for c in classes:
        files = _images(os.path.join(train_dir, c))
        if not files:
            problems.append(f"train/{c} has no images")
        splits["train"] += [(f"train/{c}/{f}", label_of[c]) for f in files]

    subdirs = sorted(n for n in os.listdir(val_dir) if os.path.isdir(os.path.join(val_dir, n)))
    if subdirs:
        unknown = [d for d in subdirs if d not in label_of]
        if unknown:
            problems.append(f"val/ has class folders not in train/: {', '.join(unknown[:5])}")
        splits["val"] = [(f"val/{d}/{f}", label_of[d]) for d in subdirs if d in label_of
                         for f in _images(os.path.join(val_dir, d))]
    else:
        labels_file = val_labels or os.path.join(val_dir, "val_labels.txt")
        if not os.path.isfile(labels_file):
            problems.append(f"val/ has no class folders and {labels_file} is missing "
                            "(lines '<file name> <wnid or index>', or pass --val-labels)")
            splits["val"] = []
        else:
            splits["val"] = _flat_val(val_dir, labels_file, label_of, classes, problems)

    for split in ("train", "val"):
        if not splits[split]:
            problems.append(f"{split} has no images")
    if len(classes) != EXPECTED["classes"]:
        notes.append(f"{len(classes)} classes (ILSVRC-2012 has {EXPECTED['classes']})")
    for split in ("train", "val"):
        if len(splits[split]) != EXPECTED[split]:
            notes.append(f"{len(splits[split])} {split} images (ILSVRC-2012 has {EXPECTED[split]})")

    bad = _unreadable(root, [p for s in splits.values() for p, _ in s], decode_check)
    if bad:
        problems.append(f"{len(bad)} unreadable image(s): {', '.join(bad[:5])}")
    if problems:
        raise DataError(f"{root}: " + "; ".join(problems))
    return classes, splits, notes


def _flat_val(val_dir, labels_file, label_of, classes, problems):
    present = set(_images(val_dir))
    out, missing = [], 0
    with open(labels_file) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                problems.append(f"{labels_file}:{n}: expected '<file name> <wnid or index>'")
                break
            name, label = parts
            if label.isdigit() and int(label) < len(classes):
                idx = int(label)
            elif label in label_of:
                idx = label_of[label]
            else:
                problems.append(f"{labels_file}:{n}: label {label} is not a class of train/")
                break
            if name not in present:
                missing += 1
                continue
            out.append((f"val/{name}", idx))
    if missing:
        problems.append(f"{missing} val image(s) named in {labels_file} are missing")
    unlabelled = len(present) - len(out)
    if unlabelled > 0 and not missing:
        problems.append(f"{unlabelled} val image(s) have no label in {labels_file}")
    return out


def _unreadable(root, paths, decode_check):
    bad = []
    desc = "decode images" if decode_check else "check images"
    for rel in progress(paths, what=desc, disable=len(paths) < 5000):
        path = os.path.join(root, rel)
        ok = _readable(path)
        if ok and decode_check:
            import cv2

            ok = cv2.imread(path, cv2.IMREAD_COLOR) is not None
        if not ok:
            bad.append(rel)
    return bad


def write_lmdb(root: str, items, path: str) -> None:
    """Pack (JPEG bytes, label) pairs into an LMDB file with tensorpack's serializer."""
    from tensorpack.dataflow import DataFromList, LMDBSerializer, MapData

    def read(item):
        rel, label = item
        with open(os.path.join(root, rel), "rb") as f:
            return [np.frombuffer(f.read(), dtype=np.uint8), label]

    LMDBSerializer.save(MapData(DataFromList(items, shuffle=False), read), path, write_frequency=5000)


# -- dataflow --------------------------------------------------------------------------------
def random_area_crop(size: int = 224):
    """The original's training crop (GoogLeNet-style, "Going Deeper with Convolutions"): up to
    10 tries of a window of 8-100% of the image's area and aspect ratio 3/4-4/3 (either
    orientation), resized to ``size`` x ``size`` with bicubic interpolation; if none fits, the
    whole image resized to ``size`` x ``size``."""
    import cv2
    from tensorpack.dataflow import imgaug
    from tensorpack.dataflow.imgaug.transform import CropTransform, ResizeTransform, TransformList

    class RandomAreaCrop(imgaug.ImageAugmentor):
        def get_transform(self, img):
            h, w = img.shape[:2]
            for _ in range(10):
                area = self.rng.uniform(0.08, 1.0) * h * w
                aspect = self.rng.uniform(0.75, 1.333)
                ww, hh = int(np.sqrt(area * aspect)), int(np.sqrt(area / aspect))
                if self.rng.uniform() < 0.5:
                    ww, hh = hh, ww
                if hh <= h and ww <= w:
                    x1 = 0 if w == ww else self.rng.randint(0, w - ww)
                    y1 = 0 if h == hh else self.rng.randint(0, h - hh)
                    return TransformList([CropTransform(y1, x1, hh, ww),
                                          ResizeTransform(hh, ww, size, size, cv2.INTER_CUBIC)])
            return ResizeTransform(h, w, size, size, cv2.INTER_CUBIC)

    return RandomAreaCrop()


def channel_contrast(factors=(0.8, 1.2)):
    """tensorpack's Contrast about each channel's mean (``x * r + mean * (1 - r)``), with the
    means from cv2.mean: numpy's mean over two axes of a uint8 image took 1.2 ms, two thirds of
    the whole augmentation's time."""
    import cv2
    from tensorpack.dataflow import imgaug

    class ChannelContrast(imgaug.Contrast):
        def _augment(self, img, r):
            old_dtype = img.dtype
            mean = np.asarray(cv2.mean(img)[:img.shape[2]])  # float64, as numpy's mean
            img = img * r + mean * (1 - r)
            if self.clip or old_dtype == np.uint8:
                img = np.clip(img, 0, 255)
            return img.astype(old_dtype)

    return ChannelContrast(factors, clip=False)


def truncating_resize(size: int):
    """The original's validation resize (tensorpack 0.2.0's ResizeShortestEdge, bilinear): both
    edges scaled by ``size / min(h, w)`` and truncated with int(), so the short edge ends at
    ``size - 1`` whenever the product rounds below ``size`` (for 256: 9% of the short edges from
    256 to 1,000 pixels, 374 and 389 among them); later tensorpack keeps the short edge exact."""
    import cv2
    from tensorpack.dataflow import imgaug
    from tensorpack.dataflow.imgaug.transform import ResizeTransform

    class TruncatingResize(imgaug.ResizeShortestEdge):
        def get_transform(self, img):
            h, w = img.shape[:2]
            scale = self.size * 1.0 / min(h, w)
            return ResizeTransform(h, w, int(scale * h), int(scale * w), self.interp)

    return TruncatingResize(size, cv2.INTER_LINEAR)


def augmentors(train: bool, size: int = 224):
    """The original implementation's ImageNet augmentation, on RGB uint8 images: the random-area
    crop, then in random order an additive brightness shift in [-30, 30], a contrast factor in
    [0.8, 1.2] about each channel's mean, a saturation factor in [0.6, 1.4] and the (unscaled)
    lighting noise, each step returning uint8 clipped to [0, 255] (the original's saturation step
    wrapped around instead: see the README's differences), then a horizontal flip of half the
    images. Validation: shortest edge to 256 (bilinear, truncated as the original's:
    :func:`truncating_resize`), centre crop 224 (both scaled with ``size``)."""
    from tensorpack.dataflow import imgaug

    if not train:
        return [truncating_resize(int(size * 256 / 224)), imgaug.CenterCrop((size, size))]
    return [
        random_area_crop(size),
        imgaug.RandomOrderAug([
            imgaug.Brightness(30, clip=False),
            channel_contrast((0.8, 1.2)),
            imgaug.Saturation(0.4, rgb=True, clip=False),
            imgaug.Lighting(0.1, eigval=EIGVAL, eigvec=EIGVEC, clip=False),
        ]),
        imgaug.Clip(),
        imgaug.Flip(horiz=True),
        imgaug.ToUint8(),
    ]


def _reseed(aug, rng: np.random.RandomState) -> None:
    """Make an augmentor (and the augmentors inside it) draw from ``rng``."""
    aug.rng = rng
    children = list(getattr(aug, "augmentors", [])) + list(getattr(aug, "aug_lists", []))
    if getattr(aug, "aug", None) is not None:
        children.append(aug.aug)
    for child in children:
        _reseed(child, rng)


class ImageNetBatches:
    """A batch source (:mod:`.ordered`) of (uint8 RGB images N x size x size x 3, int32 labels):
    images read by index from the folder (or from the LMDB file by key), training batches in a
    permutation per pass seeded by (seed, pass), each image augmented with an RNG seeded by
    (seed, batch index, position)."""

    def __init__(self, data_dir: str, meta: dict, split: str, batch: int, size: int = 224,
                 seed: int = 0):
        from tensorpack.dataflow import imgaug

        self.train = split == "train"
        self.batch_size, self.seed = int(batch), seed
        self.aug = imgaug.AugmentorList(augmentors(self.train, size))
        self.lmdb_path = os.path.join(data_dir, f"{split}.lmdb")
        self.use_lmdb = bool(meta.get("lmdb")) and os.path.exists(self.lmdb_path)
        self.items = [(os.path.join(meta["source"], rel), label)
                      for rel, label in read_index(data_dir, split)]
        self._env, self._pid = None, None

    def __len__(self):
        n = len(self.items)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def _read(self, i: int):
        import cv2

        if self.use_lmdb:
            import lmdb
            from tensorpack.utils.serialize import loads

            if self._pid != os.getpid():  # an LMDB environment must not cross a fork
                self._env = lmdb.open(self.lmdb_path, readonly=True, lock=False, readahead=False,
                                      subdir=os.path.isdir(self.lmdb_path), max_readers=64)
                self._pid = os.getpid()
            with self._env.begin() as txn:
                data, label = loads(txn.get(f"{i:08}".encode("ascii")))
            img = cv2.imdecode(np.asarray(data, np.uint8), cv2.IMREAD_COLOR)
        else:
            path, label = self.items[i]
            img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"cannot decode image {i} of {self.lmdb_path if self.use_lmdb else path}")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), label

    def batch(self, k: int) -> list:
        from .ordered import AUGMENTATION, pass_order, rng_for

        if self.train:
            idx = pass_order(self.seed, len(self.items), self.batch_size, k)
        else:
            j = k % len(self)
            idx = range(j * self.batch_size, min((j + 1) * self.batch_size, len(self.items)))
        images, labels = [], []
        for pos, i in enumerate(idx):
            img, label = self._read(int(i))
            _reseed(self.aug, rng_for(self.seed, AUGMENTATION, k, pos))
            images.append(self.aug.augment(img))
            labels.append(label)
        return [np.stack(images), np.asarray(labels, np.int32)]


def dataflow(data_dir: str, meta: dict, split: str, batch: int, workers: int, size: int = 224,
             seed: int = 0):
    """:class:`ImageNetBatches` as a tensorpack DataFlow (training batches computed ahead by
    ``workers`` processes, delivered in order)."""
    from .ordered import OrderedBatches

    return OrderedBatches(ImageNetBatches(data_dir, meta, split, batch, size, seed),
                          workers if split == "train" else 0)


def write_index(folder: str, split: str, items) -> None:
    with open(os.path.join(folder, f"{split}.txt"), "w") as f:
        for rel, label in items:
            f.write(f"{rel} {label}\n")


def read_index(data_dir: str, split: str):
    with open(os.path.join(data_dir, f"{split}.txt")) as f:
        return [(rel, int(label)) for rel, label in (line.rsplit(" ", 1) for line in f if line.strip())]
