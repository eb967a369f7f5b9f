"""``eps-resnet train``: its arguments and its handler."""
from __future__ import annotations

import argparse

from ..data import DATASETS
from ..models import VARIANTS
from ..training.recipe import LR_MODES
from ..training.settings import PRECISIONS, TrainSettings, default_of


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a ResNet / ε-ResNet (resumes an existing run folder)",
                       description="Train a baseline ResNet or an ε-ResNet with tensorpack. Running "
                       "the same command on the same --out resumes from its newest checkpoint.")
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--depth", required=True, type=int,
                   help="CIFAR family: 6n+2 (110 = ResNet-110); ImageNet: 18, 34, 50, 101, 152")
    p.add_argument("--variant", required=True, metavar="VARIANT", help=f"one of {', '.join(VARIANTS)}")
    p.add_argument("--epsilon", type=float, help="ε of the gate (required for --variant epsilon)")
    p.add_argument("--epsilon-start-epoch", type=int, metavar="K",
                   help="keep ε = 0 (gates open) until K epochs finished; default: the recipe's "
                   "(0: ε from the start)")
    p.add_argument("--epochs", type=int, help="default: the recipe's (CIFAR baselines 300, "
                   "ε-ResNet 1000; SVHN 200; ImageNet 110)")
    p.add_argument("--steps-per-epoch", type=int, help="default: one pass over the training set "
                   "(SVHN: over train + extra, also with --no-svhn-extra)")
    p.add_argument("--batch", type=int, help="total batch, split across GPUs (default: the paper's)")
    p.add_argument("--gpus", type=int, help="GPUs to train on (default: all visible; 0: CPU)")
    p.add_argument("--towers", type=int, metavar="N",
                   help="with --gpus 0: N model replicas on the CPU, trained by the same replicated "
                   "trainer as several GPUs (a test and debugging aid for multi-GPU runs)")
    p.add_argument("--data-dir", help="folder written by `eps-resnet prepare`")
    p.add_argument("--svhn-extra", action=argparse.BooleanOptionalAction, default=None,
                   help="SVHN: train on train + extra as the original (default); --no-svhn-extra "
                   "trains on train alone, an epoch keeping the steps of train + extra")
    p.add_argument("--data-workers", type=int, help="dataflow processes (default: cores - 1)")
    p.add_argument("--seed", type=int, default=default_of("seed"),
                   help="seeds the data order, augmentation and initial weights (default %(default)s)")
    p.add_argument("--lr-schedule", metavar="MODE",
                   help=f"one of {', '.join(LR_MODES)} (default: adaptive for ε-ResNet on CIFAR/SVHN)")
    p.add_argument("--threads", type=int, default=default_of("threads"),
                   help="TensorFlow intra/inter-op threads (default 0: every core)")
    p.add_argument("--precision", default=default_of("precision"), metavar="P",
                   help=f"one of {', '.join(PRECISIONS)}; mixed: bfloat16 on CPUs with avx512_bf16 "
                   "or amx_bf16, float16 with loss scaling on NVIDIA GPUs (default fp32)")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                   default=default_of("deterministic"),
                   help="TensorFlow's deterministic ops, so that the same seed gives the same numbers "
                   "on the same machine (default); --no-deterministic trades that for speed")
    p.add_argument("--inference-gates", default=default_of("inference_gates"), metavar="G",
                   help="ε-ResNet at validation and inference: batch (each batch's own gate "
                   "decision, the original's; default) or training (the verdict of training's "
                   "moving average, the network compression keeps)")
    p.add_argument("--closed-gates", default=default_of("closed_gates"), metavar="C",
                   help="ε-ResNet in training: reopen (every batch decides anew, the original's; "
                   "default) or stay (a gate stays closed once training's moving average says "
                   "discarded, as weight decay makes it in the paper's long runs)")
    p.add_argument("--gate", default=default_of("gate"), metavar="NAME",
                   help="ε-ResNet: the gate of eps_resnet.models.gate.GATES that joins each block "
                   "(default %(default)s, the paper's four-ReLU gate)")
    p.add_argument("--cpu-kernels", metavar="K",
                   help="portable: the same numbers on every x86-64 CPU kind (oneDNN's kernels held "
                   "to AVX2, cache sizes pinned); native: TensorFlow's choice for this CPU, "
                   "faster on AVX-512/AMX (default native, or $EPS_RESNET_CPU_KERNELS)")
    p.add_argument("--family", help="synthetic data only: cifar or imagenet network layout")
    p.add_argument("--image-size", type=int, help="synthetic data only: image side in pixels")
    p.add_argument("--classes", type=int, help="synthetic data only: number of classes")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (created or resumed)")
    p.set_defaults(func=_cmd_train)


def settings_of(args) -> TrainSettings:
    """The TrainSettings of parsed ``eps-resnet train`` arguments (before defaults are resolved)."""
    return TrainSettings(**{k: v for k, v in vars(args).items() if k not in ("func", "command")})


def _cmd_train(args) -> int:
    from ..training.train import train

    train(settings_of(args))
    return 0
