"""The reproduction table: per run the final and best errors, what was discarded, parameters
before and after removing the discarded blocks, beside the paper's numbers for the same setting."""
from __future__ import annotations

import os
from importlib import resources

import numpy as np
import pandas as pd

from ..atomic import read_json, read_yaml, write_text
from ..errors import EpsResnetError, first_line
from ..data import DATASETS
from ..models.gate import CLOSED_AT, DISCARDED_AT, gate_disagreements
from ..models.layouts import check_depth, count_parameters, make_layout
from ..tables import MARKDOWN
from ..training.runfolder import COMPRESSED_FILE, EVAL_FILE

#: the agreement compress requires (runs.compress.MIN_AGREEMENT; results sit above runs in the
#: stages, so the value is read where it is defined)
from ..runs.compress import MIN_AGREEMENT  # noqa: E402

SUMMARY_COLUMNS = [
    "run", "experiment", "dataset", "family", "depth", "variant", "epsilon", "seed", "epochs",
    "final_val_error", "best_val_error", "final_val_error_top5", "best_val_error_top5",
    "side_val_error", "discarded_blocks", "closed_blocks", "gated_blocks",
    "closed_at_validation_only", "closed_at_training_only", "discarded_ratio",
    "discarded_ratio_original",
    "params", "params_after_discard",
    "paper_error", "error_diff", "paper_error_top5", "paper_discarded_ratio", "ratio_diff",
]
COMPRESSED_COLUMNS = ["full_eval_error", "compressed_eval_error", "compressed_params",
                      "flop_ratio", "agreement", "max_logit_difference", "equivalent"]


def paper_reference() -> pd.DataFrame:
    """The paper's numbers (one reference data file in the package)."""
    with resources.files("eps_resnet.reference").joinpath("paper.csv").open() as f:
        return pd.read_csv(f, comment="#")


def _last(d: pd.DataFrame):
    return d.sort_values("epoch")["value"].iloc[-1] if len(d) else np.nan


