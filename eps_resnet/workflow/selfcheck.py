"""`eps-resnet selfcheck`: what to run on a (GPU) machine before committing days to it.

A one-page report of checks that each pass or fail: what TensorFlow sees, that the two data
layouts compute the same network, that the gate decides right on this device, that this CPU
computes the portable kernels' reference bits (the README's numbers), how fast the real
training path runs (1 device and all devices, fp32 and mixed where supported) and, from that,
how many device-hours the paper's headline figures need. Everything runs through the same
code as training (devices.decide, train.train, gate.gate_value): no second implementation.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from ..errors import first_line
from ..logs import NOTE
from ..tables import markdown_table

LOG = logging.getLogger(__name__)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


#: The paper's headline figures, whose device-hours the report estimates.
HEADLINE = ("figures/cifar10-val-error.png", "figures/imagenet-val-error.png")


def devices() -> tuple[Check, dict]:
    """What TensorFlow sees: GPUs (name, compute capability, memory) or the CPU's features."""
    import tensorflow as tf

    from ..training.devices import has_bfloat16
    from ..training.provenance import cpu

    c = cpu()
    found = {"cpu": c, "gpus": []}
    for d in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(d)
        found["gpus"].append({"name": details.get("device_name", d.name),
                              "compute_capability": details.get("compute_capability"),
                              "memory_gb": _gpu_memory_gb(d)})
    lines = [f"TensorFlow {tf.__version__}; CPU {c['model']} ({', '.join(c['flags']) or 'no AVX'}"
             f"; bfloat16 units: {'yes' if has_bfloat16(c['flags']) else 'no'})"]
    lines += [f"GPU {i}: {g['name']}, compute capability {g['compute_capability']}, "
              f"{g['memory_gb'] or '?'} GB" for i, g in enumerate(found["gpus"])]
    if not found["gpus"]:
        lines.append("no GPU visible to TensorFlow (CUDA_VISIBLE_DEVICES, driver, or "
                     "`pip install -e .[gpu]` missing?): training runs on the CPU")
    return Check("devices", True, "; ".join(lines)), found


def _gpu_memory_gb(device) -> float | None:
    import tensorflow as tf

    try:
        name = device.name.replace("/physical_device:", "")
        tf.config.experimental.get_memory_info(name)  # initialises the device
        return round(tf.config.experimental.get_device_details(device).get("memory_limit", 0) / 2 ** 30, 1) or None
    except Exception:  # noqa: BLE001 (memory queries differ between drivers; the rest still runs)
        return None


def layouts(gpu: bool) -> Check:
    """NHWC and NCHW give the same logits for the same weights (on a CPU, NCHW is compiled by
    XLA: TensorFlow's CPU pooling kernels are NHWC-only)."""
    from ..compat import import_tf
    from ..models.resnet import build_model
    from ..training.settings import TrainSettings

    tf = import_tf()
    worst = 0.0
    for family, depth, size in (("cifar", 14, 32), ("imagenet", 18, 64)):
        s = TrainSettings(dataset="synthetic", depth=depth, variant="epsilon", epsilon=1.0,
                          family=family, image_size=size, classes=10, out=".").resolved()
        x = np.random.RandomState(0).randint(0, 255, (4, size, size, 3))
        values, out = None, {}
        for fmt in ("NHWC", "NCHW"):
            model = build_model(s, data_format=fmt)
            with tf.Graph().as_default():
                tf.set_random_seed(0)
                inp = [tf.placeholder(t.dtype, t.shape, t.name) for t in model.inputs()]
                jit = (tf.xla.experimental.jit_scope() if fmt == "NCHW" and not gpu
                       else _null())
                from tensorpack.tfutils.tower import TowerContext

                with TowerContext("", is_training=False), jit:
                    model.build_graph(*inp)
                logits = tf.get_default_graph().get_tensor_by_name("logits:0")
                with tf.Session() as sess:
                    sess.run(tf.global_variables_initializer())
                    if values is None:
                        values = {v.op.name: sess.run(v) for v in tf.global_variables()}
                    else:
                        for v in tf.global_variables():
                            v.load(values[v.op.name], sess)
                    out[fmt] = sess.run(logits, {inp[0]: x.astype(inp[0].dtype.as_numpy_dtype),
                                                 inp[1]: np.zeros(4, np.int32)})
        scale = max(1.0, float(np.abs(out["NHWC"]).max()))
        worst = max(worst, float(np.abs(out["NHWC"] - out["NCHW"]).max()) / scale)
    return Check("NHWC = NCHW", worst < 1e-4,
                 f"largest relative logit difference {worst:.1e} (ResNet-14, ImageNet-family ResNet-18)")


def _null():
    from contextlib import nullcontext

    return nullcontext()


def gate() -> Check:
    """The gate on this device: a planted block whose response stays below ε closes, one with a
    single element above ε stays open (ε = 2.3, not a bfloat16 number)."""
    from ..compat import import_tf
    from ..models.gate import gate_value

    tf = import_tf()
    eps = 2.3
    closed = np.full((8, 4, 4, 16), 2.29, np.float32)
    opened = closed.copy()
    opened[3, 1, 2, 5] = -2.31
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, closed.shape)
        t = gate_value(x, tf.constant(eps))
        with tf.Session() as sess:
            got = [float(sess.run(t, {x: v})) for v in (closed, opened)]
    return Check("gate", got == [0.0, 1.0], f"T on a planted closed block {got[0]:g} (expected 0), "
                 f"on a planted open block {got[1]:g} (expected 1)")


