"""Run folders that survive damage, concurrency and bad values: each case done for real to a real
run folder (files deleted, truncated, garbled; two processes racing; a trainer killed)."""
import dataclasses
import glob
import json
import os
import shutil
import signal
import stat
import subprocess
import time

import pytest
import yaml

from eps_resnet.cli import main
from eps_resnet.training.settings import SettingsError, TrainSettings
from helpers import eps_resnet_cmd

pytestmark = pytest.mark.slow

STEPS = 5
ARGS = ["train", "--dataset", "synthetic", "--depth", "14", "--variant", "epsilon", "--epsilon",
        "2.5", "--batch", "16", "--steps-per-epoch", str(STEPS), "--seed", "1"]


def train(out, epochs=4, *extra):
    return main([*ARGS, "--epochs", str(epochs), *extra, "--out", str(out)])


def train_apart(out, epochs=4):
    """``train`` in a process of its own (a run that fails on a full disk leaves its log file
    there, which the test process must not keep writing to)."""
    return subprocess.run(eps_resnet_cmd(*ARGS, "--epochs", str(epochs), "--out", out),
                          capture_output=True, text=True, timeout=600)


def epochs_of(run):
    with open(os.path.join(run, "stats.json")) as f:
        return [s["epoch_num"] for s in json.load(f) if "val_error" in s]


def aside(run):
    return sorted(n for n in os.listdir(run) if ".damaged-" in n)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    out = tmp_path_factory.mktemp("pristine") / "R"
    assert train(out) == 0
    assert epochs_of(out) == [1, 2, 3, 4]
    return out


@pytest.fixture
def run(pristine, tmp_path):
    copy = tmp_path / "R"
    shutil.copytree(pristine, copy)
    return copy


def test_missing_index_file_of_the_newest_checkpoint(run, capsys):
    (run / "model-20.index").unlink()
    assert train(run) == 0
    err = capsys.readouterr().err
    assert "set aside model-20 (its .index file is missing); resuming from model-15" in err
    assert [n.split(".damaged-")[0] for n in aside(run)] == ["model-20.data-00000-of-00001"]
    assert epochs_of(run) == [1, 2, 3, 4]  # epoch 4 trained again, once
    for step in (5, 10, 15, 20):
        assert (run / f"model-{step}.index").exists()


@pytest.mark.parametrize("damage", ["delete", "text", "binary"])
def test_missing_or_damaged_checkpoint_index_is_rebuilt(run, capsys, damage):
    index = run / "checkpoint"
    if damage == "delete":
        index.unlink()
    elif damage == "text":
        index.write_text("this is not a checkpoint index\n")
    else:
        index.write_bytes(b"\xff\xfe\x00junk")
    before = (run / "stats.json").read_bytes()
    assert train(run) == 0
    out = capsys.readouterr()
    assert "already finished" in out.out
    assert "rebuilt from the model files (model-20)" in out.err
    assert (run / "stats.json").read_bytes() == before  # nothing retrained, nothing lost
    assert 'model_checkpoint_path: "model-20"' in index.read_text()
    # compress and evaluate read the repaired folder too
    assert main(["evaluate", str(run), "--limit", "32"]) == 0


def test_truncated_newest_data_file_then_extending_the_run(run, capsys):
    data = run / "model-20.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    assert train(run, 5) == 0
    err = capsys.readouterr().err
    assert "set aside model-20 (it does not read back" in err
    assert epochs_of(run) == [1, 2, 3, 4, 5]
    assert yaml.safe_load((run / "run.yaml").read_text())["status"] == "finished"


def test_folder_whose_checkpoints_all_fail_is_refused_and_left_alone(run, capsys):
    for data in glob.glob(str(run / "model-*.data-*")):
        with open(data, "r+b") as f:
            f.truncate(100)
    names = sorted(os.listdir(run))
    assert train(run) == 2
    err = capsys.readouterr().err.strip()
    assert "holds checkpoint files but none restores" in err and len(err.splitlines()) == 1
    assert sorted(os.listdir(run)) == names