def _family(meta) -> str | None:
    """The run's network family (recorded since run.yaml has it; else the dataset's)."""
    if "family" in meta and isinstance(meta["family"], str):
        return meta["family"]
    info = DATASETS.get(meta["dataset"])
    return info.family if info else None


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run of the tidy table (errors in percent)."""
    rows = []
    for run, d in df.groupby("run", sort=False):
        meta = d.iloc[0]
        m = {k: d[d["metric"] == k] for k in ("val_error", "val_error_top5", "side_output/val_error",
                                              "discarded_ratio", "discarded_ratio_original",
                                              "is_discarded", "val_is_discarded")}
        blocks = m["is_discarded"]
        last_blocks = blocks[blocks["epoch"] == blocks["epoch"].max()] if len(blocks) else blocks
        discarded = sorted(last_blocks.loc[last_blocks["value"] >= DISCARDED_AT, "block"])
        row = {
            "run": run, "experiment": meta["experiment"], "dataset": meta["dataset"],
            "family": _family(meta), "depth": meta["depth"], "variant": meta["variant"], "epsilon": meta["epsilon"],
            "seed": meta["seed"] if "seed" in meta else np.nan,
            "epochs": int(d["epoch"].max()),
            "final_val_error": 100 * _last(m["val_error"]),
            "best_val_error": 100 * m["val_error"]["value"].min() if len(m["val_error"]) else np.nan,
            "final_val_error_top5": 100 * _last(m["val_error_top5"]),
            "best_val_error_top5": (100 * m["val_error_top5"]["value"].min()
                                    if len(m["val_error_top5"]) else np.nan),
            "side_val_error": 100 * _last(m["side_output/val_error"]),
            "discarded_blocks": len(discarded) if len(blocks) else np.nan,
            "closed_blocks": int((last_blocks["value"] >= CLOSED_AT).sum()) if len(blocks) else np.nan,
            "gated_blocks": last_blocks["block"].nunique() if len(blocks) else np.nan,
            **_validation_gates(m["is_discarded"], m["val_is_discarded"]),
            "discarded_ratio": _last(m["discarded_ratio"]),
            "discarded_ratio_original": _last(m["discarded_ratio_original"]),
            "params": np.nan, "params_after_discard": np.nan,
        }
        family = _family(meta)
        if family and pd.notna(meta["depth"]):
            try:
                check_depth(family, int(meta["depth"]))
            except ValueError:
                family = None
        if family:
            layout = make_layout(family, int(meta["depth"]))
            classes = DATASETS[meta["dataset"]].num_classes
            side = meta["variant"] in ("side", "epsilon")
            row["params"] = count_parameters(layout, classes, side)
            row["params_after_discard"] = count_parameters(layout, classes, side, discarded)
        rows.append(row)
    out = pd.DataFrame(rows)
    return _with_paper(out)[SUMMARY_COLUMNS]


def _validation_gates(trained: pd.DataFrame, validated: pd.DataFrame) -> dict:
    """The blocks whose gate decided differently at validation than in training at the last
    epoch ("res1.0 res2.1"; "" when they agree, NaN for runs that recorded no validation gates)."""
    if not len(validated):
        return {"closed_at_validation_only": np.nan, "closed_at_training_only": np.nan}
    last = validated["epoch"].max()
    row = {f"{r.block}/val_is_discarded": r.value for r in validated[validated["epoch"] == last].itertuples()}
    row.update({f"{r.block}/is_discarded": r.value
                for r in trained[trained["epoch"] == last].itertuples()})
    found = gate_disagreements(row)
    return {f"closed_at_{k}": " ".join(v) for k, v in found.items()}


def disagreement_note(table: pd.DataFrame) -> str:
    """A warning naming the runs whose gates closed differently at validation and the compressed
    models that are not equivalent to their full runs ("" when there are none)."""
    parts, gates = [], []
    for col, what in (("closed_at_validation_only", "closed at validation only"),
                      ("closed_at_training_only", "closed at training only")):
        if col in table:
            runs = table.loc[table[col].fillna("").astype(str) != "", "run"].tolist()
            if runs:
                gates.append(f"gates {what} in the last epoch in {len(runs)} run(s) "
                             f"({', '.join(runs)})")
    if gates:
        # whether it matters depends on the run's --inference-gates, which the note names
        # rather than guesses
        parts.append(" and ".join(gates) + ": where validation uses each batch's own gates "
                     "(--inference-gates batch, the original's), the validation error measures "
                     "another network than the one training pruned")
    if "equivalent" in table:
        bad = table.loc[table["equivalent"] == False, "run"].tolist()  # noqa: E712 (NaN: none)
        if bad:
            parts.append(f"compressed models NOT equivalent to their full runs: {', '.join(bad)}")
    return ("Warning: " + "; ".join(parts) + ".") if parts else ""


SETTING = ["experiment", "dataset", "family", "depth", "variant", "epsilon"]
SPREAD = ["final_val_error", "best_val_error", "discarded_ratio", "discarded_ratio_original"]


def by_setting(table: pd.DataFrame) -> pd.DataFrame:
    """Per (experiment, depth, variant, ε): how many seeds, and the mean and standard deviation
    over them of the final and best errors and of the discarded ratio, beside the paper's."""
    rows = []
    for key, g in table.groupby(SETTING, sort=False, dropna=False):
        row = dict(zip(SETTING, key), seeds=len(g))
        for col in SPREAD:
            row[f"{col}_mean"] = g[col].mean()
            row[f"{col}_std"] = g[col].std(ddof=1) if len(g) > 1 else np.nan
        row["paper_error"] = g["paper_error"].iloc[0]
        row["paper_discarded_ratio"] = g["paper_discarded_ratio"].iloc[0]
        rows.append(row)
    columns = SETTING + ["seeds"] + [f"{c}_{s}" for c in SPREAD for s in ("mean", "std")] + [
        "paper_error", "paper_discarded_ratio"]
    return pd.DataFrame(rows, columns=columns)


def paper_row(dataset, depth, variant, epsilon, ref: pd.DataFrame | None = None) -> pd.Series | None:
    """The paper's numbers for a setting (None where the paper reports none)."""
    ref = paper_reference() if ref is None else ref
    match = ref[(ref["dataset"] == dataset) & (ref["depth"] == depth) & (ref["variant"] == variant)]
    if variant == "epsilon":
        match = match[np.isclose(match["epsilon"], epsilon)] if pd.notna(epsilon) else match[:0]
    return match.iloc[0] if len(match) else None


