"""Parsing (golden tests on hand-written logs), figures and the summary table."""
import logging
import os
import re
import shutil

import matplotlib.lines
import numpy as np
import pandas as pd
import pytest

from eps_resnet.cli import main
from eps_resnet.models.layouts import count_parameters, make_layout
from eps_resnet.results import plots
from eps_resnet.results.parse import ParseError, parse_run, parse_runs
from eps_resnet.results.summary import summarize, to_markdown
from helpers import has_row, table_rows

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
ORIGINAL = os.path.join(FIX, "original", "train_log.cifar10-e_2.5-n_1")
EPS = os.path.join(FIX, "project", "eps-run")
STD = os.path.join(FIX, "project", "std-run")


def value(df, epoch, metric, block=None):
    d = df[(df["epoch"] == epoch) & (df["metric"] == metric)]
    if block is not None:
        d = d[d["block"] == block]
    assert len(d) == 1, (epoch, metric, block, d)
    return d["value"].iat[0]


def warned(caplog) -> list[str]:
    """The package's warnings caplog holds."""
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("eps_resnet")]


def test_original_log_golden(caplog):
    df = parse_run(ORIGINAL)
    msg = warned(caplog)[0]
    assert "1 truncated last line" in msg and "1 unknown metric(s)" in msg
    assert "epoch(s) with missing metrics" in msg
    assert sorted(df["epoch"].unique()) == [1, 2, 3]
    assert value(df, 1, "val_error") == 0.4853 and value(df, 3, "val_error") == 0.3524
    assert df[df["epoch"] == 2]["step"].unique().tolist() == [780]
    assert value(df, 1, "side_output/val_error") == 0.6012  # side_output/res2.0/val_error
    assert value(df, 2, "is_discarded", "res3.0") == 1
    blocks = df[df["metric"] == "is_discarded"]
    assert sorted(blocks["block"].unique()) == ["res1.0", "res2.0", "res3.0"]
    assert blocks.set_index("block")["group"].to_dict() == {"res1.0": 1, "res2.0": 2, "res3.0": 3}
    assert value(df, 2, "mystery_metric") == 3  # unknown metrics are kept
    assert not ((df["epoch"] == 2) & (df["metric"] == "val_error")).any()
    # metadata guessed from the folder name
    row = df.iloc[0]
    assert (row["dataset"], row["family"], row["depth"], row["variant"], row["epsilon"]) == \
        ("cifar10", "cifar", 8, "epsilon", 2.5)
    assert list(df.columns) == ["run", "experiment", "dataset", "family", "depth", "variant", "epsilon", "seed",
                                "epoch", "step", "metric", "block", "group", "value"]


def test_truncated_stats_json_falls_back_to_the_log(caplog):
    df = parse_run(EPS)
    msg = warned(caplog)[0]
    assert "1 truncated stats.json" in msg and "1 epoch(s) taken from log.log" in msg
    assert sorted(df["epoch"].unique()) == [1, 2, 3]
    assert value(df, 2, "discarded_ratio") == pytest.approx(1 / 3)
    assert value(df, 3, "discarded_cnt") == 2 and value(df, 3, "is_discarded", "res2.0") == 1
    assert value(df, 3, "val_error") == 0.3
    assert set(df["experiment"]) == {"fixture"} and set(df["variant"]) == {"epsilon"}


def test_complete_run_parses_without_warnings(caplog):
    df = parse_run(STD)
    assert not warned(caplog)
    assert len(df) == 3 * 4 and set(df["variant"]) == {"standard"}
    assert df["epsilon"].isna().all()


def original_log(folder, argv: str | None, epsilon: float, discarded: int):
    """A hand-written log.log of the original implementation: its Argv line (if any) and two
    epochs, as tensorpack of 2017 printed them."""
    folder.mkdir()
    lines = [f"[0329 15:31:03 @logger.py:74] Argv: {argv}"] if argv else []
    for epoch, cnt in ((1, 0), (2, discarded)):
        lines += [f"[0329 15:3{epoch}:20 @base.py:183] Epoch {epoch} (global_step {390 * epoch}) "
                  "finished, time:70.15 sec."] + [
            f"[0329 15:3{epoch}:22 @monitor.py:363] {name}: {v}"
            for name, v in (("discarded_cnt", cnt), ("epsilon", epsilon), ("val_error", 0.3))]
    (folder / "log.log").write_text("\n".join(lines) + "\n")
    return str(folder)


