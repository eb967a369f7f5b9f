# Logs to tidy CSVs, the figures per experiment, the summary against the paper.


rule parse_experiment:
    input:
        experiment_done_markers,
    output:
        csv=os.path.join(RESULTS, "{experiment}", "runs.csv"),
        settings=report(
            os.path.join(RESULTS, "{experiment}", "settings.html"),
            caption="../report/settings.rst",
            category="{experiment}",
            labels={"result": "settings of the runs"},
        ),
    log:
        os.path.join(LOGS, "parse", "{experiment}.log"),
    params:
        runs=experiment_run_dirs,
    shell:
        "eps-resnet parse {params.runs:q} --experiment {wildcards.experiment} --out {output.csv:q} "
        "--settings-html {output.settings:q} > {log:q} 2>&1"


rule figure:
    input:
        os.path.join(RESULTS, "{experiment}", "runs.csv"),
    output:
        png=report(
            os.path.join(FIGURES, "{experiment}-{kind}.png"),
            caption="../report/figure.rst",
            category="{experiment}",
            labels={"result": "figure: {kind}"},
        ),
        pdf=os.path.join(FIGURES, "{experiment}-{kind}.pdf"),
    log:
        os.path.join(LOGS, "figures", "{experiment}-{kind}.log"),
    params:
        expected=expected_runs,
        title=figure_title,
        caption=lambda wildcards: figure_caption(wildcards.kind, wildcards.experiment),
    shell:
        "eps-resnet plot {wildcards.kind} --in {input:q} --out {output.png:q} --pdf "
        "--title {params.title:q} --expect {params.expected} > {log:q} 2>&1"


# The report's first result per experiment: its figures, each with its caption beside it.
rule figures_page:
    input:
        expand(os.path.join(FIGURES, "{{experiment}}-{kind}.png"), kind=PLOT_KINDS),
    output:
        html=report(
            os.path.join(RESULTS, "{experiment}", "figures.html"),
            caption="../report/figures-page.rst",
            category="{experiment}",
            labels={"result": "all figures, with captions"},
        ),
    log:
        os.path.join(LOGS, "figures", "{experiment}-page.log"),
    params:
        title=figure_title,
    shell:
        "eps-resnet figures-page {input:q} --experiment {wildcards.experiment} "
        "--title {params.title:q} --out {output.html:q} > {log:q} 2>&1"


# The grid of a dataset: final values of several experiments against depth or ε.
rule grid_figure:
    input:
        grid_inputs,
    output:
        png=report(
            os.path.join(FIGURES, PAPER, "{dataset}-{grid_kind}.png"),
            caption="../report/grid.rst",
            category="The paper's grid",
            labels={"figure": "{dataset} against {grid_kind}"},
        ),
        pdf=os.path.join(FIGURES, PAPER, "{dataset}-{grid_kind}.pdf"),
    log:
        os.path.join(LOGS, "figures", "paper-{dataset}-{grid_kind}.log"),
    params:
        expected=grid_expected,
        title=grid_title,
        caption=lambda wildcards: grid_caption(wildcards.grid_kind, wildcards.dataset),
    shell:
        "eps-resnet plot {wildcards.grid_kind} --in {input:q} --out {output.png:q} --pdf "
        "--title {params.title:q} --expect {params.expected} > {log:q} 2>&1"


SUMMARIZE = (
    "eps-resnet summarize --in {input.parsed:q} --compressed {input.compressed:q} "
    "--out {output.csv:q} --md {output.md:q} --html {output.html:q} > {log:q} 2>&1"
)


# The seed's experiments (the group main) against the paper: part of `all`.
rule summary:
    input:
        unpack(summary_inputs("all")),
    output:
        csv=os.path.join(RESULTS, "summary.csv"),
        settings=os.path.join(RESULTS, "summary-settings.csv"),
        md=os.path.join(RESULTS, "summary.md"),
        html=report(
            os.path.join(RESULTS, "summary.html"),
            caption="../report/summary.rst",
            category="Summary",
            labels={"result": "against the paper"},
        ),
    log:
        os.path.join(LOGS, "summary.log"),
    shell:
        SUMMARIZE


# Every experiment of the config against the paper: part of `paper`.
rule paper_summary:
    input:
        unpack(summary_inputs(PAPER)),
    output:
        csv=os.path.join(RESULTS, PAPER, "summary.csv"),
        settings=os.path.join(RESULTS, PAPER, "summary-settings.csv"),
        md=os.path.join(RESULTS, PAPER, "summary.md"),
        html=report(
            os.path.join(RESULTS, PAPER, "summary.html"),
            caption="../report/summary.rst",
            category="The paper's grid",
            labels={"figure": "summary of every experiment"},
        ),
    log:
        os.path.join(LOGS, "paper-summary.log"),
    shell:
        SUMMARIZE


rule estimate:
    output:
        os.path.join(RESULTS, "estimate.md"),
    log:
        os.path.join(LOGS, "estimate.log"),
    run:
        from eps_resnet.atomic import write_text
        from eps_resnet.results.estimate import (
            estimate,
            markdown,
            parse_throughput,
            runs_of,
        )

        costs = estimate(
            runs_of(RUNS, ["all"]), parse_throughput(config["throughput"])
        )
        write_text(output[0], markdown(costs, "all"))