def _with_paper(table: pd.DataFrame) -> pd.DataFrame:
    ref = paper_reference()
    cols = {"error_top1": "paper_error", "error_top5": "paper_error_top5",
            "discarded_ratio": "paper_discarded_ratio"}
    for c in cols.values():
        table[c] = np.nan
    for i, row in table.iterrows():
        match = paper_row(row["dataset"], row["depth"], row["variant"], row["epsilon"], ref)
        if match is not None:
            for src, dst in cols.items():
                table.at[i, dst] = match[src]
    table["error_diff"] = table["final_val_error"] - table["paper_error"]
    # the paper's ratios use the original's denominator (3n + 2 in the CIFAR family)
    ours = table["discarded_ratio_original"].fillna(table["discarded_ratio"])
    table["ratio_diff"] = ours - table["paper_discarded_ratio"]
    return table


#: What the original's ImageNet script ran, beside the paper's ImageNet numbers.
IMAGENET_EPSILON_NOTE = (
    "ImageNet ε: the original's imagenetEpsilonResnet.py gates with its constant EPSILON = 2.0; "
    "its -e flag is parsed but never used, in every commit. As committed, the runs its "
    "run_imagenet.sh labels ε = 2.1 (ResNet-101) and ε = 1.8 (ResNet-152), and so the paper's "
    "numbers for them, trained with ε = 2.0 unless the constant was edited by hand. Our runs "
    "train with the ε they are labelled with.")


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "NO"
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}f}"
    return str(v)


def _millions(v) -> str:
    return "" if pd.isna(v) else f"{v / 1e6:.3f} M"


def _drop_empty(frame: pd.DataFrame, keep: int = 1) -> pd.DataFrame:
    """Without the columns (after the first ``keep``) that are empty in every row."""
    empty = [c for c in frame.columns[keep:] if (frame[c] == "").all()]
    return frame.drop(columns=empty)