def cpu_bits() -> Check:
    """Whether this CPU computes the portable kernels' reference bits (workflow.cpubits), in a
    process of their own: a fixed set of single ops, a few seconds."""
    from .cpubits import hashes_in_own_process, load_reference, verdict

    same, line = verdict(hashes_in_own_process(), load_reference())
    return Check("CPU bits", same, line)


def throughput(found: dict, quick: bool) -> tuple[list[Check], dict]:
    """img/s of ResNet-110 (CIFAR family) and ResNet-50 (ImageNet family) on synthetic data, on
    one device and on all devices, in fp32 and (where the hardware has it) mixed precision."""
    from ..results.estimate import flops
    from ..training.devices import has_bfloat16
    from ..training.throughput import images_per_second

    n_gpus = len(found["gpus"])
    device_sets = [1] + ([n_gpus] if n_gpus > 1 else []) if n_gpus else [0]
    mixed = n_gpus or has_bfloat16(found["cpu"]["flags"])
    precisions = ["fp32"] + (["mixed"] if mixed else [])
    # --quick still times several steps after the first ones (which build and tune kernels):
    # one timed step read 1.5 img/s for ResNet-110 where the benchmark measured 27.9
    steps, warmup = (6, 3) if quick else (20, 5)
    checks, rates = [], {}
    for family, depth, per_device in (("cifar", 110, 128), ("imagenet", 50, 64)):
        # --quick on a CPU: ResNet-50 on 64 px images, its rate scaled to 224 px by the FLOPs
        size = 64 if quick and family == "imagenet" and not n_gpus else 224
        if quick and not n_gpus:
            per_device = 32 if family == "cifar" else 8
        for gpus in device_sets:
            for precision in precisions:
                batch = per_device * max(1, gpus)
                what = (f"{'ResNet-110' if family == 'cifar' else 'ResNet-50'}, "
                        f"{f'{gpus} GPU(s)' if gpus else 'CPU'}, {precision}, batch {batch}"
                        + (f" at {size} px, scaled to 224 px" if family == "imagenet" and size != 224 else ""))
                try:
                    rate = images_per_second("standard", depth, batch, steps, warmup, gpus, family,
                                             precision, image_size=None if family == "cifar" else size)
                    if family == "imagenet" and size != 224:
                        rate *= flops(family, depth, size) / flops(family, depth, 224)
                    rates[(family, gpus, precision)] = rate
                    checks.append(Check("training", np.isfinite(rate), f"{what}: {rate:.1f} img/s"))
                except Exception as e:  # noqa: BLE001 (a failed configuration is a failed check)
                    checks.append(Check("training", False,
                                        f"{what}: {type(e).__name__}: {first_line(e)[:160]}"))
                LOG.log(NOTE, checks[-1].detail)
    return checks, rates


def device_hours(rates: dict, found: dict) -> Check:
    """Device-hours of the paper's headline figures (config/experiments.yaml's runs, all still to
    train) at the measured throughput of one device, through `eps-resnet estimate`'s counting."""
    import tempfile

    from ..results.estimate import estimate, runs_of
    from .config import PROJECT, RunTable, load_config, validate_config

    unit = "GPU-hours" if found["gpus"] else "CPU-hours"
    # one device's best rate per measured network: the hours add up per device
    measured = {}
    for (family, gpus, _), rate in rates.items():
        if gpus <= 1:
            depth = 110 if family == "cifar" else 50
            measured[depth] = max(rate, measured.get(depth, 0.0))
    paper = os.path.join(PROJECT, "config", "experiments.yaml")
    if not measured or not os.path.exists(paper):
        return Check("estimate", False, "no throughput measured" if not measured else f"{paper} missing")
    with tempfile.TemporaryDirectory() as nowhere:  # count every run, none trained yet
        config = validate_config(dict(load_config(paper), results_dir=nowhere))
        table = RunTable(config)
        lines = []
        for target in HEADLINE:
            costs = estimate(runs_of(table, [target]), measured)
            hours = sum(c.hours for c in costs if c.hours is not None)
            lines.append(f"{target}: {len(costs)} runs, ~{hours:,.0f} {unit}")
    return Check("estimate", True, "; ".join(lines))


def selfcheck(quick: bool = False) -> list[Check]:
    """Every check, in order (tensorpack's own logging quietened: the report is the output)."""
    from tensorpack.utils import logger

    level = logging.getLogger("tensorpack").level  # tensorpack logs there
    logger.setLevel("ERROR")
    try:
        return _selfcheck(quick)
    finally:
        logger.setLevel(level)


def _selfcheck(quick: bool) -> list[Check]:
    start = time.time()
    check, found = devices()
    checks = [check]
    LOG.log(NOTE, check.detail)
    for step in (lambda: layouts(bool(found["gpus"])), gate, cpu_bits):
        try:
            checks.append(step())
        except Exception as e:  # noqa: BLE001
            checks.append(Check(getattr(step, "__name__", "check"), False, f"{type(e).__name__}: {e}"))
        LOG.log(NOTE, f"{checks[-1].name}: {checks[-1].detail}")
    more, rates = throughput(found, quick)
    checks += more + [device_hours(rates, found)]
    checks.append(Check("time", True, f"self-check took {time.time() - start:.0f} s"))
    return checks


def report(checks: list[Check]) -> str:
    rows = [[c.name, "ok" if c.ok else "FAILED", c.detail] for c in checks]
    lines = ["# eps-resnet self-check", "",
             markdown_table(rows, ["check", "result", "detail"]).rstrip("\n")]
    failed = [c for c in checks if not c.ok]
    lines += ["", f"{len(failed)} check(s) failed: see the README, \"Running on GPUs\"." if failed
              else "All checks passed."]
    return "\n".join(lines)