def test_unreadable_stats_is_set_aside_and_rebuilt_from_the_log(run, capsys):
    good = epochs_of(run)
    original = json.loads((run / "stats.json").read_text())
    (run / "stats.json").write_text('[{"epoch_num": 1, "val_err')
    # compress names the file in one line instead of a JSONDecodeError traceback
    assert main(["compress", str(run), "--out", str(run / "compressed")]) == 2
    err = capsys.readouterr().err.strip()
    # (a note on the checkpoint it read, then the error)
    assert "stats.json is not valid JSON" in err.splitlines()[-1] and "Traceback" not in err
    assert not (run / "compressed").exists()
    assert train(run, 5) == 0
    err = capsys.readouterr().err
    assert "stats.json is not valid JSON" in err and "rebuilt 4 epoch(s) from the log" in err
    assert any(n.startswith("stats.json.damaged-") for n in aside(run))
    assert epochs_of(run) == good + [5]
    stats = json.loads((run / "stats.json").read_text())
    assert all("val_error" in s and "discarded_cnt" in s for s in stats)
    # the log prints the gated blocks on one line per epoch, and the rebuild reads them back
    log = (run / "log.log").read_text()
    assert log.count("is_discarded per block (") >= 1 and "res1.0/is_discarded:" not in log
    assert all(f"{b}/is_discarded" in s for s in stats[:4] for b in ("res1.0", "res2.1", "res3.1"))
    # the log prints every value exactly: the rebuilt epochs are the lost file's numbers
    assert stats[:4] == original


def test_a_deleted_stats_file_is_rebuilt_or_its_loss_said(run, capsys):
    """A finished run whose stats.json was deleted gets it back from the log on a rerun; an
    unfinished one resumes with every epoch; with the log gone too, the run is refused in one
    line instead of resuming into a history of only the later epochs."""
    original = json.loads((run / "stats.json").read_text())
    (run / "stats.json").unlink()
    assert train(run) == 0
    assert "stats.json is missing; rebuilt 4 epoch(s) from the log" in capsys.readouterr().err
    assert json.loads((run / "stats.json").read_text()) == original
    (run / "stats.json").write_text(json.dumps(original[:2]))
    assert train(run, 5) == 0
    assert epochs_of(run) == [1, 2, 3, 4, 5]
    (run / "stats.json").unlink()
    for log in glob.glob(str(run / "log.log*")):
        os.unlink(log)
    capsys.readouterr()
    assert train(run, 6) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith("stats.json is missing and the log has no metrics of epoch(s) 1-5 "
                        "either: the run's history is lost; train it again into a new --out"), err
    assert not (run / "stats.json").exists()
    assert yaml.safe_load((run / "run.yaml").read_text())["status"] == "finished"


