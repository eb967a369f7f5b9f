"""Everything training decides by device, decided in one place from the visible devices and the
settings, and recorded in run.yaml: data layout, trainer, towers, all-reduce, mixed precision.

Plain Python: the decision is made (and bad requests refused) before TensorFlow builds anything.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .settings import SettingsError

#: CPU features that carry TensorFlow's oneDNN bfloat16 kernels.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def has_bfloat16(cpu_flags) -> bool:
    """Whether a CPU with these feature flags has bfloat16 units (BF16_CPU_FLAGS)."""
    return bool(set(BF16_CPU_FLAGS) & set(cpu_flags))

#: What ``--precision mixed`` runs on each kind of hardware.
#: CPU: TensorFlow's oneDNN bfloat16 graph rewrite (bfloat16 keeps float32's range, so no loss
#: scaling). NVIDIA GPU: TensorFlow's automatic mixed precision graph rewrite in float16 with
#: dynamic loss scaling: it runs on the tensor cores of every GPU since Volta, where bfloat16
#: needs Ampere or later, and it is the rewrite TensorFlow's graph mode offers for GPUs.
MIXED_KINDS = {"cpu": "onednn_bfloat16", "gpu": "cuda_float16_loss_scaling"}


@dataclass(frozen=True)
class DevicePlan:
    device: str  # "cpu" or "gpu"
    gpus: int  # GPUs training uses (0: CPU)
    towers: int  # model replicas; the batch is split across them
    data_format: str  # "NCHW" on GPUs (cuDNN's fast layout), "NHWC" on CPUs
    trainer: str  # tensorpack trainer: "SimpleTrainer" or "SyncMultiGPUTrainerReplicated"
    all_reduce: str | None  # how towers sum gradients: "nccl" on GPUs, "cpu" for CPU towers
    precision: str  # "fp32" or "mixed"
    mixed_kind: str | None  # see MIXED_KINDS

    def to_dict(self) -> dict:
        return asdict(self)


def decide(settings, visible_gpus: int, cpu_flags) -> DevicePlan:
    """The device plan of resolved settings on a machine with ``visible_gpus`` GPUs and these
    CPU feature flags. Raises SettingsError for what this machine cannot run."""
    gpus = visible_gpus if settings.gpus is None else settings.gpus
    if gpus > visible_gpus:
        raise SettingsError(f"--gpus {gpus} asks for more GPUs than the {visible_gpus} visible here")
    device = "gpu" if gpus else "cpu"
    # CPU towers: the same replicated trainer and graph as on GPUs, placed on the CPU and summed
    # there (NCCL has no CPU kernel), so the tower logic can be tested without GPUs
    towers = (settings.towers or 1) if device == "cpu" else gpus
    mixed_kind = None
    if settings.precision == "mixed":
        if device == "cpu" and not has_bfloat16(cpu_flags):
            raise SettingsError(
                "--precision mixed needs an NVIDIA GPU or a CPU with bfloat16 units "
                f"({' or '.join(BF16_CPU_FLAGS)}); this CPU has neither, so training would run in "
                "fp32: use --precision fp32")
        mixed_kind = MIXED_KINDS[device]
    return DevicePlan(
        device=device, gpus=gpus, towers=towers,
        data_format="NCHW" if device == "gpu" else "NHWC",
        trainer="SyncMultiGPUTrainerReplicated" if towers > 1 else "SimpleTrainer",
        all_reduce=("nccl" if device == "gpu" else "cpu") if towers > 1 else None,
        precision=settings.precision, mixed_kind=mixed_kind)