# dataset, family, depth and ε as each of the original's command lines gives them, and the
# denominator of the paper's discarded ratio (3n + 2; ImageNet: the gated blocks, 3+4+23+3)
ORIGINAL_COMMANDS = [
    ("train_log.cifar10-e_2.5-n_18",
     "cifarEpsilonResnet.py --gpu 1 -n 18 -e 2.5 -o cifar10-e_2.5-n_18 --cifar10", 2.5,
     ("cifar10", "cifar", 110, 2.5), 56),
    # run_cifar100.sh names its CIFAR-100 runs cifar10-...: the flag decides, not the name
    ("train_log.cifar10-e_2.5-n_18",
     "cifarEpsilonResnet.py --gpu 2 -n 18 -e 2.5 -o cifar10-e_2.5-n_18 --cifar100", 2.5,
     ("cifar100", "cifar", 110, 2.5), 56),
    ("train_log.x", "./cifarEpsilonResnet.py --gpu 0 --cifar10", 2.5,  # the script's defaults
     ("cifar10", "cifar", 110, 2.5), 56),
    ("train_log.svhn-e_1.5-n_33",
     "svhnEpsilonResnet.py --gpu 2 --num_units 33 --epsilon 1.5 -o svhn-e_1.5-n_33", 1.5,
     ("svhn", "cifar", 200, 1.5), 101),
    ("imagenetEpsilonResnet",
     "imagenetEpsilonResnet.py --gpu 0,1,2,3 --data /data/ilsvrc12 -d 101 -e 2.0", 2.0,
     ("imagenet", "imagenet", 101, 2.0), 33),
]


@pytest.mark.parametrize("name,argv,logged,expected,denominator", ORIGINAL_COMMANDS)
def test_original_logs_take_their_metadata_from_the_command_line(tmp_path, caplog, name, argv,
                                                                 logged, expected, denominator):
    df = parse_run(original_log(tmp_path / name, argv, logged, discarded=10))
    assert not warned(caplog)
    row = df.iloc[0]
    assert (row["dataset"], row["family"], row["depth"], row["epsilon"]) == expected
    assert set(df["variant"]) == {"epsilon"}
    assert value(df, 2, "discarded_ratio_original") == pytest.approx(10 / denominator)


def test_original_imagenet_epsilon_flag_that_the_script_ignored(tmp_path, caplog):
    """run_imagenet.sh's `-e 2.1` run: its script gated with EPSILON = 2.0, which its log shows."""
    argv = "imagenetEpsilonResnet.py --gpu 0,1,2,3 --data /data/ilsvrc12 -d 101 -e 2.1"
    df = parse_run(original_log(tmp_path / "imagenet-e_2.1", argv, 2.0, discarded=8))
    assert any("log's epsilon is 2 where its command line says -e 2.1" in w for w in warned(caplog))
    assert set(df["epsilon"]) == {2.1} and set(df["depth"]) == {101}


def test_original_log_without_command_line_warns_what_is_missing(tmp_path, caplog):
    df = parse_run(original_log(tmp_path / "train_log.mystery", None, 2.5, discarded=3))
    assert any(re.search("no Argv: line.*unknown: dataset, depth, epsilon", w) for w in warned(caplog))
    assert df["dataset"].isna().all() and "discarded_ratio_original" not in set(df["metric"])
    # the folder's name still gives what it can, as before
    caplog.clear()
    df = parse_run(original_log(tmp_path / "train_log.svhn-e_1.5-n_18", None, 1.5, discarded=3))
    assert any(re.search("no Argv: line.*taken from the folder's name", w) for w in warned(caplog))
    assert (df["dataset"].iat[0], df["depth"].iat[0]) == ("svhn", 110)


def test_empty_or_missing_run_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParseError, match=f"{tmp_path / 'empty'} holds no metrics"):
        parse_run(str(tmp_path / "empty"))
    with pytest.raises(ParseError, match="is not a folder"):
        parse_run(str(tmp_path / "nope"))


