"""Datasets in their real on-disk formats, generated here: prepare, verify, load, augment, batch."""
import hashlib
import io
import itertools
import json
import logging
import os
import pickle
import tarfile

import numpy as np
import pytest
import yaml

from eps_resnet.cli import main
from eps_resnet.data import cifar, digits, svhn
from eps_resnet.data.files import DataError, read_marker
from eps_resnet.data.prepare import memory_dataflow, prepare
from eps_resnet.training.recipe import RECIPES


def md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def cifar_batch(n, key, classes, rng):
    return {b"batch_label": b"generated", key: rng.randint(0, classes, n).tolist(),
            b"data": rng.randint(0, 256, (n, 3072)).astype(np.uint8), b"filenames": [b"x.png"] * n}


def make_cifar_archive(folder, dataset, rng, per_batch=20, bad_labels=()):
    """An archive in the official python-version layout, with pickles like the originals';
    ``bad_labels`` replace the first labels of the first batch."""
    name, _, inner, train, test, key = cifar.ARCHIVES[dataset]
    classes = 10 if dataset == "cifar10" else 100
    path = os.path.join(folder, name)
    with tarfile.open(path, "w:gz") as tar:
        for i, member in enumerate(train + test + ["batches.meta" if dataset == "cifar10" else "meta"]):
            batch = cifar_batch(per_batch, key, classes, rng)
            if i == 0:
                batch[key][:len(bad_labels)] = list(bad_labels)
            payload = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"{inner}/{member}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_cifar10_archive_prepares_loads_augments_and_batches(tmp_path, capsys):
    rng = np.random.RandomState(0)
    archive = make_cifar_archive(str(tmp_path), "cifar10", rng)
    out = tmp_path / "cifar10"
    assert main(["prepare", "cifar10", "--out", str(out), "--source", archive,
                 "--md5", md5(archive)]) == 0
    info = read_marker(str(out))
    assert info["images"] == {"train": 100, "val": 20} and info["classes"] == 10
    # the stored images are the archive's pixels, CHW rows turned into HWC images
    with tarfile.open(archive) as tar:
        first = pickle.loads(tar.extractfile("cifar-10-batches-py/data_batch_1").read(),
                             encoding="bytes")
    stored = np.load(out / "train_images.npy")
    np.testing.assert_array_equal(stored[0], first[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0))

    train = memory_dataflow(str(out), "train", 16, RECIPES["cifar"].augmentation)
    train.reset_state()
    x, y = next(iter(train))
    assert x.shape == (16, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert len(train) == 100 // 16
    mean = np.load(out / "mean.npy")
    # augmentation: zero padding shows up as -mean at the borders of shifted crops
    assert np.abs(x).max() <= 255
    val = memory_dataflow(str(out), "val", 16)
    val.reset_state()
    batches = list(val)
    assert [len(b[1]) for b in batches] == [16, 4]  # every validation image once
    np.testing.assert_allclose(batches[0][0][0], np.load(out / "val_images.npy")[0] - mean)

    # a run's dataflow delivers the same pixels as uint8 (a quarter of the bytes); the network
    # subtracts the mean, to the same float32 bits
    from eps_resnet.data.dataflows import get_dataflow, in_graph_mean
    from eps_resnet.training.settings import TrainSettings

    s = TrainSettings(dataset="cifar10", depth=8, variant="standard", out="x", data_dir=str(out),
                      data_workers=1).resolved()
    for split, centred in (("train", x), ("val", batches[0][0])):
        flow = get_dataflow(s, split, 16)
        flow.reset_state()
        raw = next(iter(flow))[0]
        assert raw.dtype == np.uint8
        np.testing.assert_array_equal(raw.astype(np.float32) - in_graph_mean(s), centred)

    # rerun: a no-op that says so
    before = os.path.getmtime(out / "train_images.npy")
    assert main(["prepare", "cifar10", "--out", str(out), "--source", archive,
                 "--md5", md5(archive)]) == 0
    assert "already prepared" in capsys.readouterr().out
    assert os.path.getmtime(out / "train_images.npy") == before


def test_cifar100_archive_and_extracted_folder(tmp_path):
    rng = np.random.RandomState(1)
    archive = make_cifar_archive(str(tmp_path), "cifar100", rng, per_batch=50)
    with tarfile.open(archive) as tar:
        # the extraction filters arrived in 3.11.4 and 3.12; Debian 12's Python 3.11.2 lacks
        # them (the archive is the test's own)
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp_path / "extracted", **safe)
    prepare("cifar100", str(tmp_path / "a"), archive, md5(archive))
    prepare("cifar100", str(tmp_path / "b"), str(tmp_path / "extracted"))
    for split in ("train", "val"):
        np.testing.assert_array_equal(np.load(tmp_path / "a" / f"{split}_labels.npy"),
                                      np.load(tmp_path / "b" / f"{split}_labels.npy"))
    assert read_marker(str(tmp_path / "a"))["classes"] == 100
    assert "restricted unpickler" in read_marker(str(tmp_path / "b"))["checksum"]


