#!/usr/bin/env python
"""Images/second of the training dataflows: CIFAR and SVHN (augmentation, batching, multi-process
prefetch, exactly as `eps-resnet train` builds it; SVHN with the original's Gaussian
deformation) and ImageNet (JPEG decoding, crop, colour and lighting noise, flip, batching, in
worker processes).

Two measurements per pipeline: the batches the dataflow computes (``--workers`` processes),
and the input ceiling, the batches delivered into a training graph through the run's own
input (OrderedQueueInput, tensorpack's trainer) with the model replaced by a trivial op, with
each number of workers of ``--graph-workers``: what one worker can feed a fast GPU.

The data are generated in the real on-disk formats: prepared datasets of CIFAR-10's size
(50,000 training images) and JPEGs of typical ImageNet size (500 x 375).

    python benchmarks/dataflow_throughput.py [--workers N] [--graph-workers 1 2] [--seconds S]
"""
from __future__ import annotations

import argparse
import faulthandler
import os
import tempfile
import time

import numpy as np

import eps_resnet  # noqa: F401
from eps_resnet.data.dataflows import delivers_uint8, get_dataflow
from eps_resnet.data.files import save_arrays, write_marker
from eps_resnet.tables import markdown_table
from eps_resnet.training.settings import TrainSettings, default_data_workers


#: Seconds a measurement may take beyond its own ``--seconds`` (start-up, graph building, the
#: workers' first batches) before the benchmark stops and prints where it waits.
SLACK = 240


def watchdog(seconds: float) -> None:
    """Stop this process with every thread's stack on stderr if it is still running after
    ``seconds`` (a hang becomes a failure that says where; cancelled by the next call)."""
    faulthandler.cancel_dump_traceback_later()
    faulthandler.dump_traceback_later(seconds, exit=True)


def rate(df, batch: int, seconds: float, warmup: int = 5) -> float:
    watchdog(seconds + SLACK)
    df.reset_state()

    def forever():  # as tensorpack's QueueInput does: start a new pass when one ends
        while True:
            yield from df
    it = forever()
    try:
        for _ in range(warmup):
            next(it)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            next(it)
            n += batch
        return n / (time.perf_counter() - start)
    finally:
        df.close()
        faulthandler.cancel_dump_traceback_later()


def into_graph(settings, batch: int, seconds: float) -> float:
    """:func:`dequeued` in a process of its own (started afresh: forking a process that already
    runs TensorFlow's threads, as the data workers are, can hang)."""
    import multiprocessing
    import queue

    spawn = multiprocessing.get_context("spawn")
    result = spawn.Queue()
    child = spawn.Process(target=_dequeued_then_exit, args=(result, settings, batch, seconds))
    child.start()
    while True:
        try:
            rate = result.get(timeout=1)
            break
        except queue.Empty:
            if not child.is_alive():  # its watchdog or an error ended it; stderr says why
                raise SystemExit(f"dataflow_throughput.py: the {settings.dataset} measurement "
                                 f"into the graph ended without a result (exit status "
                                 f"{child.exitcode})")
    child.join()
    return rate


def _dequeued_then_exit(result, settings, batch: int, seconds: float) -> None:
    watchdog(seconds + SLACK)
    result.put(dequeued(settings, batch, seconds))
    result.close()
    result.join_thread()
    # at once: the data workers end with this process (they die with their parent), while the
    # pool's own clean-up can wait forever on a worker still sending a batch
    os._exit(0)


def dequeued(settings, batch: int, seconds: float, warmup: int = 5) -> float:
    """img/s of the run's training batches dequeued by a training graph whose model is a trivial
    op (the run's own OrderedQueueInput and tensorpack trainer; no other callback, no monitor)."""
    df = get_dataflow(settings, "train", batch)
    size, uint8 = settings.image_size, delivers_uint8(settings)
    from tensorpack import ModelDesc, SimpleTrainer, TrainConfig, launch_train_with_config
    from tensorpack.callbacks import Callback
    from tensorpack.train.base import StopTraining

    from eps_resnet.compat import import_tf
    from eps_resnet.training.callbacks import OrderedQueueInput

    tf = import_tf()

    class InputOnly(ModelDesc):
        def inputs(self):
            return [tf.TensorSpec((None, size, size, 3), tf.uint8 if uint8 else tf.float32, "input"),
                    tf.TensorSpec((None,), tf.int32, "label")]

        def build_graph(self, image, label):
            w = tf.get_variable("w", [], initializer=tf.zeros_initializer())
            # reads one pixel per image: the batch must be dequeued, nothing else is computed
            return tf.multiply(w, tf.reduce_mean(tf.cast(image[:, 0, 0, 0], tf.float32)), "cost")

        def optimizer(self):
            return tf.train.GradientDescentOptimizer(0.0)

    class Timer(Callback):
        """Times the steps after the warm-up and ends training after ``seconds``."""

        def __init__(self):
            self.start, self.steps = None, 0

        def _trigger_step(self):
            self.steps += 1
            if self.steps == warmup:
                self.start = time.perf_counter()
            elif self.start and time.perf_counter() - self.start >= seconds:
                self.rate = (self.steps - warmup) * batch / (time.perf_counter() - self.start)
                raise StopTraining()

    timer = Timer()
    with tf.Graph().as_default():
        launch_train_with_config(TrainConfig(
            model=InputOnly(), data=OrderedQueueInput(df), callbacks=[timer], monitors=[],
            extra_callbacks=[], steps_per_epoch=10 ** 9, max_epoch=1), SimpleTrainer())
    return timer.rate