def test_parse_command_writes_the_csv(tmp_path, capsys):
    out = tmp_path / "runs.csv"
    assert main(["parse", ORIGINAL, EPS, STD, "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert set(df["run"]) == {"train_log.cifar10-e_2.5-n_1", "eps-run", "std-run"}
    assert "warning" in capsys.readouterr().err
    assert main(["parse", str(tmp_path / "nope"), "--out", str(tmp_path / "x.csv")]) == 2
    assert not (tmp_path / "x.csv").exists()


def test_still_training_run_is_read(tmp_path, caplog):
    run = tmp_path / "live"
    shutil.copytree(STD, run)
    with open(run / "log.log", "w") as f:  # the log is ahead of stats.json by one epoch...
        f.write("[1126 05:56:29 @base.py:282] Epoch 4 (global_step 200) finished, time:0.7 second.\n"
                "[1126 05:56:29 @monitor.py:476] val_error: 0.3")  # ...and cut mid-write
    df = parse_run(str(run))
    assert any("epoch" in w for w in warned(caplog))
    assert value(df, 4, "val_error") == 0.3


# -- figures ----------------------------------------------------------------------------------
@pytest.fixture()
def fixture_csv(tmp_path):
    """The parsed fixtures, as a CSV on disk."""
    df = parse_runs([ORIGINAL, EPS, STD])  # (with warnings: cut logs)
    path = tmp_path / "fixture.csv"
    df.to_csv(path, index=False)
    return str(path)


def imagenet_table():
    rows = []
    for run, variant, eps in (("in-std", "standard", np.nan), ("in-e2.0", "epsilon", 2.0)):
        for e in range(1, 6):
            for metric, v in (("val_error", 0.5 - 0.05 * e), ("val_error_top5", 0.25 - 0.03 * e)):
                rows.append(dict(run=run, experiment="imagenet", dataset="imagenet", depth=101,
                                 variant=variant, epsilon=eps, seed=0, epoch=e, step=5000 * e,
                                 metric=metric, block=None, group=None, value=v))
    return pd.DataFrame(rows)


def lines_of(ax):
    return [l for l in ax.get_lines() if isinstance(l, matplotlib.lines.Line2D)]


def curves_of(ax):
    """The data lines of a figure (not the paper's reference lines)."""
    return [l for l in lines_of(ax) if not l.get_label().startswith("paper")]


def test_val_error_figure(fixture_csv, tmp_path):
    df = pd.read_csv(fixture_csv)
    fig = plots.plot("val-error", df, expected=["train_log.cifar10-e_2.5-n_1", "eps-run", "std-run",
                                                "cifar10-e2.7"])
    ax = fig.axes[0]
    assert len(curves_of(ax)) == 3
    texts = [t.get_text() for t in ax.get_legend().get_texts() if not t.get_text().startswith("paper")]
    assert [t.split(":")[0] for t in texts] == ["standard", "ε = 2.5", "ε = 2.5"]
    last = df[(df["run"] == "std-run") & (df["metric"] == "val_error")].sort_values("step")["value"].iloc[-1]
    assert texts[0] == f"standard: {100 * last:.2f}%"  # each run's final value in the legend
    low, high = ax.get_ylim()  # the informative range, not 0-100 %
    assert low <= 100 * last <= high and high - low < 100
    assert ax.get_xlabel() == "training step (iterations)" and ax.get_ylabel() == "validation error (%)"
    assert any("cifar10-e2.7" in t.get_text() for t in fig.texts)  # the missing run is named
    paths = plots.save(fig, str(tmp_path / "val.png"), pdf=True)
    assert all(os.path.getsize(p) > 1000 for p in paths) and paths[1].endswith(".pdf")


def test_val_error_imagenet_top1_solid_top5_dashed():
    fig = plots.plot("val-error", imagenet_table())
    ax = fig.axes[0]
    styles = [l.get_linestyle() for l in curves_of(ax)]
    assert styles.count("-") == 2 and styles.count("--") == 2
    assert ax.get_xlabel() == "epoch"
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "standard top-1: 25.00%" in texts and "ε = 2 top-5: 10.00%" in texts
    paper = [l for l in lines_of(ax) if l.get_label().startswith("paper")]
    assert paper  # ResNet-101 has the paper's numbers
    assert not fig.texts  # nothing missing


def test_lr_figure(fixture_csv, tmp_path):
    assert main(["plot", "lr", "--in", fixture_csv, "--out", str(tmp_path / "lr.png")]) == 0
    assert os.path.getsize(tmp_path / "lr.png") > 1000
    fig = plots.plot("lr", pd.read_csv(fixture_csv))
    ax = fig.axes[0]
    assert len(lines_of(ax)) == 3 and ax.get_ylabel() == "learning rate"
    assert len(ax.get_legend().get_texts()) == 3


def test_figures_page_puts_each_caption_beside_its_figure(fixture_csv, tmp_path, capsys):
    pngs = []
    for kind in ("val-error", "lr"):
        pngs.append(str(tmp_path / f"fixture-{kind}.png"))
        assert main(["plot", kind, "--in", fixture_csv, "--out", pngs[-1]]) == 0
    out = tmp_path / "page.html"
    assert main(["figures-page", *pngs, "--experiment", "fixture", "--out", str(out)]) == 0
    page = out.read_text()
    assert page.count("<figure>") == 2 and page.count("data:image/png;base64,") == 2
    assert "Learning rate of every run of fixture" in page and "Validation error of fixture" in page
    # a figure the page cannot caption: one line, and no page
    capsys.readouterr()
    wrong = tmp_path / "other-lr.png"
    os.replace(pngs[1], wrong)
    assert main(["figures-page", str(wrong), "--experiment", "fixture",
                 "--out", str(tmp_path / "no.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected a figure named fixture-<kind>.png" in err
    assert not (tmp_path / "no.html").exists()


def test_compression_ratio_figure(fixture_csv):
    fig = plots.plot("compression-ratio", pd.read_csv(fixture_csv))
    left, right = fig.axes
    assert len(lines_of(left)) == 2  # the two ε runs; the standard run has no ratio
    assert len(lines_of(right)) == 1  # one depth
    assert right.get_xlabel() == "ε" and left.get_ylabel() == "discarded blocks / gated blocks"
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["ResNet-8 (CIFAR family)"]


def test_blocks_figure(fixture_csv):
    df = pd.read_csv(fixture_csv)
    table = plots.block_table(df)
    eps = table[table["run"] == "eps-run"].set_index("group")
    assert eps["discarded"].to_dict() == {1: 0, 2: 1, 3: 1}  # last epoch (3): res2.0, res3.0
    fig = plots.plot("blocks", df)
    assert len(fig.axes) == 2  # one panel per ε run
    # the legend sits above the panels (the figure's), not on the bars
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["kept", "discarded"]
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert len(fig.axes[0].patches) == 6  # 3 groups x (kept, discarded)


def test_unknown_plot_kind(fixture_csv, tmp_path, capsys):
    assert main(["plot", "histogram", "--in", fixture_csv, "--out", str(tmp_path / "x.png")]) == 2
    assert "plot kind 'histogram' is unknown" in capsys.readouterr().err


# -- summary ----------------------------------------------------------------------------------
def cifar_table():
    """A CIFAR-10 ResNet-110 standard run and an ε = 2.5 run with 12 of 54 blocks discarded."""
    layout = make_layout("cifar", 110)
    gone = [b.name for b in layout.blocks[-12:]]
    rows = []
    base = dict(experiment="cifar10", dataset="cifar10", depth=110, seed=0, block=None, group=None)
    for e, (std, eps) in enumerate([(0.08, 0.07), (0.0590, 0.0520), (0.0612, 0.0530)], start=1):
        rows.append(dict(base, run="std", variant="standard", epsilon=np.nan, epoch=e, step=390 * e,
                         metric="val_error", value=std))
        rows.append(dict(base, run="eps", variant="epsilon", epsilon=2.5, epoch=e, step=390 * e,
                         metric="val_error", value=eps))
        rows.append(dict(base, run="eps", variant="epsilon", epsilon=2.5, epoch=e, step=390 * e,
                         metric="discarded_ratio", value=0.2 * e / 3))
        for b in layout.blocks:
            rows.append(dict(base, run="eps", variant="epsilon", epsilon=2.5, epoch=e, step=390 * e,
                             metric="is_discarded", block=b.name, group=b.group,
                             value=float(e == 3 and b.name in gone)))
    rows.append(dict(base, run="eps", variant="epsilon", epsilon=2.5, epoch=3, step=1170,
                     metric="side_output/val_error", value=0.081))
    return pd.DataFrame(rows), layout, gone


def test_summary_numbers_and_paper_columns():
    df, layout, gone = cifar_table()
    t = summarize(df).set_index("run")
    eps, std = t.loc["eps"], t.loc["std"]
    assert eps["final_val_error"] == pytest.approx(5.30) and eps["best_val_error"] == pytest.approx(5.20)
    assert eps["side_val_error"] == pytest.approx(8.1) and eps["epochs"] == 3
    assert eps["discarded_blocks"] == 12 and eps["gated_blocks"] == 54
    assert eps["discarded_ratio"] == pytest.approx(0.2)
    assert eps["params"] == count_parameters(layout, 10, side_output=True)
    assert eps["params_after_discard"] == count_parameters(layout, 10, True, gone)
    assert eps["params_after_discard"] < eps["params"]
    assert eps["paper_error"] == 5.24 and eps["error_diff"] == pytest.approx(0.06)
    assert eps["paper_discarded_ratio"] == 0.22 and eps["ratio_diff"] == pytest.approx(-0.02)
    assert std["paper_error"] == 6.05 and std["error_diff"] == pytest.approx(0.07)
    assert std["params"] == std["params_after_discard"] == 1727962
    md = to_markdown(t.reset_index())
    assert has_row(md, "eps", "cifar10", "cifar", "110", "epsilon", "2.50", "0", "3", "5.30", "5.20")
    assert "12/54" in md and "5.24" in md


def test_summary_says_what_the_originals_imagenet_script_ran():
    df, _, _ = cifar_table()
    assert "EPSILON = 2.0" not in to_markdown(summarize(df))
    df = df[df["metric"] != "is_discarded"].assign(dataset="imagenet", family="imagenet", depth=101)
    md = to_markdown(summarize(df))
    assert "its -e flag is parsed but never used" in md and "trained with ε = 2.0" in md


def test_summarize_command(tmp_path):
    df, _, _ = cifar_table()
    df.to_csv(tmp_path / "c.csv", index=False)
    assert main(["summarize", "--in", str(tmp_path / "c.csv"), "--out",
                 str(tmp_path / "summary.csv")]) == 0
    table = pd.read_csv(tmp_path / "summary.csv")
    assert set(table["run"]) == {"eps", "std"} and "paper_error" in table.columns
    assert (tmp_path / "summary.md").read_text().startswith("# Reproduction summary")


def test_summary_and_figures_over_seeds(tmp_path):
    """Three seeds of the ε run: the per-setting table has their mean and standard deviation;
    the val-error figure draws one mean line with a band; the ratio figure shows every seed."""
    from eps_resnet.results.summary import by_setting, write

    df, _, _ = cifar_table()
    seeds = []
    for seed, shift in ((1, 0.0), (2, 0.01), (3, 0.02)):
        d = df[df["run"] == "eps"].copy()
        d["run"], d["seed"] = f"eps-s{seed}", seed
        d.loc[d["metric"] == "val_error", "value"] += shift
        d.loc[d["metric"] == "discarded_ratio", "value"] += shift
        seeds.append(d)
    df = pd.concat([df[df["run"] == "std"]] + seeds, ignore_index=True)
    table = summarize(df)
    assert sorted(table["seed"].tolist()) == [0, 1, 2, 3]
    groups = by_setting(table).set_index("variant")
    eps = groups.loc["epsilon"]
    assert eps["seeds"] == 3
    assert eps["final_val_error_mean"] == pytest.approx(6.30)  # 5.30, 6.30, 7.30
    assert eps["final_val_error_std"] == pytest.approx(1.0)
    assert eps["discarded_ratio_mean"] == pytest.approx(0.21)
    assert eps["paper_error"] == 5.24 and eps["paper_discarded_ratio"] == 0.22
    assert groups.loc["standard", "seeds"] == 1 and np.isnan(groups.loc["standard", "final_val_error_std"])
    write(table, str(tmp_path / "summary.csv"), str(tmp_path / "summary.md"))
    assert (tmp_path / "summary-settings.csv").exists()
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith("|")]
    assert ["cifar10", "110", "epsilon", "2.5", "3", "6.30 ± 1.00"] in [r[:6] for r in rows]

    fig = plots.plot("val-error", df)
    ax = fig.axes[0]
    labels = [l.get_label() for l in curves_of(ax)]
    assert labels == ["standard: 6.12%", "ε = 2.5: 6.30%, mean of 3 seeds"]
    assert len(ax.collections) == 1  # the band
    mean = curves_of(ax)[1].get_ydata()
    assert mean[-1] == pytest.approx(6.30)
    fig = plots.plot("compression-ratio", df)
    points = fig.axes[1].collections[0].get_offsets()
    assert len(points) == 3  # every seed's final ratio


def test_both_discarded_ratio_definitions_and_closed_blocks(tmp_path):
    """A CIFAR-family ResNet-14 (6 gated blocks; the original counted 3n + 2 = 8): at the last
    epoch two blocks are fully closed, one closed most of the time, three open."""
    import json

    import yaml

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.yaml").write_text(yaml.safe_dump({"settings": {
        "dataset": "cifar10", "family": "cifar", "depth": 14, "variant": "epsilon", "epsilon": 2.5,
        "seed": 0}}))
    blocks = {"res1.0": 0.0, "res1.1": 0.2, "res2.0": 0.0, "res2.1": 0.7, "res3.0": 1.0, "res3.1": 1.0}
    last = {"epoch_num": 2, "global_step": 20, "val_error": 0.1, "discarded_cnt": sum(blocks.values()),
            "discarded_ratio": sum(blocks.values()) / 6, **{f"{b}/is_discarded": v for b, v in blocks.items()}}
    first = dict(last, epoch_num=1, global_step=10, discarded_cnt=0.0, discarded_ratio=0.0,
                 **{f"{b}/is_discarded": 0.0 for b in blocks})
    (run / "stats.json").write_text(json.dumps([first, last]))
    df = parse_run(str(run), "cifar10")
    original = df[df["metric"] == "discarded_ratio_original"].sort_values("epoch")["value"].tolist()
    assert original == pytest.approx([0.0, 2.9 / 8])
    row = summarize(df).iloc[0]
    assert row["discarded_blocks"] == 3 and row["closed_blocks"] == 2 and row["gated_blocks"] == 6
    assert row["discarded_ratio"] == pytest.approx(2.9 / 6)
    assert row["discarded_ratio_original"] == pytest.approx(2.9 / 8)
    md = to_markdown(summarize(df))
    assert any(r[i:i + 4] == ["3/6", "2", "0.483", "0.362"] for r in table_rows(md) for i in range(len(r)))


