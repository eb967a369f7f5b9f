# Logs to tidy CSVs, the figures per experiment, the summary against the paper.


rule parse_experiment:
    input:
        experiment_done_markers,
    output:
        os.path.join(RESULTS, "{experiment}", "runs.csv"),
    log:
        os.path.join(LOGS, "parse", "{experiment}.log"),
    params:
        runs=experiment_run_dirs,
    shell:
        "eps-resnet parse {params.runs} --experiment {wildcards.experiment} --out {output} > {log} 2>&1"


rule figure:
    input:
        os.path.join(RESULTS, "{experiment}", "runs.csv"),
    output:
        png=os.path.join(FIGURES, "{experiment}-{kind}.png"),
        pdf=os.path.join(FIGURES, "{experiment}-{kind}.pdf"),
    log:
        os.path.join(LOGS, "figures", "{experiment}-{kind}.log"),
    params:
        expected=expected_runs,
        title=figure_title,
    shell:
        "eps-resnet plot {wildcards.kind} --in {input} --out {output.png} --pdf "
        "--title {params.title:q} --expect {params.expected} > {log} 2>&1"


rule summary:
    input:
        parsed=all_parsed,
        compressed=all_compressed,
        full=all_full_evals,
    output:
        csv=os.path.join(RESULTS, "summary.csv"),
        settings=os.path.join(RESULTS, "summary-settings.csv"),
        md=os.path.join(RESULTS, "summary.md"),
    log:
        os.path.join(LOGS, "summary.log"),
    shell:
        "eps-resnet summarize --in {input.parsed} --compressed {input.compressed} "
        "--out {output.csv} --md {output.md} > {log} 2>&1"