def test_malicious_pickle_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    for name in cifar.ARCHIVES["cifar10"][3] + cifar.ARCHIVES["cifar10"][4]:
        (folder / name).write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(DataError, match="refusing to load"):
        prepare("cifar10", str(tmp_path / "out"), str(tmp_path))
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", [2 ** 32 + 3, 3.7, -1, "3"])
def test_labels_that_are_not_class_indices_are_refused_before_any_cast(tmp_path, capsys, bad):
    """An extracted folder whose first label is 2**32 + 3 (int32 would wrap it to class 3), 3.7
    (truncated to 3), -1 or a string: one line naming the batch, nothing prepared."""
    archive = make_cifar_archive(str(tmp_path), "cifar10", np.random.RandomState(4),
                                 bad_labels=[bad])
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():  # (the test's own archive: plain files only)
            (tmp_path / member.name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / member.name).write_bytes(tar.extractfile(member).read())
    out = tmp_path / "out"
    assert main(["prepare", "cifar10", "--out", str(out), "--source",
                 str(tmp_path / "cifar-10-batches-py")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cifar-10-batches-py" in err, err
    expected = (["labels -1 are outside 0-9"] if bad == -1 else
                ["data_batch_1 has labels", "expected integers (class indices)"])
    assert all(part in err for part in expected), err
    assert not out.exists() or not (out / "train_labels.npy").exists()


def test_checksum_mismatch_removes_the_bad_download_and_leaves_nothing(tmp_path):
    rng = np.random.RandomState(2)
    archive = make_cifar_archive(str(tmp_path), "cifar10", rng)
    out = tmp_path / "out"
    (out / "downloads").mkdir(parents=True)
    bad = out / "downloads" / "cifar-10-python.tar.gz"
    bad.write_bytes(open(archive, "rb").read())  # a complete-looking file with the wrong content
    with pytest.raises(DataError) as e:
        prepare("cifar10", str(out))  # expects the published checksum
    msg = str(e.value)
    assert str(bad) in msg and "c58f30108f718f92721af3b95e74349a" in msg and md5(archive) in msg
    assert not bad.exists()
    assert not any(f.endswith(".npy") for _, _, fs in os.walk(out) for f in fs)
    # a supplied source with the wrong checksum: error, and the user's file is left alone
    with pytest.raises(DataError, match="checksum mismatch"):
        prepare("cifar10", str(tmp_path / "out2"), archive, "0" * 32)
    assert os.path.exists(archive) and not (tmp_path / "out2").exists()


def test_offline_without_source_names_the_url_and_the_flag(tmp_path, monkeypatch, capsys):
    # Port 9 on loopback refuses at once: the same failure as a machine without network.
    monkeypatch.setattr(cifar, "URL", "http://127.0.0.1:9/{}")
    assert main(["prepare", "cifar10", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "cannot download http://127.0.0.1:9/cifar-10-python.tar.gz" in err
    assert "--source PATH" in err and "datasets.cifar10.path" in err
    assert not (tmp_path / "c").exists()


def test_truncated_archive_is_a_clear_error(tmp_path):
    rng = np.random.RandomState(3)
    archive = make_cifar_archive(str(tmp_path), "cifar10", rng)
    data = open(archive, "rb").read()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        prepare("cifar10", str(tmp_path / "out"), str(cut), md5(cut))
    assert not (tmp_path / "out").exists()


def write_svhn_mats(folder, rng, counts):
    """SVHN .mat files in the official format 2 (X: 32 x 32 x 3 x N uint8, y: N x 1 with the
    digit 0 written as 10); returns their MD5s and contents."""
    from scipy.io import savemat

    sums, contents = {}, {}
    for split, n in counts.items():
        x = rng.randint(0, 256, (32, 32, 3, n)).astype(np.uint8)
        y = rng.randint(1, 11, (n, 1)).astype(np.uint8)
        y[0] = 10
        savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        sums[split] = md5(folder / f"{split}_32x32.mat")
        contents[split] = (x.transpose(3, 0, 1, 2), y.ravel() % 10)
    return sums, contents


def test_svhn_mat_files_with_extra(tmp_path):
    """train + extra by default (train first, counts in prepared.yaml), train alone from the
    same folder with an epoch of train + extra's steps, and a folder without extra."""
    from eps_resnet.data.dataflows import epoch_steps, get_dataflow
    from eps_resnet.training.settings import TrainSettings

    rng = np.random.RandomState(4)
    sums, mats = write_svhn_mats(tmp_path, rng, {"train": 40, "test": 12, "extra": 50})
    md5s = [a for s, h in sums.items() for a in ("--md5", f"{s}={h}")]
    out = tmp_path / "svhn"
    assert main(["prepare", "svhn", "--out", str(out), "--source", str(tmp_path), *md5s]) == 0
    info = read_marker(str(out))
    assert info["parts"] == {"train": 40, "extra": 50} and info["images"] == {"train": 90, "val": 12}
    images, labels = np.load(out / "train_images.npy"), np.load(out / "train_labels.npy")
    np.testing.assert_array_equal(images[:40], mats["train"][0])
    np.testing.assert_array_equal(images[40:], mats["extra"][0])
    np.testing.assert_array_equal(labels, np.concatenate([mats["train"][1], mats["extra"][1]]))
    assert labels[0] == 0 and labels[40] == 0  # 10 means the digit 0
    np.testing.assert_allclose(np.load(out / "mean.npy"), images.mean(axis=0), atol=1e-3)

    def run(**kw):
        s = TrainSettings(dataset="svhn", depth=8, variant="standard", batch=8, data_dir=str(out),
                          out=str(tmp_path / "run"), **kw).resolved()
        flow = get_dataflow(s, "train", s.batch)
        return s, flow, epoch_steps(s, flow)

    s, flow, (steps, note) = run()
    assert s.svhn_extra is True and len(flow) == steps == 90 // 8 and note is None
    flow.reset_state()
    x, y = next(iter(flow))
    assert x.shape == (8, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert -256 < x.min() and x.max() < 256  # augmented pixels in [0, 255] minus the mean

    s, flow, (steps, note) = run(svhn_extra=False)
    assert len(flow) == 40 // 8 and steps == 90 // 8
    assert "an epoch is 11 steps" in note and "2.20 passes over the train images" in note
    np.testing.assert_allclose(flow.source.mean, mats["train"][0].mean(axis=0), atol=1e-3)
    from eps_resnet.runs.export import input_mean

    np.testing.assert_array_equal(input_mean(s), flow.source.mean)  # exported models subtract it too
    assert len(flow.source.images) == 40

    # the run folder says so: one real epoch on train alone
    assert main(["train", "--dataset", "svhn", "--depth", "8", "--variant", "standard", "--batch", "8",
                 "--epochs", "1", "--no-svhn-extra", "--data-dir", str(out), "--gpus", "0",
                 "--out", str(tmp_path / "run")]) == 0
    record = yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())
    assert record["settings"]["svhn_extra"] is False and record["resolved"]["steps_per_epoch"] == 11
    assert "an epoch is 11 steps" in record["resolved"]["epoch_note"]
    assert json.loads((tmp_path / "run" / "stats.json").read_text())[-1]["global_step"] == 11

    # prepared without extra: a run on train + extra says how to get it; asking for it prepares again
    bare = tmp_path / "bare"
    main(["prepare", "svhn", "--out", str(bare), "--source", str(tmp_path), *md5s, "--no-svhn-extra"])
    assert read_marker(str(bare))["parts"] == {"train": 40}
    with pytest.raises(DataError, match="prepared without extra .*--no-svhn-extra"):
        get_dataflow(TrainSettings(dataset="svhn", depth=8, variant="standard", batch=8,
                                   data_dir=str(bare), out="x").resolved(), "train", 8)
    prepare("svhn", str(bare), str(tmp_path), sums)
    assert read_marker(str(bare))["parts"] == {"train": 40, "extra": 50}


def test_svhn_augmentation_is_the_originals():
    """The deformation against its per-pixel definition; the whole pipeline's ranges."""
    from eps_resnet.data import augment

    rng = np.random.RandomState(0)
    x = rng.uniform(0, 255, (2, 40, 40, 3)).astype(np.float32)
    np.testing.assert_array_equal(augment.gaussian_deform(x, rng, max_shift=0.0), x)
    out = augment.gaussian_deform(x, np.random.RandomState(5))
    offsets = (np.random.RandomState(5).rand(2, 4, 2) - 0.5) * 2 * augment.DEFORM_SHIFT
    for n in range(2):
        for py, px in [(0, 0), (7, 31), (20, 20), (39, 13)]:
            g = [np.exp(-((py / 40 - ay) ** 2 + (px / 40 - ax) ** 2) / augment.DEFORM_SIGMA)
                 for ay, ax in augment.DEFORM_ANCHORS]
            cy = min(max(py + np.dot(g, offsets[n, :, 0]), 0), 39)
            cx = min(max(px + np.dot(g, offsets[n, :, 1]), 0), 39)
            y0, x0 = int(cy), int(cx)
            y1, x1, fy, fx = min(y0 + 1, 39), min(x0 + 1, 39), cy - y0, cx - x0
            want = ((1 - fy) * ((1 - fx) * x[n, y0, x0] + fx * x[n, y0, x1])
                    + fy * ((1 - fx) * x[n, y1, x0] + fx * x[n, y1, x1]))
            np.testing.assert_allclose(out[n, py, px], want, rtol=1e-4, atol=1e-3)
    # a mid-grey digit: brightness +-10 and contrast move it, the black canvas shows at the crop's edge
    grey = np.full((64, 32, 32, 3), 128, np.uint8)
    y = augment.svhn_train(grey, np.random.RandomState(1))
    assert y.shape == (64, 32, 32, 3) and y.dtype == np.float32
    assert y.min() >= 0 and y.max() <= 255
    centre = y[:, 12:20, 12:20]
    assert np.abs(centre - 128).max() <= 10 * 1.2 + 0.2 * 128 + 1
    assert (y[:, :2].reshape(64, -1).min(axis=1) < 60).any()  # some crops reach the canvas


def test_crop_offsets_are_the_originals_randomcrop():
    """tensorpack's RandomCrop of 2017 drew ``0 if diff == 0 else rng.randint(diff)``: offsets 0 to
    diff - 1, so a 32 crop of a 40 canvas (CIFAR's pad-crop, SVHN's canvas) never starts at 8."""
    from eps_resnet.data import augment

    n = 4000
    rows, cols = np.mgrid[1:33, 1:33]
    # channel 0 numbers the rows 1..32, channel 1 the columns; the padding is 0
    x = np.broadcast_to(np.stack([rows, cols], -1), (n, 32, 32, 2)).astype(np.uint8)
    out = augment.pad_crop(x, np.random.RandomState(0))
    # the output's pixel (4, 4) reads padded pixel (dy + 4, dx + 4): image pixel (dy, dx)
    dy, dx = out[:, 4, 4, 0].astype(int) - 1, out[:, 4, 4, 1].astype(int) - 1
    assert set(dy) == set(dx) == set(range(8))
    canvas = augment.pad(x[:, :, :, :1])  # SVHN: a 32 crop of the 40 canvas
    dy = augment.random_crop(canvas, np.random.RandomState(1), 32)[:, 4, 4, 0].astype(int) - 1
    assert set(dy) == set(range(8))
    # no slack: no offset, as the original's `0 if diff == 0`
    assert np.array_equal(augment.random_crop(x[:5], np.random.RandomState(2), 32), x[:5])


@pytest.mark.parametrize("h,w", [(374, 500), (500, 389), (300, 400), (256, 256), (683, 1024)])
def test_imagenet_validation_resize_truncates_as_the_original(h, w):
    """tensorpack 0.2.0's ResizeShortestEdge(256): scale = 256.0 / min(h, w), both edges int()."""
    from eps_resnet.data import imagenet

    img = np.random.RandomState(0).randint(0, 256, (h, w, 3)).astype(np.uint8)
    scale = 256.0 / min(h, w)
    out = imagenet.truncating_resize(256).augment(img)
    assert out.shape == (int(scale * h), int(scale * w), 3)
    if min(h, w) in (374, 389):  # the short edge ends at 255 for these
        assert min(out.shape[:2]) == 255


def test_labels_out_of_range_are_refused_at_prepare(tmp_path, capsys):
    archive = make_cifar_archive(str(tmp_path), "cifar10", np.random.RandomState(0),
                                 bad_labels=(-1, 57))
    out = tmp_path / "cifar10"
    assert main(["prepare", "cifar10", "--out", str(out), "--source", archive,
                 "--md5", md5(archive)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cifar10 train labels -1, 57 are outside 0-9" in err
    assert not out.exists()


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x01
    elif how == "truncate":
        data = data[:len(data) - 64]
    else:
        data = bytearray(b"junk")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name,how", [("train_images.npy", "flip"), ("train_labels.npy", "flip"),
                                      ("val_images.npy", "truncate"), ("mean.npy", "junk")])
def test_damaged_prepared_files_are_refused_before_training(tmp_path, capsys, name, how):
    """A byte flipped, a file cut short, a junk file: one line naming the file and the command
    that rebuilds it, before anything is trained; that command rebuilds it."""
    data = tmp_path / "digits"
    assert main(["prepare", "digits", "--out", str(data)]) == 0
    _damage(data / name, how)
    train = ["train", "--dataset", "digits", "--data-dir", str(data), "--depth", "8", "--variant",
             "standard", "--epochs", "1", "--steps-per-epoch", "1", "--out", str(tmp_path / "run")]
    capsys.readouterr()
    assert main(train) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(data / name) in err and f"run `eps-resnet prepare digits --out {data}`" in err
    assert not (tmp_path / "run").exists()
    assert main(["prepare", "digits", "--out", str(data)]) == 0
    assert "preparing again" in capsys.readouterr().out
    from eps_resnet.data.dataflows import verified_data
    from eps_resnet.training.settings import TrainSettings

    settings = TrainSettings(dataset="digits", data_dir=str(data), depth=8, variant="standard",
                             out=str(tmp_path / "run")).resolved()
    assert name in verified_data(settings)


def test_a_changed_file_whose_time_was_put_back_is_hashed_again(tmp_path, capsys):
    """The verified-files cache: a label changed in place, then its modification time restored
    (`touch -r`), is found by its MD5 all the same: the cache keys on what `touch` cannot set."""
    import numpy as np

    from eps_resnet.data.dataflows import verified_data
    from eps_resnet.data.files import DataError
    from eps_resnet.training.settings import TrainSettings

    data = tmp_path / "digits"
    assert main(["prepare", "digits", "--out", str(data)]) == 0
    settings = TrainSettings(dataset="digits", data_dir=str(data), depth=8, variant="standard",
                             out=str(tmp_path / "run")).resolved()
    verified_data(settings)  # hashed once: the cache now holds every file
    path = data / "train_labels.npy"
    before = os.stat(path)
    labels = np.load(path)
    labels[0] = (labels[0] + 1) % 10
    np.save(path, labels)  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size
    with pytest.raises(DataError, match="train_labels.npy does not match prepared.yaml"):
        verified_data(settings)


@pytest.mark.parametrize("junk", [b"junk", b"\x93NUMPY\x01\x00", "shape", "pickle"])
def test_a_junk_mean_image_is_one_line_before_it_is_used(tmp_path, junk):
    """mean.npy read by evaluate, compress and export (training_mean): checked against
    prepared.yaml first, and, where the marker records no checksum (an older prepare), loaded
    without pickles and checked for its shape."""
    import numpy as np
    import yaml

    from eps_resnet.data.dataflows import training_mean
    from eps_resnet.data.files import DataError
    from eps_resnet.training.settings import TrainSettings

    data = tmp_path / "digits"
    assert main(["prepare", "digits", "--out", str(data)]) == 0
    settings = TrainSettings(dataset="digits", data_dir=str(data), depth=8, variant="standard",
                             out=str(tmp_path / "run")).resolved()
    assert training_mean(settings).shape == (16, 16, 3)
    path = data / "mean.npy"
    if junk == "shape":
        np.save(path, np.zeros((3, 3), np.float32))
    elif junk == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(junk)
    with pytest.raises(DataError, match="mean.npy (has|does not match)"):
        training_mean(settings)
    marker = yaml.safe_load((data / "prepared.yaml").read_text())
    del marker["checksums"], marker["sizes"]
    (data / "prepared.yaml").write_text(yaml.safe_dump(marker))
    with pytest.raises(DataError, match=r"mean.npy (is not a numpy array file|holds a).*expected "
                                        r"the 16x16x3 float mean image"):
        training_mean(settings)


def test_evaluate_and_compress_check_the_files_they_read(tmp_path, capsys):
    data, run = tmp_path / "digits", tmp_path / "run"
    assert main(["prepare", "digits", "--out", str(data)]) == 0
    assert main(["train", "--dataset", "digits", "--data-dir", str(data), "--depth", "8",
                 "--variant", "epsilon", "--epsilon", "10", "--epochs", "1", "--steps-per-epoch",
                 "2", "--batch", "16", "--out", str(run)]) == 0
    record = yaml.safe_load((run / "run.yaml").read_text())
    # run.yaml: the checksums of the files the run read, as the marker has them
    assert record["environment"]["dataset"]["checksums"] == {
        n: read_marker(str(data))["checksums"][n] for n in
        ("train_images.npy", "train_labels.npy", "val_images.npy", "val_labels.npy", "mean.npy")}
    _damage(data / "val_labels.npy", "flip")
    capsys.readouterr()
    for argv in (["evaluate", str(run)], ["compress", str(run), "--out", str(run / "compressed")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "val_labels.npy does not match prepared.yaml" in err, err
    assert not (run / "eval.json").exists() and not (run / "compressed").exists()


def test_junk_marker_is_one_line(tmp_path, capsys):
    data = tmp_path / "digits"
    assert main(["prepare", "digits", "--out", str(data)]) == 0
    (data / "prepared.yaml").write_text("{{{: not yaml")
    assert main(["train", "--dataset", "digits", "--data-dir", str(data), "--depth", "8",
                 "--variant", "standard", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "prepared.yaml is not readable YAML" in err
    assert main(["prepare", "digits", "--out", str(data)]) == 0  # prepared anew
    assert read_marker(str(data))["dataset"] == "digits"


def test_digits_dataset():

    a, b = digits.load(), digits.load()
    for split in ("train", "val"):
        np.testing.assert_array_equal(a[split][0], b[split][0])  # deterministic split
        np.testing.assert_array_equal(a[split][1], b[split][1])
    x, y = a["train"]
    assert x.dtype == np.uint8 and x.shape[1:] == (16, 16, 3)
    assert len(a["train"][1]) + len(a["val"][1]) == 1797
    assert set(np.unique(y)) == set(range(10)) and set(np.unique(a["val"][1])) == set(range(10))
    assert x.max() > 200 and x.min() == 0


def make_imagenet_tree(root, rng, flat_val=False):
    import cv2

    for wnid in ("n00000001", "n00000002"):
        os.makedirs(root / "train" / wnid)
        for i in range(3):
            img = rng.randint(0, 256, (rng.randint(40, 90), rng.randint(40, 90), 3)).astype(np.uint8)
            cv2.imwrite(str(root / "train" / wnid / f"{wnid}_{i}.JPEG"), img)
    os.makedirs(root / "val")
    lines = []
    for i in range(4):
        wnid = f"n0000000{1 + i % 2}"
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        folder = root / "val" if flat_val else root / "val" / wnid
        folder.mkdir(exist_ok=True)
        cv2.imwrite(str(folder / name), rng.randint(0, 256, (70, 50, 3)).astype(np.uint8))
        lines.append(f"{name} {wnid}")
    if flat_val:
        (root / "val" / "val_labels.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("flat_val,lmdb", [(False, False), (True, True)])
def test_imagenet_tree_prepares_and_feeds(tmp_path, caplog, flat_val, lmdb):
    from eps_resnet.data import imagenet

    rng = np.random.RandomState(5)
    make_imagenet_tree(tmp_path / "ilsvrc", rng, flat_val)
    out = tmp_path / "prepared"
    with caplog.at_level(logging.INFO, logger="eps_resnet"):
        info = prepare("imagenet", str(out), str(tmp_path / "ilsvrc"), lmdb=lmdb)
    notes = [r.getMessage() for r in caplog.records]
    assert info["images"] == {"train": 6, "val": 4} and info["classes"] == 2
    assert any("2 classes (ILSVRC-2012 has 1000)" in n for n in notes)
    assert (out / "train.lmdb").exists() == lmdb
    for split, batch in (("train", 4), ("val", 3)):
        df = imagenet.dataflow(str(out), info, split, batch, workers=1, size=64)
        df.reset_state()
        # training streams without end; validation is one pass
        batches = list(itertools.islice(df, 3)) if split == "train" else list(df)
        x, y = batches[0]
        assert x.shape == (batch, 64, 64, 3) and x.dtype == np.uint8 and y.dtype == np.int32
        if split == "val":
            assert sorted(np.concatenate([b[1] for b in batches]).tolist()) == [0, 0, 1, 1]


def test_imagenet_augmentation_value_ranges():
    """The original's colour augmentation on generated images: additive brightness within
    +-30 (not a scale), the same shift in every channel of a grey image (the lighting term is
    unscaled, so below one grey level), crops resized to 224; validation 256 then 224."""
    from eps_resnet.data import imagenet
    from eps_resnet.data.ordered import rng_for

    aug = [imagenet.augmentors(train) for train in (True, False)]
    from tensorpack.dataflow import imgaug

    train, val = (imgaug.AugmentorList(a) for a in aug)
    grey = np.full((300, 200, 3), 200, np.uint8)
    shifts = []
    for k in range(60):
        imagenet._reseed(train, rng_for(0, 1, k))
        out = train.augment(grey)
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8
        # contrast and saturation leave a grey image alone; brightness moves it by at most 30
        assert int(out.max()) - int(out.min()) <= 1
        shifts.append(float(out.mean()) - 200)
    # (each step returns uint8, truncating: up to two grey levels besides the shift)
    assert max(np.abs(shifts)) <= 32 and max(np.abs(shifts)) > 15
    assert max(shifts) <= 56  # clipped at 255
    rng = np.random.RandomState(2)
    photo = rng.randint(0, 256, (300, 200, 3)).astype(np.uint8)
    assert val.augment(photo).shape == (224, 224, 3)
    assert imagenet.augmentors(False, 64)[0].size == 73  # shortest edge 256/224 of the crop


def test_channel_contrast_is_tensorpacks_contrast():
    from tensorpack.dataflow import imgaug

    from eps_resnet.data.imagenet import channel_contrast

    img = np.random.RandomState(7).randint(0, 256, (50, 40, 3)).astype(np.uint8)
    ours, theirs = channel_contrast(), imgaug.Contrast((0.8, 1.2), clip=False)
    for r in (0.8, 1.0, 1.13, 1.2):
        diff = ours._augment(img, r).astype(int) - theirs._augment(img, r).astype(int)
        assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 0.01  # float rounding only


def test_imagenet_normalisation_is_the_originals():
    """The original read BGR and normalised with the RGB statistics in that order; ours takes
    RGB, so the same numbers come out with the channels in RGB order."""
    from eps_resnet.models.resnet import IMAGENET_MEAN, IMAGENET_STD

    rgb = np.random.RandomState(3).randint(0, 256, (4, 4, 3)).astype(np.float64)
    original = (rgb[..., ::-1] / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    ours = (rgb / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(ours, original[..., ::-1])


def test_imagenet_problems_are_reported_before_training(tmp_path):
    rng = np.random.RandomState(6)
    root = tmp_path / "ilsvrc"
    make_imagenet_tree(root, rng, flat_val=True)
    (root / "val" / "val_labels.txt").unlink()
    (root / "train" / "n00000002" / "broken.JPEG").write_bytes(b"not an image")
    with pytest.raises(DataError) as e:
        prepare("imagenet", str(tmp_path / "out"), str(root))
    assert "val_labels.txt is missing" in str(e.value)
    assert "1 unreadable image(s): train/n00000002/broken.JPEG" in str(e.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="cannot be downloaded"):
        prepare("imagenet", str(tmp_path / "out"))


def test_training_on_an_unprepared_dataset_points_at_prepare(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["train", "--dataset", "cifar10", "--depth", "8", "--variant", "standard",
               "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "run")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cifar10 is not prepared" in err and "eps-resnet prepare cifar10 --out" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_training_on_prepared_digits(tmp_path):
    import json

    prepare("digits", str(tmp_path / "digits"))
    rc = main(["train", "--dataset", "digits", "--data-dir", str(tmp_path / "digits"), "--depth", "8",
               "--variant", "standard", "--epochs", "2", "--batch", "64",
               "--out", str(tmp_path / "run")])
    assert rc == 0
    stats = json.load(open(tmp_path / "run" / "stats.json"))
    assert [s["epoch_num"] for s in stats if "val_error" in s] == [1, 2]
    assert stats[-1]["global_step"] == 2 * (1433 // 64)


def toy_reader(dataset, out, source, md5, extra):
    """A reader of the dataset registry: three classes of plain colours with noise."""
    rng = np.random.RandomState(0)

    def split(n):
        labels = np.arange(n) % 3
        images = rng.randint(0, 60, (n, 16, 16, 3)) + 60 * np.eye(3, dtype=int)[labels][:, None, None]
        return images.astype(np.uint8), labels.astype(np.int32)

    return {"train": split(48), "val": split(12)}, {"source": "generated by the test"}


def test_a_dataset_added_through_the_registry_prepares_and_trains(tmp_path, capsys):
    from eps_resnet.data import DATASETS, DatasetInfo, preparable, register_dataset
    from eps_resnet.training.runfolder import read_stats

    register_dataset(DatasetInfo("toy", 3, 16, {"cifar": "digits"}, "three colours", 48, 12,
                                 reader=f"{__name__}:toy_reader"))
    try:
        assert "toy" in preparable()
        data, out = tmp_path / "toy", tmp_path / "run"
        assert main(["prepare", "toy", "--out", str(data)]) == 0
        assert read_marker(str(data))["images"] == {"train": 48, "val": 12}
        assert main(["train", "--dataset", "toy", "--depth", "8", "--variant", "standard",
                     "--data-dir", str(data), "--out", str(out), "--epochs", "1",
                     "--steps-per-epoch", "1", "--batch", "8", "--data-workers", "1"]) == 0
        stats = read_stats(str(out))
        assert [s["global_step"] for s in stats] == [1] and 0 <= stats[0]["val_error"] <= 1
    finally:
        DATASETS.pop("toy")
    assert main(["prepare", "toy", "--out", str(tmp_path / "x")]) == 2  # gone again
    assert "cannot prepare 'toy'" in capsys.readouterr().err


def test_the_registrys_image_counts_are_those_its_readers_give():
    from eps_resnet.data import DATASETS

    assert DATASETS["svhn"].train_images == svhn.PUBLISHED["train"] + svhn.PUBLISHED["extra"]
    assert DATASETS["svhn"].val_images == svhn.PUBLISHED["test"]
    splits, _ = digits.prepare("digits", "", None)
    assert (DATASETS["digits"].train_images, DATASETS["digits"].val_images) == \
        (len(splits["train"][1]), len(splits["val"][1]))