def memory_like(folder: str, dataset: str, n: int = 50_000) -> None:
    """A prepared in-memory dataset of ``n`` training images (CIFAR-10's 50,000 by default;
    SVHN's as train + extra)."""
    rng = np.random.RandomState(0)
    for split, count in (("train", n), ("val", n // 5)):
        save_arrays(folder, split, rng.randint(0, 256, (count, 32, 32, 3)).astype(np.uint8),
                    rng.randint(0, 10, count))
    np.save(os.path.join(folder, "mean.npy"), np.full((32, 32, 3), 120, np.float32))
    parts = {"parts": {"train": n // 5, "extra": n - n // 5}} if dataset == "svhn" else {}
    write_marker(folder, {"dataset": dataset, "images": {"train": n, "val": n // 5}, **parts})


def imagenet_like(folder: str, n: int = 256) -> None:
    import cv2

    rng = np.random.RandomState(0)
    root = os.path.join(folder, "ilsvrc")
    items = []
    for i in range(n):
        wnid = f"n{i % 4:08d}"
        os.makedirs(os.path.join(root, "train", wnid), exist_ok=True)
        # smooth noise compresses like a photo (~100 KB), unlike white noise
        small = rng.randint(0, 256, (48, 64, 3)).astype(np.uint8)
        img = cv2.resize(small, (500, 375), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img.astype(np.int16) + rng.randint(-20, 20, img.shape), 0, 255).astype(np.uint8)
        rel = f"train/{wnid}/{wnid}_{i}.JPEG"
        cv2.imwrite(os.path.join(root, rel), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        items.append(f"{rel} {i % 4}\n")
    with open(os.path.join(folder, "train.txt"), "w") as f:
        f.writelines(items)
    write_marker(folder, {"dataset": "imagenet", "source": root, "lmdb": False,
                          "images": {"train": n}})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=default_data_workers(),
                   help="dataflow processes (default: as `eps-resnet train`)")
    p.add_argument("--graph-workers", type=int, nargs="*", default=[1, 2],
                   help="numbers of workers feeding the graph (default 1 2; none: skip)")
    p.add_argument("--seconds", type=float, default=20, help="per measurement (default 20)")
    p.add_argument("--train-images", type=int, default=50_000,
                   help="CIFAR and SVHN training images generated (default 50000)")
    p.add_argument("--imagenet-images", type=int, default=256,
                   help="JPEGs generated, at least one batch of 64 (default 256)")
    args = p.parse_args(argv)
    if args.imagenet_images < 64 or args.train_images < 128:
        p.error("--imagenet-images must be at least 64 and --train-images at least 128 (one batch)")
    from eps_resnet.training.provenance import cpu

    cores = len(os.sched_getaffinity(0))
    pipelines = {
        "cifar10": ("CIFAR train (pad-crop-flip, uint8, batch 128)", 110, 128),
        "svhn": ("SVHN train (pad, brightness, contrast, Gaussian deformation, crop, mean, "
                 "batch 128)", 110, 128),
        "imagenet": ("ImageNet train (decode 500x375 JPEG, crop 224, colour, lighting, flip, "
                     "batch 64)", 50, 64),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, (name, depth, batch) in pipelines.items():
            folder = os.path.join(tmp, dataset)
            os.makedirs(folder)
            if dataset == "imagenet":
                imagenet_like(folder, args.imagenet_images)
            else:
                memory_like(folder, dataset, args.train_images)

            def settings(workers):
                return TrainSettings(dataset=dataset, depth=depth, variant="standard", out=tmp,
                                     data_dir=folder, data_workers=workers).resolved()

            s = settings(args.workers)
            computed = rate(get_dataflow(s, "train", batch), batch, args.seconds)
            fed = {w: into_graph(settings(w), batch, args.seconds) for w in args.graph_workers}
            rows.append((name, computed, fed))
    print(f"\nDataflow throughput, {cpu()['model']}, {cores} cores: batches computed by "
          f"{args.workers} worker process(es), and delivered into a training graph (input "
          "only) by 1 or 2")
    headers = ["pipeline", "computed img/s", "per worker",
               *(f"into the graph, {w} worker(s)" for w in args.graph_workers)]
    print(markdown_table([[name, f"{computed:.0f}", f"{computed / args.workers:.0f}",
                           *(f"{fed[w]:.0f}" for w in args.graph_workers)]
                          for name, computed, fed in rows], headers), end="")


if __name__ == "__main__":
    main()
