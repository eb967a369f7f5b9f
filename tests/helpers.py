"""What several test files share: paths, the installed commands, and config files."""
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def compiler_here() -> bool:
    """Whether the gate's max|F| kernel (eps_resnet/models/peak_op.cc) can be compiled here."""
    import shutil

    return shutil.which(os.environ.get("CXX") or "g++") is not None


def eps_resnet_cmd(*args):
    """The command line of the installed ``eps-resnet`` (the venv's, whatever PATH says)."""
    return [sys.executable, "-m", "eps_resnet.cli", *map(str, args)]


def snakemake(*args, cwd=ROOT, timeout=600):
    """Run the project's workflow with the venv's Snakemake (and the venv's eps-resnet on PATH)."""
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])
    return subprocess.run([os.path.join(BIN, "snakemake"), "--snakefile",
                           os.path.join(ROOT, "workflow", "Snakefile"), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict:
    """The 'Job stats' table of a dry run: {rule: count}."""
    table = output.split("Job stats:")[-1].split("Reasons:")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
            if m.group(1) != "total"}


def load(name):
    """A config file of config/, as a dict."""
    with open(os.path.join(ROOT, "config", name)) as f:
        return yaml.safe_load(f)


def write(tmp_path, config, name="config.yaml"):
    """A config dict written to a file in ``tmp_path``; returns its path."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def kill_when(argv, ready, timeout=300, signum=None):
    """Start a command, wait until ``ready()`` is true, then send it ``signum`` (default kill -9;
    asserting it was still running, so the signal really interrupted it); returns its exit
    status and its stderr."""
    import signal
    import time

    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL if signum is None else signum)
    finally:
        _, err = proc.communicate()
    return proc.returncode, err


def uninterrupted_and_resumed(args, tmp_path, ready):
    """Run ``args`` (an `eps-resnet train` command line without --out) once whole and once
    killed when ``ready(run folder)`` and run again; returns both run folders."""
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    subprocess.run(args + ["--out", str(whole)], check=True, capture_output=True, timeout=600)
    kill_when(args + ["--out", str(resumed)], lambda: ready(resumed))
    done = subprocess.run(args + ["--out", str(resumed)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return whole, resumed


def chromium() -> str:
    """Debian's Chromium (installed with apt when missing and this runs as root); skips the
    calling test, with the reason, when it cannot be had."""
    import shutil

    import pytest

    path = shutil.which("chromium")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            subprocess.run(cmd, capture_output=True, timeout=900,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        path = shutil.which("chromium")
    if path is None:
        pytest.skip("no Chromium (apt-get install chromium, as root) for the report test")
    return path


def open_report_results(report: str, categories, screenshot: str | None = None) -> dict:
    """Open a Snakemake HTML report in headless Chromium and show each result of each category
    (its eye button); returns {(category, result): what was displayed}: the loaded images'
    sizes, or, of an embedded HTML result, its table rows, how far it runs past its pane and how
    many of its figures have their caption beside them."""
    from playwright.sync_api import sync_playwright

    shown = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for category in categories:
            page.goto(f"file://{report}")
            page.get_by_text(category, exact=True).first.click()
            rows = page.locator("tr:has(a[iconname='eye'])")
            for i in range(rows.count()):
                name = rows.nth(i).locator("td").first.inner_text().strip()
                rows.nth(i).locator("a[iconname='eye']").click()
                page.wait_for_timeout(700)
                images = page.evaluate("() => Array.from(document.images).filter(i => "
                                       "i.src.startsWith('data:image/png')).map(i => "
                                       "[i.naturalWidth, i.naturalHeight])")
                tables = sum(frame.evaluate("() => document.querySelectorAll('tr').length")
                             for frame in page.frames[1:])
                # how far an embedded page runs past its pane (> 0: columns cut off)
                overflow = max([frame.evaluate("() => document.documentElement.scrollWidth - "
                                               "document.documentElement.clientWidth")
                                 for frame in page.frames[1:]] or [0])
                # figures of an embedded page whose caption stands beside the image
                beside = sum(frame.evaluate(
                    "() => Array.from(document.querySelectorAll('figure')).filter(f => {"
                    " const i = f.querySelector('img'), c = f.querySelector('figcaption');"
                    " return i && c && i.naturalWidth > 100 && c.textContent.length > 80 &&"
                    " c.getBoundingClientRect().left >= i.getBoundingClientRect().right; }).length")
                    for frame in page.frames[1:])
                shown[(category, name)] = {"images": images, "table_rows": tables,
                                           "overflow_px": overflow, "captions_beside": beside}
                if screenshot and not os.path.exists(screenshot) and images:
                    page.screenshot(path=screenshot)
                page.goto(f"file://{report}")
                page.get_by_text(category, exact=True).first.click()
                rows = page.locator("tr:has(a[iconname='eye'])")
        browser.close()
    return shown


def build(tf, family, depth, variant, classes=10, size=32, data_format="NHWC", training=True,
          gradients=False):
    """Build the model in a fresh graph; returns (graph, logits, input placeholders).
    ``gradients``: also the gradients of the training cost, as training adds them.

    NCHW graphs are compiled with XLA: TensorFlow's own CPU pooling kernels are NHWC-only, XLA's
    are not, so the GPU layout can be checked on this CPU.
    """
    import tensorflow
    from contextlib import nullcontext
    from tensorpack.tfutils.tower import TowerContext

    from eps_resnet.models import make_layout
    from eps_resnet.models.resnet import ModelSpec, ResNetModel
    from eps_resnet.training.recipe import RECIPES

    g = tf.Graph()
    with g.as_default():
        model = ResNetModel(ModelSpec(make_layout(family, depth), variant, classes, size,
                                      RECIPES["synthetic"], epsilon=2.5, data_format=data_format))
        inputs = [tf.placeholder(s.dtype, s.shape, s.name) for s in model.inputs()]
        jit = tensorflow.xla.experimental.jit_scope() if data_format == "NCHW" else nullcontext()
        with TowerContext("", is_training=training), jit:
            cost = model.build_graph(*inputs)
        if gradients:
            tf.gradients(cost, tf.trainable_variables())
    return g, g.get_tensor_by_name("logits:0"), inputs


def gate_decisions_match_the_float32_formula(tf, eps: float, pooled: bool) -> int:
    """The gate's T on bfloat16 branches whose peak sits at ε and at the bfloat16 numbers next
    to it (ε itself is mostly not one), against the paper's four-ReLU formula in float32 on the
    same values, and the gated block's is_discarded and output (the early decision of the
    bfloat16 rewrite with ``pooled``: the peak is in any of the images); asserts each and
    returns how many were checked."""
    import numpy as np

    from eps_resnet.models.gate import GATE_L, gate_value, gated_residual

    def literal_t(values: np.ndarray) -> float:
        f, e = values.astype(np.float32), np.float32(eps)
        s = np.max(np.maximum(f - e, 0) + np.maximum(-f - e, 0))
        r3 = np.maximum(np.float32(-GATE_L) * s + np.float32(1), 0)
        return float(np.maximum(np.float32(-GATE_L) * r3 + np.float32(1), 0))

    bf16 = tf.bfloat16.as_numpy_dtype
    near = np.array([eps], np.float32).astype(bf16)
    candidates = [near, np.nextafter(near.astype(np.float32), np.float32(np.inf)).astype(bf16)]
    step = np.float32(2.0) ** (np.floor(np.log2(eps)) - 7)  # bfloat16's spacing near ε
    grid = (np.float32(eps) + step * np.arange(-3, 4, dtype=np.float32)).astype(bf16)
    rng = np.random.RandomState(int(eps * 10))
    checked = 0
    with tf.Graph().as_default():
        x = tf.placeholder(tf.bfloat16, [4, 3, 3, 8])
        e = tf.placeholder(tf.float32, [])
        t = gate_value(x, e, pooled=pooled)
        assert t.dtype == tf.float32
        out, disc = gated_residual(tf.zeros_like(x), x, e, pooled=pooled)
        with tf.Session() as sess:
            for peak in list(grid) + [c[0] for c in candidates]:
                for sign in (1, -1):
                    base = (rng.uniform(-0.5, 0.5, (4, 3, 3, 8)) * eps).astype(bf16)
                    base.flat[rng.randint(base.size)] = bf16(sign * float(peak))
                    got, o, d = sess.run([t, out, disc], {x: base, e: eps})
                    want = literal_t(base)
                    assert got == want and d == 1 - want, (eps, float(peak), sign, pooled)
                    if want in (0.0, 1.0):  # the zero shortcut plus T times the branch
                        np.testing.assert_array_equal(o, base if want else np.zeros_like(base))
                    checked += 1
    return checked


def table_rows(text: str) -> list[list[str]]:
    """The cells of every row of the Markdown tables in ``text`` (separator rows left out)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines()
            if line.startswith("|") and not set(line.strip()) <= set("|-: ")]


def has_row(text: str, *cells: str) -> bool:
    """Whether a table row of ``text`` begins with ``cells`` (the last one may be the beginning
    of its cell)."""
    *whole, last = cells
    n = len(whole)
    return any(r[:n] == whole and len(r) > n and r[n].startswith(last) for r in table_rows(text))