def grid_table():
    """CIFAR-10 runs over depth and ε, two seeds of the ResNet-110 settings; final errors
    (percent) and final ratios (the original's definition) chosen per run."""
    runs = [  # run, depth, variant, ε, seed, final error %, final ratio
        ("s110", 110, "standard", np.nan, 0, 6.0, None), ("s110-s1", 110, "standard", np.nan, 1, 6.4, None),
        ("e110", 110, "epsilon", 2.5, 0, 5.2, 0.20), ("e110-s1", 110, "epsilon", 2.5, 1, 5.6, 0.24),
        ("s200", 200, "standard", np.nan, 0, 5.8, None), ("e200", 200, "epsilon", 2.5, 0, 5.4, 0.50),
        ("e110-23", 110, "epsilon", 2.3, 0, 5.3, 0.10), ("e110-27", 110, "epsilon", 2.7, 0, 5.9, 0.35),
    ]
    rows = []
    for run, depth, variant, eps, seed, err, ratio in runs:
        base = dict(run=run, experiment="grid", dataset="cifar10", depth=depth, variant=variant,
                    epsilon=eps, seed=seed, block=None, group=None)
        for e, factor in ((1, 3.0), (2, 1.0)):
            rows.append(dict(base, epoch=e, step=390 * e, metric="val_error", value=factor * err / 100))
            if ratio is not None:
                rows.append(dict(base, epoch=e, step=390 * e, metric="discarded_ratio_original",
                                 value=ratio * (e / 2)))
    return pd.DataFrame(rows)