def test_stale_checkpoint_index_is_named_and_the_newest_checkpoint_used(run, pristine, capsys):
    (run / "checkpoint").write_text('model_checkpoint_path: "model-10"\n'
                                    'all_model_checkpoint_paths: "model-10"\n')
    assert main(["evaluate", str(run), "--limit", "32"]) == 0
    err = capsys.readouterr().err
    assert "the checkpoint index names model-10; using model-20, the newest that reads back" in err
    assert main(["evaluate", str(pristine), "--limit", "32", "--out", str(run / "p.json")]) == 0
    assert "using checkpoint model-20" in capsys.readouterr().err
    ours, theirs = (json.loads((run / name).read_text()) for name in ("eval.json", "p.json"))
    assert ours["checkpoint"].endswith("model-20") and ours["val_error"] == theirs["val_error"]


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of its own (resized with ``remount(size)``), the way a scratch quota fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()

    def remount(size: int, first=False):
        options = f"size={size}" if first else f"remount,size={size}"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], check=True)

    remount(64 << 10, first=True)
    try:
        yield mount, remount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_the_run_and_a_rerun_after_room_is_made_resumes(pristine, small_disk,
                                                                          capsys):
    mount, remount = small_disk
    sizes = {n: os.path.getsize(pristine / n) for n in os.listdir(pristine)}
    checkpoint = sum(v for n, v in sizes.items() if n.startswith(f"model-{STEPS}."))
    rest = sum(v for n, v in sizes.items() if n.startswith(("graph-", "events.", "log.", "run.")))
    # room for the graph, the log and two checkpoints: the third cannot be written
    remount(rest + int(2.5 * checkpoint))
    out = mount / "R"
    r = train_apart(out)
    assert r.returncode == 2, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()[-1]
    assert "could not be written (No space left on device)" in err, err
    record = yaml.safe_load((out / "run.yaml").read_text())
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    left = sorted(os.listdir(out))
    assert not [n for n in left if "tmp" in n or "_temp" in n], left  # nothing half-written
    kept = sorted(int(n[6:-6]) for n in left if n.startswith("model-") and n.endswith(".index"))
    assert kept and kept[-1] < 4 * STEPS
    # the kept checkpoints read back and the index names the newest
    from eps_resnet.training.runfolder import latest_checkpoint, read_checkpoint
    assert latest_checkpoint(str(out))[1] == kept[-1]
    for step in kept:
        read_checkpoint(str(out / f"model-{step}"))
    remount(rest + 6 * checkpoint)  # room is made
    r = train_apart(out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert main(["compare", str(pristine), str(out)]) == 0, capsys.readouterr().out


def test_a_disk_too_full_for_the_first_save_fails_the_run(small_disk, capsys):
    mount, _ = small_disk  # 64 KiB: the graph's definition does not fit
    out = mount / "R"
    r = train_apart(out)
    assert r.returncode == 2, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()[-1]
    assert "graph-<time>.meta" in err and "No space left on device" in err, err
    assert yaml.safe_load((out / "run.yaml").read_text())["status"] == "failed"
    assert not [n for n in os.listdir(out) if "tmp" in n], os.listdir(out)
    assert "Traceback" not in r.stderr and "Logging error" not in r.stderr


@pytest.mark.parametrize("kib", [4, 8])
def test_a_disk_with_no_room_for_the_records_names_the_file(small_disk, kib):
    """A few KiB: no room for run.yaml, or for the log and the graph. One line naming the file
    that could not be written; no traceback of the log's handler."""
    mount, remount = small_disk
    remount(kib << 10)
    r = train_apart(mount / "R")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "Logging error" not in r.stderr, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()[-1]
    assert "No space left on device" in err and str(mount / "R") in err, err


def test_a_second_process_on_the_same_folder_is_refused(run, tmp_path, capsys):
    first = subprocess.Popen(eps_resnet_cmd(*ARGS, "--epochs", "200", "--out", run),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        # the lock names its holder (the copied run folder may hold an earlier holder's name)
        lock = run / ".lock"
        while time.time() < deadline and f"process {first.pid} " not in (
                lock.read_text() if lock.exists() else ""):
            time.sleep(0.05)
        time.sleep(0.5)
        for argv in (eps_resnet_cmd(*ARGS, "--epochs", "200", "--out", run),
                     eps_resnet_cmd("evaluate", run)):
            second = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            assert second.returncode == 2, second.stderr[-2000:]
            assert f"is in use by process {first.pid} (eps-resnet train" in second.stderr
        # readers writing elsewhere too: they would read a checkpoint training may replace
        outs = tmp_path / "outs"
        outs.mkdir()
        for argv in (["evaluate", str(run), "--out", str(outs / "e.json")],
                     ["compress", str(run), "--out", str(outs / "c")],
                     ["export", str(run), "--out", str(outs / "x")]):
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert err.endswith(f"is in use by process {first.pid} (eps-resnet train, since "
                                f"{err.split('since ')[1].split(')')[0]}); wait for it to finish "
                                f"or stop it (eps-resnet {argv[0]} reads a run only while "
                                "nothing writes it)"), err
            assert len(err.splitlines()) == 1 and not os.listdir(outs)
        assert first.poll() is None  # the first one goes on
    finally:
        first.kill()
        first.wait()
    # the lock died with its process: the folder can be used again at once
    assert main(["evaluate", str(run), "--limit", "16"]) == 0


@pytest.mark.parametrize("depth", [8, 20])
def test_run_yaml_that_does_not_describe_the_checkpoint_is_refused(run, capsys, depth):
    record = yaml.safe_load((run / "run.yaml").read_text())
    record["settings"]["depth"] = depth
    (run / "run.yaml").write_text(yaml.safe_dump(record))
    for argv in (["evaluate", str(run)], ["compress", str(run), "--out", str(run / "c")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()  # (a note on the checkpoint read, then the error)
        assert "Traceback" not in err, err
        err = err.splitlines()[-1]
        assert "does not fit the network of" in err, err
        assert ("unused" in err) if depth == 8 else ("missing" in err)
    assert not (run / "eval.json").exists() and not (run / "c").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_epsilon_is_refused(tmp_path, capsys, value):
    assert main([*ARGS[:7], f"--epsilon={value}", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a finite number" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_out_that_is_a_file_or_inside_one(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for out, message in ((f, "is a file; expected a folder"), (f / "run", "which is a file")):
        assert main([*ARGS, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_files_follow_the_umask(pristine, tmp_path):
    from eps_resnet.atomic import write_text

    old = os.umask(0o027)
    try:
        write_text(str(tmp_path / "a.txt"), "x")
        assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o640
        os.umask(0o002)
        write_text(str(tmp_path / "b.txt"), "x")
        assert stat.S_IMODE(os.stat(tmp_path / "b.txt").st_mode) == 0o664
        os.umask(0o022)
        out = tmp_path / "R"
        shutil.copytree(pristine, out)
        assert train(out, 5) == 0
        for name in ("run.yaml", "checkpoint"):
            assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o644, name
        assert main(["parse", str(out), "--out", str(tmp_path / "runs.csv")]) == 0
        assert main(["plot", "lr", "--in", str(tmp_path / "runs.csv"), "--out",
                     str(tmp_path / "lr.png")]) == 0
        for name in ("runs.csv", "lr.png"):
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name
    finally:
        os.umask(old)


def test_empty_results_are_an_error(tmp_path, capsys):
    from eps_resnet.results.parse import COLUMNS

    csv = tmp_path / "runs.csv"
    csv.write_text(",".join(COLUMNS) + "\n")
    assert main(["plot", "val-error", "--in", str(csv), "--out", str(tmp_path / "x.png")]) == 2
    assert "nothing to plot" in capsys.readouterr().err
    assert main(["summarize", "--in", str(csv), "--out", str(tmp_path / "s.csv")]) == 2
    assert "nothing to summarise" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "s.csv").exists()


def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def _digits_trainer(tmp_path, steps: int, epochs: int, workers: int, **popen):
    """A depth-8 digits run into tmp_path/run, started in the background (stdout discarded):
    (the process, the run folder)."""
    data = tmp_path / "digits"
    assert main(["prepare", "digits", "--out", str(data)]) == 0
    run = tmp_path / "run"
    return subprocess.Popen(eps_resnet_cmd(
        "train", "--dataset", "digits", "--data-dir", data, "--depth", "8", "--variant", "standard",
        "--batch", "16", "--steps-per-epoch", str(steps), "--epochs", str(epochs),
        "--data-workers", str(workers), "--out", run), stdout=subprocess.DEVNULL, **popen), run


#: Signals sent to a trainer with a data worker at random moments of its life, from start-up to
#: shutdown (issue: nothing hangs, nothing lies, the rerun resumes to the same bits).
SIGNAL_TRIES = 20
STOPS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def _catches(pid, signum) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its SigCgt mask in /proc)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    except (OSError, StopIteration):
        return False
    return bool(int(mask, 16) >> (signum - 1) & 1)


def _stop_at(argv, moment, signum):
    """Run ``argv`` in a process group of its own and send ``signum`` to the group at
    ``moment`` seconds unless it ended first: (exit status, stderr, whether it was signalled)."""
    started = time.time()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        # not before the command's first line (its SIGTERM handler): before that, the
        # interpreter's own start-up meets the signal, which is Python's business
        while proc.poll() is None and not _catches(proc.pid, signal.SIGTERM):
            time.sleep(0.002)
        try:
            return proc.wait(timeout=max(0, moment - (time.time() - started))), \
                proc.stderr.read(), False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signum)
        try:
            err = proc.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 10 s after {signal.Signals(signum).name} at {moment:.2f} s")
        return proc.returncode, err, True
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _stop_and_resume(argv, runs, reference, tries, rng, signums):
    """``tries`` signals at random moments, each to a new trainer of the run in ``runs``/runN,
    which is compared with ``reference`` once finished (and a new run started); the last one is
    finished without a signal. Returns the messages of what went wrong."""
    span, chain, wrong = reference[1], 0, []
    for i in range(tries):
        run, signum, moment = runs / f"run{chain}", signums[i % 3], rng.uniform(0, span)
        what = f"{runs.name} try {i}: {signal.Signals(signum).name} at {moment:.2f} s"
        code, err, signalled = _stop_at([*argv, run], moment, signum)
        record = (yaml.safe_load((run / "run.yaml").read_text())
                  if (run / "run.yaml").exists() else {})
        status = record.get("status")
        # once the run is recorded finished, the interpreter's own shutdown may end by the
        # signal itself (the shell's status is 128+N all the same), or the process may have
        # ended just before the signal came
        allowed = {128 + signum, -signum, 0} if status == "finished" else {128 + signum}
        last = err.strip().splitlines()[-1] if err.strip() else ""
        if status not in (None, "interrupted", "finished"):
            wrong.append(f"{what}: run.yaml says {status} ({record.get('error')}); exit {code}, "
                         f"{err[-1500:]}")
        elif code not in (allowed if signalled else {0}) or "Traceback" in err:
            wrong.append(f"{what}: exit {code}, {err[-1500:]}")
        elif status == "interrupted" and last != (f"eps-resnet train: stopped by "
                                                  f"{signal.Signals(signum).name} (run the same "
                                                  "command again to resume)"):
            wrong.append(f"{what}: {last}")
        if status == "finished":
            if main(["compare", str(reference[0]), str(run)]) != 0:
                wrong.append(f"{what}: {run} differs from the uninterrupted run")
            chain += 1
    run = runs / f"run{chain}"
    if run.exists():
        if subprocess.run([*argv, run], capture_output=True).returncode != 0 or \
                main(["compare", str(reference[0]), str(run)]) != 0:
            wrong.append(f"{run} did not finish with the bits of the uninterrupted run")
    return wrong


def test_signals_at_random_moments_end_cleanly_and_resume_to_the_same_bits(tmp_path, capsys):
    """SIGTERM, SIGHUP and SIGINT to the process group of a trainer with a data worker, each at
    a random moment of a run (start-up, an epoch, validation, a checkpoint, shutdown): it ends
    within 10 s with 128+N and one line, run.yaml never says running, and the runs so stopped
    and resumed end with the bits of an uninterrupted run. Two chains of tries run side by
    side (one thread each), for time."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    data = tmp_path / "digits"
    assert main(["prepare", "digits", "--out", str(data)]) == 0
    argv = eps_resnet_cmd("train", "--dataset", "digits", "--data-dir", data, "--depth", "8",
                          "--variant", "epsilon", "--epsilon", "2.5", "--batch", "16",
                          "--steps-per-epoch", "5", "--epochs", "3", "--data-workers", "1",
                          "--threads", "1", "--out")
    started = time.time()
    assert subprocess.run([*argv, tmp_path / "reference"], capture_output=True).returncode == 0
    reference = (tmp_path / "reference", time.time() - started)
    seed = int.from_bytes(os.urandom(4), "little")
    chains = [(tmp_path / "a", random.Random(seed)), (tmp_path / "b", random.Random(seed + 1))]
    with ThreadPoolExecutor(2) as pool:
        found = pool.map(lambda c: _stop_and_resume(argv, c[0], reference, SIGNAL_TRIES // 2,
                                                    c[1], (c[0].mkdir(),) and STOPS), chains)
        wrong = [w for ws in found for w in ws]
    capsys.readouterr()
    assert not wrong, f"seed {seed}: " + "\n".join(wrong)


def _workers_of(trainer, count=2, timeout=120):
    deadline, workers = time.time() + timeout, []
    while time.time() < deadline and len(workers) < count:
        workers = [p for p in _children(trainer.pid)
                   if "python" in open(f"/proc/{p}/cmdline").read()]
        time.sleep(0.2)
    assert len(workers) >= count, "the trainer started no data workers"
    return workers


def test_a_dead_data_worker_fails_the_run_and_names_it(tmp_path):
    """The pool replaces a worker that dies, and the batch it was computing never arrives (a
    worker killed while holding the pool's task lock wedges the pool): the run must fail,
    saying so, not wait forever nor end as if finished."""
    trainer, run = _digits_trainer(tmp_path, 100000, 1, 2, stderr=subprocess.PIPE, text=True)
    try:
        victim = _workers_of(trainer)[0]
        time.sleep(2)
        os.kill(victim, signal.SIGKILL)
        err = trainer.communicate(timeout=120)[1]
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"eps-resnet train: error: data worker process {victim} ended "
                           "(killed by SIGKILL"), last
    record = yaml.safe_load((run / "run.yaml").read_text())
    assert record["status"] == "failed" and f"process {victim} ended" in record["error"]


def test_data_workers_end_when_their_trainer_is_killed(tmp_path):
    trainer, _ = _digits_trainer(tmp_path, 2000, 1, 2, stderr=subprocess.DEVNULL)
    try:
        workers = _workers_of(trainer)
        time.sleep(2)
        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
        deadline = time.time() + 20
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "data workers outlived their trainer"
    finally:
        if trainer.poll() is None:
            trainer.kill()


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_left_alone(tmp_path, capsys):
    """A `.lock` planted as a symbolic link (to a file of the user's): training, which holds its
    folder through that file, stops in one line naming it instead of overwriting the target."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(target)
    assert main(["train", "--dataset", "synthetic", "--depth", "8", "--variant", "standard",
                 "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ".lock is a symbolic link" in err, err
    assert target.read_text() == "keep me\n"


def test_a_record_written_before_a_setting_existed_resumes_with_its_default(tmp_path):
    from eps_resnet.training.runfolder import check_same_run

    settings = TrainSettings("synthetic", 8, "epsilon", str(tmp_path), epsilon=2.0).resolved()
    record = {k: v for k, v in settings.to_dict().items() if k != "gate"}  # before --gate
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"settings": record}))
    check_same_run(settings)
    with pytest.raises(SettingsError, match="gate: 'strict_identity' there, 'other' now"):
        check_same_run(dataclasses.replace(settings, gate="other"))
