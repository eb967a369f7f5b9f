"""``eps-resnet prepare``: its arguments and its handler."""
from __future__ import annotations

import argparse


def add_prepare(sub) -> None:
    from ..data import preparable

    p = sub.add_parser("prepare", help="download or take, verify and convert a dataset",
                       description="Prepare a dataset for `eps-resnet train --data-dir`. Archives are "
                       "checked against their published MD5 before anything in them is read; a "
                       "finished prepare rerun does nothing.")
    p.add_argument("dataset", metavar="DATASET", help=f"one of {', '.join(preparable())}")
    p.add_argument("--out", required=True, metavar="DIR", help="where the prepared dataset goes")
    p.add_argument("--source", metavar="PATH",
                   help="local copy instead of downloading: the CIFAR archive or its extracted "
                   "folder, the folder of the SVHN .mat files, or the ILSVRC-2012 folder")
    p.add_argument("--md5", action="append", metavar="[SPLIT=]HASH",
                   help="expected MD5 instead of the published one (SVHN: train=..., test=...)")
    p.add_argument("--svhn-extra", action=argparse.BooleanOptionalAction, default=True,
                   help="SVHN: also prepare the 531k extra images, which training uses by default "
                   "(default; --no-svhn-extra leaves them out)")
    p.add_argument("--lmdb", action="store_true",
                   help="ImageNet: also pack the images into LMDB files for sequential reads")
    p.add_argument("--val-labels", metavar="FILE",
                   help="ImageNet: labels of a flat val/ folder ('<file> <wnid or index>' lines)")
    p.add_argument("--decode-check", action="store_true",
                   help="ImageNet: decode every image (slow) instead of checking file signatures")
    p.set_defaults(func=_cmd_prepare)


def _cmd_prepare(args) -> int:
    from ..data.prepare import prepare

    md5 = None
    if args.md5:
        pairs = [m.split("=", 1) for m in args.md5]
        md5 = {k: v for k, v in pairs} if all(len(p) == 2 for p in pairs) else args.md5[-1]
    prepare(args.dataset, args.out, args.source, md5, svhn_extra=args.svhn_extra, lmdb=args.lmdb,
            val_labels=args.val_labels, decode_check=args.decode_check)
    return 0