def run_tables(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The per-run summary as narrow tables of formatted text, each led by the run's name, so
    that they fit a page: errors against the paper's, discarded blocks and parameters, and the
    compressed networks (when there are any). Columns empty for every run are left out."""
    errors, blocks, compressed = [], [], []
    has_compressed = ("compressed_eval_error" in table.columns
                      and table["compressed_eval_error"].notna().any())
    for _, r in table.iterrows():
        errors.append({
            "run": r["run"], "dataset": r["dataset"], "family": r["family"] or "",
            "depth": _fmt(r["depth"], 0), "variant": r["variant"], "ε": _fmt(r["epsilon"], 2),
            "seed": _fmt(r["seed"], 0), "epochs": _fmt(r["epochs"], 0),
            "final err %": _fmt(r["final_val_error"]), "best err %": _fmt(r["best_val_error"]),
            "top-5 err %": _fmt(r["final_val_error_top5"]), "side err %": _fmt(r["side_val_error"]),
            "paper err %": _fmt(r["paper_error"]), "Δ err": _fmt(r["error_diff"])})
        blocks.append({
            "run": r["run"],
            "discarded": ("" if pd.isna(r["discarded_blocks"])
                          else f"{int(r['discarded_blocks'])}/{int(r['gated_blocks'])}"),
            "closed": "" if pd.isna(r["closed_blocks"]) else str(int(r["closed_blocks"])),
            "ratio": _fmt(r["discarded_ratio"], 3),
            "ratio (paper's def.)": _fmt(r["discarded_ratio_original"], 3),
            "paper ratio": _fmt(r["paper_discarded_ratio"], 3), "Δ ratio": _fmt(r["ratio_diff"], 3),
            "closed at validation only": _fmt(r.get("closed_at_validation_only")),
            "closed at training only": _fmt(r.get("closed_at_training_only")),
            "params": _millions(r["params"]), "params after": _millions(r["params_after_discard"])})
        if has_compressed and pd.notna(r.get("compressed_eval_error")):
            compressed.append({
                "run": r["run"], "full eval err %": _fmt(r["full_eval_error"]),
                "compressed err %": _fmt(r["compressed_eval_error"]),
                "compressed params": _millions(r["compressed_params"]),
                "FLOP ratio": _fmt(r["flop_ratio"]), "agreement": _fmt(r["agreement"], 4),
                "equivalent": _fmt(r.get("equivalent"))})
    out = [("Errors (validation, %)", _drop_empty(pd.DataFrame(errors))),
           ("Discarded blocks and parameters", _drop_empty(pd.DataFrame(blocks)))]
    if compressed:
        out.append(("Compressed networks", _drop_empty(pd.DataFrame(compressed))))
    return out


def setting_table(groups: pd.DataFrame) -> pd.DataFrame:
    """The per-setting table as formatted text (mean ± standard deviation over seeds)."""
    def cell(mean, std, digits):
        if pd.isna(mean):
            return ""
        return f"{mean:.{digits}f}" + ("" if pd.isna(std) else f" ± {std:.{digits}f}")

    rows = [{"experiment": r["experiment"], "depth": _fmt(r["depth"], 0), "variant": r["variant"],
             "ε": "" if pd.isna(r["epsilon"]) else f"{r['epsilon']:g}", "seeds": str(r["seeds"]),
             "final err %": cell(r["final_val_error_mean"], r["final_val_error_std"], 2),
             "best err %": cell(r["best_val_error_mean"], r["best_val_error_std"], 2),
             "discarded ratio": cell(r["discarded_ratio_mean"], r["discarded_ratio_std"], 3),
             "ratio (paper's def.)": cell(r["discarded_ratio_original_mean"],
                                          r["discarded_ratio_original_std"], 3),
             "paper err %": _fmt(r["paper_error"]), "paper ratio": _fmt(r["paper_discarded_ratio"], 3)}
            for _, r in groups.iterrows()]
    return _drop_empty(pd.DataFrame(rows))


def markdown_table(frame: pd.DataFrame) -> str:
    return frame.astype(str).to_markdown(index=False, **MARKDOWN) + "\n"


def settings_markdown(groups: pd.DataFrame) -> str:
    return (markdown_table(setting_table(groups)) + "\nMean ± standard deviation over the seeds "
            "of each setting (no ± for a single seed).\n")


def summary_note(table: pd.DataFrame) -> str:
    """What the per-run tables' columns mean."""
    note = ("Errors are validation errors in percent at the last epoch (best: the lowest over all "
            "epochs). A block counts as discarded when its moving-average is_discarded is at least "
            f"{DISCARDED_AT} at the last epoch (closed: at 1, the original's compression rule); the "
            "ratio divides by the gated blocks, the paper's definition by the original's count "
            "(3n + 2 in the CIFAR family), which Δ ratio compares. Closed at validation only: "
            "blocks whose gate was closed in most validation batches (batch norms with their moving "
            "averages) but open in training. Paper numbers "
            "come from eps_resnet/reference/paper.csv (most were read off the paper's plots). The "
            "compressed columns (ε runs): validation error of the full network and of the compressed "
            "one (`eps-resnet evaluate`), parameters and FLOP ratio of the inference network, the "
            "share of validation images on which both predict the same class, and whether that "
            f"share reaches {MIN_AGREEMENT} (equivalent).")
    if (table["dataset"] == "imagenet").any():
        note += " " + IMAGENET_EPSILON_NOTE
    return note


def to_markdown(table: pd.DataFrame) -> str:
    """The per-run summary as readable Markdown tables (see :func:`run_tables`)."""
    parts = [f"### {heading}\n\n{markdown_table(frame)}" for heading, frame in run_tables(table)]
    warning = disagreement_note(table)
    return ("\n".join(parts) + ("\n**" + warning + "**\n" if warning else "")
            + "\n" + summary_note(table) + "\n")


def settings_path(csv_path: str) -> str:
    """Where the per-setting table goes beside the per-run summary.csv."""
    root, ext = os.path.splitext(csv_path)
    return f"{root}-settings{ext}"


def write(table: pd.DataFrame, csv_path: str, md_path: str | None, html_path: str | None = None) -> None:
    """summary.csv (a row per run), summary-settings.csv (a row per setting, over seeds), the
    Markdown copy of both and, if asked, an HTML page of both."""
    groups = by_setting(table)
    if html_path:
        from .parse import html_page

        warning = disagreement_note(table)
        write_text(html_path, html_page("Reproduction summary", [
            ("Per setting: mean ± standard deviation over seeds", setting_table(groups)),
            *[(f"Per run: {heading}", frame) for heading, frame in run_tables(table)]],
            summary_note(table), warning=warning))
    md = ("# Reproduction summary\n\n## Per setting\n\n" + settings_markdown(groups)
          + "\n## Per run\n\n" + to_markdown(table))
    for path, text in ((csv_path, table.to_csv(index=False)),
                       (settings_path(csv_path), groups.to_csv(index=False)),
                       (md_path, md if md_path else None)):
        if path is not None:
            write_text(path, text)


class SummaryInputError(EpsResnetError):
    """A file given to the summary is not what `eps-resnet compress` or `evaluate` writes."""


def compressed_results(eval_files) -> pd.DataFrame:
    """One row per compressed model: its evaluation beside the full model's (the run folder's
    eval.json), parameters, FLOP ratio and prediction agreement, keyed by run name."""
    rows = [_compressed_row(path) for path in eval_files]
    return pd.DataFrame(rows, columns=["run"] + COMPRESSED_COLUMNS)


def _compressed_row(path: str) -> dict:
    import yaml

    record = os.path.join(os.path.dirname(os.path.abspath(path)), COMPRESSED_FILE)
    expected = "expected the record `eps-resnet compress` writes next to the eval.json given"
    try:
        info = read_yaml(record)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise SummaryInputError(f"{record} is not readable YAML ({first_line(e)[:80]}); "
                                f"{expected}") from None
    if info is None:
        raise SummaryInputError(f"{record} is missing; {expected}")
    info = _mapping(info, record, "the record `eps-resnet compress` writes")
    small = _json(path)
    try:
        full_eval = os.path.join(str(info["run"]), EVAL_FILE)
        full = _json(full_eval) if os.path.exists(full_eval) else {}
        checks = _section(info, "checks", record)
        agreement = _number(checks, "agreement", record)
        row = {
            "run": os.path.basename(os.path.normpath(str(info["run"]))),
            "full_eval_error": 100 * _number(full, "val_error", full_eval),
            "compressed_eval_error": 100 * _number(small, "val_error", path),
            "compressed_params": _number(_section(info, "params", record), "compressed", record),
            "flop_ratio": (_number(_section(info, "flops", record), "full", record)
                           / _number(info["flops"], "compressed", record, positive=True)),
            "agreement": agreement,
            "max_logit_difference": _number(checks, "max_logit_difference", record),
            # older compressed.yaml files have no verdict: the agreement decides it as now
            "equivalent": bool(checks.get("equivalent", (agreement or 0) >= MIN_AGREEMENT)),
        }
    except KeyError as e:
        raise SummaryInputError(f"{record} lacks {first_line(e)[:80]}; expected the record "
                                "`eps-resnet compress` writes") from None
    return row


def _mapping(value, path: str, expected: str) -> dict:
    if not isinstance(value, dict):
        raise SummaryInputError(f"{path} holds {repr(value)[:60]}, not a mapping; "
                                f"expected {expected}")
    return value


def _section(info: dict, key: str, path: str) -> dict:
    return _mapping(info[key], f"{path}: {key}", "the mapping `eps-resnet compress` writes")


def _json(path: str) -> dict:
    expected = "the eval.json `eps-resnet evaluate` writes"
    return _mapping(read_json(path, expected, SummaryInputError), path, expected)


def _number(record: dict, key: str, path: str, positive: bool = False) -> float | int:
    """``record[key]`` as a finite number (NaN when absent or null); one line naming the file
    and key otherwise."""
    value = record.get(key)
    if value is None:
        return np.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) \
            or (positive and value <= 0):
        raise SummaryInputError(f"{path}: {key} is {value!r}; expected a finite "
                                f"{'positive ' if positive else ''}number")
    return value


def with_compressed(table: pd.DataFrame, eval_files) -> pd.DataFrame:
    """The summary with the compressed models' columns (empty for runs without one)."""
    extra = compressed_results(eval_files)
    return table.merge(extra, on="run", how="left")
