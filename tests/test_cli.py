"""The command line documents itself: a version, a description for every subcommand, help for
every flag (with its default where it has one)."""
import argparse
import os

import pytest

from eps_resnet import __version__
from eps_resnet.cli import build_parser, main


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert capsys.readouterr().out.strip() == f"eps-resnet {__version__}"


def test_every_subcommand_and_flag_is_documented():
    missing = []
    for name, sub in subparsers().items():
        if not (sub.description or "").strip():
            missing.append(f"{name}: no description")
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = action.option_strings[0] if action.option_strings else action.dest
            if not (action.help or "").strip():
                missing.append(f"{name} {flag}: no help")
            elif action.default not in (None, False, argparse.SUPPRESS, []) and \
                    "default" not in action.help.lower() and "%(default)" not in action.help:
                missing.append(f"{name} {flag}: default {action.default!r} not said")
    assert not missing, "\n".join(missing)


SYNTHETIC = ["train", "--dataset", "synthetic", "--depth", "8", "--variant", "standard"]


@pytest.mark.parametrize("flags,message", [
    (["--seed", "-1"], "--seed -1 is out of range; expected an integer from 0 to 4294967295"),
    (["--seed", "4294967296"], "--seed 4294967296 is out of range"),
    (["--image-size", "0"], "--image-size 0 is out of range; expected 16 to 1024"),
    (["--image-size", "100000"], "--image-size 100000 is out of range; expected 16 to 1024"),
    (["--classes", "0"], "--classes 0 is out of range; expected 2 to 100,000"),
    (["--classes", "4294967299"], "--classes 4294967299 is out of range"),
])
def test_out_of_range_flags_are_one_line(tmp_path, capsys, flags, message):
    assert main([*SYNTHETIC, *flags, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text", ["run: [unclosed", "- a list\n- not a mapping\n",
                                  "settings: {depth: 8, colour: blue}\n",
                                  "settings: {dataset: synthetic, depth: [8], variant: standard, "
                                  "out: x}\n"])
def test_junk_run_yaml_is_one_line(tmp_path, capsys, text):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.yaml").write_text(text)
    for argv in ([*SYNTHETIC, "--out", str(run)], ["evaluate", str(run)],
                 ["evaluate", str(tmp_path)]):
        if argv[-1] == str(tmp_path):  # a compressed model folder with a junk record
            (tmp_path / "compressed.yaml").write_text(text)
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        if "colour" not in text:  # (settings of an unknown key: "belongs to a different configuration")
            assert ".yaml" in err, err


def billion_laughs() -> str:
    """Nine levels of nine aliases each: 9**9 strings once expanded, 90 lines of YAML."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines + ["settings: *a9", "checksums: *a9", "experiments: *a9"]) + "\n"


def test_yaml_whose_aliases_expand_too_far_is_one_line_naming_the_file(tmp_path, capsys):
    """As run.yaml, compressed.yaml, prepared.yaml and a workflow config: refused while composed,
    before the expansion is built (which took the commands past 4 GB)."""
    import resource

    run, data = tmp_path / "run", tmp_path / "digits"
    for folder, name in ((run, "run.yaml"), (tmp_path, "compressed.yaml"),
                         (data, "prepared.yaml"), (tmp_path, "config.yaml")):
        folder.mkdir(exist_ok=True)
        (folder / name).write_text(billion_laughs())
    commands = {"run.yaml": [*SYNTHETIC, "--out", str(run)], "compressed.yaml": ["evaluate", str(tmp_path)],
                "prepared.yaml": ["train", "--dataset", "digits", "--depth", "8", "--variant",
                                  "standard", "--data-dir", str(data), "--out", str(tmp_path / "r")],
                "config.yaml": ["check-config", str(tmp_path / "config.yaml")]}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, argv in commands.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and name in err and "aliases are expanded" in err, err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_non_numeric_values_in_a_parsed_csv_are_one_line(tmp_path, capsys):
    from eps_resnet.results.parse import COLUMNS

    for column, bad in (("value", "0.5x"), ("epoch", "three")):
        row = {c: "" for c in COLUMNS} | {"run": "r", "metric": "val_error", "epoch": "1",
                                         "value": "0.5", column: bad}
        csv = tmp_path / f"{column}.csv"
        csv.write_text(",".join(COLUMNS) + "\n" + ",".join(row[c] for c in COLUMNS) + "\n")
        for kind in (["plot", "val-error"], ["summarize"]):
            assert main([*kind, "--in", str(csv), "--out", str(tmp_path / "x.png")]) == 2
            err = capsys.readouterr().err.strip()
            assert err.endswith(f"{csv}, line 2: {column} {bad!r} is not a number; expected a CSV "
                                "written by `eps-resnet parse`"), err


def test_ctrl_c_while_the_command_imports_is_one_line(tmp_path):
    """SIGINT while `eps-resnet train` is still importing TensorFlow: no traceback."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "eps_resnet.cli", *SYNTHETIC, "--out",
                             str(tmp_path / "run")], stderr=subprocess.PIPE, text=True)
    # within TensorFlow's import: once its library is mapped (a fixed delay could land in
    # Python's own start-up on a cold disk cache, before the command runs)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        with open(f"/proc/{proc.pid}/maps") as f:
            if "libtensorflow" in f.read():
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("eps-resnet")
    assert "stopped by SIGINT" in err.strip().splitlines()[-1]


