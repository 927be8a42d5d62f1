# Ensemble of the top-k split models per trait, and the paper's Table 1 and Figure 2.


rule evaluate:
    input:
        predictions=expand(f"{RESULTS}/predictions/{{trait}}", trait=TRAITS),
        metrics=expand(
            f"{RESULTS}/models/{{trait}}/split_{{split}}/metrics.json",
            trait=TRAITS,
            split=SPLITS,
        ),
        histories=expand(
            f"{RESULTS}/models/{{trait}}/split_{{split}}/history.tsv",
            trait=TRAITS,
            split=SPLITS,
        ),
        labels=expand(f"{RESULTS}/labels/{{trait}}.tsv", trait=TRAITS),
        splits=f"{RESULTS}/splits/splits.tsv",
        qc=analysis_qc_path,
    output:
        members=f"{RESULTS}/evaluation/ensemble_members.tsv",
        slide_scores=f"{RESULTS}/evaluation/slide_scores.tsv",
        table1=f"{RESULTS}/evaluation/table1.tsv",
        spearman=f"{RESULTS}/evaluation/spearman.tsv",
        figure_png=report(
            f"{RESULTS}/evaluation/figure2.png",
            caption="report/figure2.rst",
            category="3. Evaluation",
            subcategory="Figure 2",
            labels={"figure": "Figure 2: slide scores by label"},
        ),
        figure_pdf=f"{RESULTS}/evaluation/figure2.pdf",
    log:
        f"{LOGS}/evaluate.log",
    benchmark:
        f"{BENCHMARKS}/evaluate.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        traits=TRAITS,
        ensemble=config["ensemble"],
        evaluation=config["evaluation"],
        seed=config["seed"],
    script:
        "../workflow_scripts/scripts/evaluate.py"