def points(ax, label):
    (line,) = [l for l in ax.get_lines() if l.get_label() == label]
    return list(zip(line.get_xdata(), line.get_ydata()))


def test_grid_figures_against_depth_and_epsilon(tmp_path):
    df = grid_table()
    fig = plots.plot("depth", df, expected=["s500"])
    err, ratio = fig.axes
    # ours: the mean over seeds per depth, the paper's beside (paper.csv)
    assert points(err, "standard") == [(110, pytest.approx(6.2)), (200, pytest.approx(5.8))]
    assert points(err, "ε = 2.5") == [(110, pytest.approx(5.4)), (200, pytest.approx(5.4))]
    assert points(err, "standard, paper") == [(110, 6.05), (200, 5.75), (500, 5.9), (752, 5.5)]
    assert points(ratio, "ε = 2.5") == [(110, pytest.approx(0.22)), (200, pytest.approx(0.50))]
    assert points(ratio, "ε = 2.5, paper")[:2] == [(110, 0.22), (200, 0.48)]
    assert "missing (not trained yet): s500" in [t.get_text() for t in fig.texts]
    fig = plots.plot("epsilon", df)
    ratio, err = fig.axes
    assert [x for x, _ in points(ratio, "ResNet-110 (CIFAR family)")] == [2.3, 2.5, 2.7]
    assert [y for _, y in points(ratio, "ResNet-110 (CIFAR family)")] == pytest.approx([0.10, 0.22, 0.35])
    assert points(ratio, "ResNet-110 (CIFAR family), paper") == [(2.5, 0.22)]  # the paper's ε sensitivity: no numbers here
    assert points(ratio, "ResNet-200 (CIFAR family)") == [(2.5, pytest.approx(0.50))]
    assert points(err, "ResNet-110 (CIFAR family), standard")[0][1] == pytest.approx(6.2)
    df.to_csv(tmp_path / "grid.csv", index=False)
    for kind in ("depth", "epsilon"):
        assert main(["plot", kind, "--in", str(tmp_path / "grid.csv"), "--out",
                     str(tmp_path / f"{kind}.png")]) == 0
        assert (tmp_path / f"{kind}.png").stat().st_size > 10_000