def test_the_cuda_noise_filter_drops_only_its_lines(capfd):
    from eps_resnet.compat import _NO_DRIVER_LINES, _stderr_without

    with _stderr_without(_NO_DRIVER_LINES):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1.2 1 cudart_stub.cc:31] Could not find cuda drivers on your machine.\n"
                    b"E0000 00:00:1.3 1 oom.cc:7] a real error\n"
                    b"E0000 00:00:1.4 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n")
    assert capfd.readouterr().err == "E0000 00:00:1.3 1 oom.cc:7] a real error\n"


def test_a_name_that_is_not_utf8_is_one_line_before_anything_is_made(tmp_path):
    """An --out whose name holds a byte of another encoding: refused before any folder is made
    (TensorFlow would fail writing the first checkpoint, leaving a run folder behind)."""
    import os
    import subprocess
    import sys

    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/r\xfcn")
    proc = subprocess.run([sys.executable, "-m", "eps_resnet.cli", *SYNTHETIC, "--out", out],
                          capture_output=True, text=True, errors="replace")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().endswith("holds a byte that is not UTF-8; expected UTF-8 file and "
                                        "folder names (TensorFlow and the run records take no "
                                        "other): rename it"), proc.stderr[-2000:]
    assert os.listdir(tmp_path) == []


def test_a_cut_csv_is_refused_and_non_finite_values_are_named_and_left_out(tmp_path, capsys):
    from eps_resnet.results.parse import COLUMNS

    def row(epoch, value):
        values = {c: "" for c in COLUMNS} | {"run": "r", "metric": "val_error", "epoch": epoch,
                                             "value": value}
        return ",".join(values[c] for c in COLUMNS) + "\n"

    csv = tmp_path / "r.csv"
    whole = ",".join(COLUMNS) + "\n" + row("1", "0.5") + row("2", "0.4")
    csv.write_text(whole[:-4])  # cut in epoch 2's value
    assert main(["summarize", "--in", str(csv), "--out", str(tmp_path / "s.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{csv}, line 3: the file ends mid-line (cut short); expected a CSV "
                        "written by `eps-resnet parse`: run it again"), err
    for bad in ("", "nan", "inf", "-inf"):
        csv.write_text(",".join(COLUMNS) + "\n" + row("1", "0.5") + row("2", bad))
        assert main(["summarize", "--in", str(csv), "--out", str(tmp_path / "s.md")]) == 0
        err = capsys.readouterr().err
        assert (f"warning: {csv}: 1 value(s) empty, nan or inf are left out (first: line 3, "
                "val_error of run r)") in err, err
