"""`eps-resnet selfcheck` on this machine's CPU (its GPU path is the same code with GPUs visible)."""
import pytest

from eps_resnet.cli import main
from eps_resnet.workflow.selfcheck import Check, device_hours, gate, report
from helpers import has_row, table_rows

pytestmark = pytest.mark.slow


def test_selfcheck_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "report.md"
    rc = main(["selfcheck", "--quick", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert out.read_text().strip() == text.strip()
    for row in (("devices", "ok", ""), ("NHWC = NCHW", "ok", "largest relative logit difference"),
                ("gate", "ok", "T on a planted closed block 0 (expected 0), on a planted open block 1"),
                ("CPU bits", "ok", "this CPU computes the portable kernels' reference bits (44 ops)"),
                ("training", "ok", "ResNet-110, CPU, fp32, batch 32:"),
                ("training", "ok", "ResNet-50, CPU, fp32, batch 8 at 64 px, scaled to 224 px:"),
                ("estimate", "ok", "figures/cifar10-val-error.png: 3 runs, ~")):
        assert has_row(text, *row), row
    for line in ("figures/imagenet-val-error.png: 3 runs, ~", "All checks passed."):
        assert line in text, line


def test_a_failed_check_fails_the_report():
    assert gate().ok
    text = report([Check("gate", True, "fine"), Check("training", False, "OOM")])
    assert ["training", "FAILED", "OOM"] in table_rows(text) and "1 check(s) failed" in text
    found = {"gpus": [], "cpu": {}}
    hours = device_hours({("cifar", 0, "fp32"): 100.0, ("imagenet", 0, "fp32"): 10.0}, found)
    # ResNet-110 at 100 img/s: (300 + 300 + 1000) epochs x 390 steps x 128 images = 222 hours
    assert "figures/cifar10-val-error.png: 3 runs, ~222 CPU-hours" in hours.detail


def test_cpu_bits_name_the_ops_that_differ_from_the_reference():
    """The op hashes of this CPU, computed in a portable process, against the committed reference
    and against a reference with two ops changed: the line names exactly those."""
    from eps_resnet.workflow.cpubits import hashes_in_own_process, load_reference, verdict

    mine, reference = hashes_in_own_process(), load_reference()
    assert set(mine) == set(reference) and len(reference) == 44
    assert verdict(mine, reference)[0]
    other = dict(reference, **{"batch norm": "0" * 16, "relu": "1" * 16})
    same, line = verdict(mine, other)
    assert not same
    assert line.startswith("2 of 44 ops compute other bits than the reference (batch norm, relu):")