def test_summary_marks_gates_closed_at_validation_only_and_non_equivalent_compressions(tmp_path):
    """The last epoch's gates at validation against training's: a block closed only at validation
    (and one only in training) is named in its column and in a warning; a compressed model below
    the agreement check is marked NOT equivalent."""
    import json

    import yaml

    from eps_resnet.results.summary import disagreement_note, run_tables

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.yaml").write_text(yaml.safe_dump({"settings": {
        "dataset": "digits", "family": "cifar", "depth": 8, "variant": "epsilon", "epsilon": 8.0,
        "seed": 0}}))
    trained = {"res1.0": 0.0, "res2.0": 1.0, "res3.0": 0.9}
    validated = {"res1.0": 0.8, "res2.0": 1.0, "res3.0": 0.2}
    last = {"epoch_num": 1, "global_step": 10, "val_error": 0.3,
            **{f"{b}/is_discarded": v for b, v in trained.items()},
            **{f"{b}/val_is_discarded": v for b, v in validated.items()},
            **{f"{b}/gate/peak": 9.0 for b in trained}, **{f"{b}/gate/val_peak": 7.5 for b in trained}}
    (run / "stats.json").write_text(json.dumps([last]))
    df = parse_run(str(run), "digits")
    assert set(df.loc[df["metric"] == "gate/val_peak", "block"]) == set(trained)
    table = summarize(df)
    row = table.iloc[0]
    assert row["closed_at_validation_only"] == "res1.0"
    assert row["closed_at_training_only"] == "res3.0"
    table["equivalent"], table["compressed_eval_error"] = False, 30.0
    for col in ("full_eval_error", "compressed_params", "flop_ratio", "agreement"):
        table[col] = 1.0
    note = disagreement_note(table)
    assert "gates closed at validation only in the last epoch in 1 run(s) (run)" in note
    assert "compressed models NOT equivalent to their full runs: run" in note
    tables = dict(run_tables(table))
    assert tables["Discarded blocks and parameters"].iloc[0]["closed at validation only"] == "res1.0"
    assert tables["Compressed networks"].iloc[0]["equivalent"] == "NO"
    assert "**Warning: gates closed at validation only" in to_markdown(table)


def demo_like_table(family="cifar", depth=14, epsilons=(8.0,), seeds=(0, 1), lr_flat=False):
    """Digits-like runs of one family: a standard run and ε runs over seeds, 3 epochs; the run
    of the largest ε and the last seed ends far above the others (a collapsed run)."""
    layout = make_layout(family, depth)
    rows = []
    base = dict(experiment="demo", dataset="digits", family=family, depth=depth, block=None,
                group=None)
    settings = [("standard", np.nan)] + [("epsilon", e) for e in epsilons]
    for variant, eps in settings:
        for seed in seeds:
            run = f"{variant}-{eps:g}-s{seed}" if variant == "epsilon" else f"standard-s{seed}"
            for e in (1, 2, 3):
                row = dict(base, run=run, variant=variant, epsilon=eps, seed=seed, epoch=e,
                           step=22 * e)
                collapsed = variant == "epsilon" and eps == max(epsilons) and seed == seeds[-1]
                rows.append(dict(row, metric="val_error", value=0.9 if collapsed and e == 3 else 0.05 / e))
                lr = 0.1 if lr_flat or e < 3 or variant == "epsilon" else 0.01
                rows.append(dict(row, metric="learning_rate", value=lr))
                if variant == "epsilon":
                    rows.append(dict(row, metric="discarded_ratio", value=0.2))
                    for b in layout.blocks:
                        rows.append(dict(row, metric="is_discarded", block=b.name, group=b.group,
                                         value=float(b is layout.blocks[0])))
    return pd.DataFrame(rows)


def _boxes_overlap(a, b) -> bool:
    return not (a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0)


@pytest.mark.parametrize("family,depth", [("cifar", 14), ("imagenet", 18)])
def test_blocks_legend_never_covers_the_title(family, depth):
    fig = plots.plot("blocks", demo_like_table(family, depth, seeds=(0,)),
                     title="Digits (demo): ImageNet-family ResNet-18, a long title")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend, title = fig.legends[0], fig._suptitle
    assert not _boxes_overlap(legend.get_window_extent(renderer), title.get_window_extent(renderer))
    for ax in fig.axes:  # nor a panel's title
        assert not _boxes_overlap(legend.get_window_extent(renderer),
                                  ax.title.get_window_extent(renderer))


def test_learning_rate_seeds_differ_in_style_and_a_flat_schedule_is_off_the_edges():
    fig = plots.plot("lr", demo_like_table(lr_flat=True))
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    styles = {(line.get_color(), line.get_linestyle(), line.get_linewidth()) for line in lines}
    assert len(styles) == len(lines)  # no two runs drawn alike
    low, high = ax.get_ylim()
    assert low < 0.1 / 2 and high > 0.1 * 2  # the flat 0.1 sits inside the axis


def test_val_error_marks_a_curve_that_ends_above_the_axis():
    fig = plots.plot("val-error", demo_like_table(epsilons=(6.0, 8.0, 10.0), seeds=(0,)))
    ax = fig.axes[0]
    top = ax.get_ylim()[1]
    marked = [line for line in ax.get_lines() if line.get_gid() == "off-axis"]
    ends = [line.get_ydata()[-1] for line in ax.get_lines()
            if not line.get_label().startswith("_") and len(line.get_xdata()) > 2]
    above = [y for y in ends if y > top]
    assert above and len(marked) == len(above)
    assert any("above the axis" in t.get_text() for t in ax.get_legend().get_texts())


def test_compression_ratio_one_epsilon_and_the_family_in_labels():
    fig = plots.plot("compression-ratio", demo_like_table("imagenet", 18, seeds=(0,)))
    right = fig.axes[1]
    (line,) = [line for line in right.get_lines() if not line.get_label().startswith("_")]
    assert line.get_marker() == "o"  # a single ε is a point: the legend shows what is drawn
    assert line.get_label() == "ResNet-18 (ImageNet family)"
    low, high = right.get_xlim()
    assert high - low >= 2


def test_compression_ratio_of_many_runs_keeps_its_legend_off_the_curves():
    fig = plots.plot("compression-ratio", demo_like_table(epsilons=(4.0, 6.0, 8.0, 10.0)))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    left = fig.axes[0]
    legend = left.get_legend()
    assert len(legend.get_texts()) == 8  # 4 ε × 2 seeds
    assert not _boxes_overlap(legend.get_window_extent(renderer), left.get_window_extent(renderer))
    assert legend.get_window_extent(renderer).y0 >= 0  # and inside the figure
    lines = [line for line in left.get_lines() if not line.get_label().startswith("_")]
    assert len({(line.get_color(), str(line.get_linestyle())) for line in lines}) == len(lines)


def test_grid_epsilon_figure_names_the_networks():
    df = pd.concat([demo_like_table("cifar", 14, epsilons=(8.0, 10.0), seeds=(0,)),
                    demo_like_table("imagenet", 18, epsilons=(3.0, 4.0), seeds=(0,))
                    .assign(run=lambda d: "i-" + d["run"])])
    fig = plots.plot("epsilon", df)
    labels = {t.get_text() for ax in fig.axes for leg in [ax.get_legend()] if leg
              for t in leg.get_texts()} | {t.get_text() for leg in fig.legends for t in leg.get_texts()}
    assert {"ResNet-14 (CIFAR family)", "ResNet-18 (ImageNet family)"} <= labels


def test_settings_page_is_two_narrow_tables_with_readable_names():
    from eps_resnet.results.parse import html_page, settings_page_tables

    settings = pd.DataFrame([
        {"run": "a", "variant": "standard", "epsilon": None, "epsilon_start_epoch": 0,
         "inference_gates": "batch", "closed_gates": "reopen", "device": "CPU: AMD EPYC",
         "commit": "c8c12258e90ade2ec8a3bccbcb4b17536f4caeb0"},
        {"run": "b", "variant": "epsilon", "epsilon": 8.0, "epsilon_start_epoch": 8,
         "inference_gates": "training", "closed_gates": "stay", "device": "CPU: AMD EPYC",
         "commit": "2bbfd5cba7dcb1b72f20c72d88c6b67fc7d4c8c0-dirty"}])
    (first, trained), (second, ran) = settings_page_tables(settings)
    assert (first, second) == ("What was trained", "How it ran")
    assert list(trained.columns) == ["run", "variant", "ε", "ε from epoch"]
    assert list(ran.columns) == ["run", "gates at validation", "closed gates", "device", "commit"]
    assert list(ran["commit"]) == ["c8c1225", "2bbfd5c-dirty"]
    # the ε-only options are blank for the standard run, kept for the ε run
    assert trained["ε from epoch"].isna().tolist() == [True, False]
    assert ran["closed gates"].isna().tolist() == [True, False]
    page = html_page("Runs", [(first, trained), (second, ran)])
    assert ">None<" not in page and ">nan<" not in page and "<th>ε from epoch</th>" in page


@pytest.mark.parametrize("record,eval_json,message", [
    ("checks: [unclosed", '{"val_error": 0.3}', "compressed.yaml is not readable YAML"),
    ("run: x\n", '{"val_error": 0.3}', "compressed.yaml lacks 'checks'"),
    ("run: x\nchecks: 3\n", '{"val_error": 0.3}', "compressed.yaml: checks holds 3, not a mapping"),
    (None, '{"val_error": 0.3}', "compressed.yaml is missing"),
    ({"flops": {"full": 1, "compressed": 0}}, '{"val_error": 0.3}',
     "compressed.yaml: compressed is 0; expected a finite positive number"),
    ({}, '{"val_error": "abc"}', "eval.json: val_error is 'abc'; expected a finite number"),
    ({}, '{"val_error": NaN}', "eval.json: val_error is nan; expected a finite number"),
    ({}, "[1, 2", "eval.json is not valid JSON"),
])
def test_junk_compressed_records_are_one_line(fixture_csv, tmp_path, capsys, record, eval_json,
                                              message):
    """summarize --compressed reads compressed.yaml and eval.json files: a junk one is one line
    naming the file and the key, not a KeyError, a ZeroDivisionError or 'abcabc...'. (``record``:
    the file's text, or changes to a good record.)"""
    import yaml

    good = {"run": "x", "params": {"compressed": 5}, "flops": {"full": 2, "compressed": 1},
            "checks": {"agreement": 1.0, "max_logit_difference": 0.0}}
    folder = tmp_path / "c"
    folder.mkdir()
    if record is not None:
        (folder / "compressed.yaml").write_text(
            record if isinstance(record, str) else yaml.safe_dump({**good, **record}))
    (folder / "eval.json").write_text(eval_json)
    out = tmp_path / "s.md"
    assert main(["summarize", "--in", fixture_csv, "--out", str(out), "--compressed",
                 str(folder / "eval.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_a_finished_run_cut_short_is_refused_not_read_as_a_shorter_run(tmp_path, caplog):
    """run.yaml says 3 epochs finished: a stats.json (and log) holding 2 is a cut record, which
    parse refuses in one line instead of reporting epoch 2's error as the run's."""
    import json

    import yaml

    from eps_resnet.results.parse import ParseError

    run = tmp_path / "std-run"
    shutil.copytree(STD, run)
    record = yaml.safe_load((run / "run.yaml").read_text())
    record["status"], record["settings"]["epochs"] = "finished", 3
    (run / "run.yaml").write_text(yaml.safe_dump(record))
    assert sorted(parse_run(str(run))["epoch"].unique()) == [1, 2, 3]
    assert not warned(caplog)
    stats = json.loads((run / "stats.json").read_text())
    (run / "stats.json").write_text(json.dumps(stats[:2]))
    with pytest.raises(ParseError, match=r"run.yaml says 3 epochs finished, but its stats.json "
                                         r"and log lack the validation error of epoch\(s\) 3"):
        parse_run(str(run))
