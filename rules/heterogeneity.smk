# Molecular cartographies, heterogeneity maps, HTI and HTA per slide, and survival by heterogeneity.


rule choose_traits:
    input:
        table1=f"{RESULTS}/evaluation/table1.tsv",
        members=f"{RESULTS}/evaluation/ensemble_members.tsv",
    output:
        traits=f"{RESULTS}/heterogeneity/traits.tsv",
    log:
        f"{LOGS}/choose_traits.log",
    benchmark:
        f"{BENCHMARKS}/choose_traits.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        traits=config["heterogeneity"]["traits"],
        n=config["heterogeneity"]["n_traits"],
        choose_by=config["heterogeneity"]["choose_by"],
    script:
        "../workflow_scripts/scripts/choose_traits.py"


rule cartography:
    input:
        predictions=expand(f"{RESULTS}/predictions/{{trait}}", trait=TRAITS),
        members=f"{RESULTS}/evaluation/ensemble_members.tsv",
        qc=analysis_qc_path,
        stores=analysed_stores,
    output:
        cartography=directory(f"{RESULTS}/cartography"),
    log:
        f"{LOGS}/cartography.log",
    benchmark:
        f"{BENCHMARKS}/cartography.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        traits=TRAITS,
        ensemble=config["ensemble"],
    script:
        "../workflow_scripts/scripts/cartography.py"


rule heterogeneity:
    input:
        cartography=f"{RESULTS}/cartography",
        traits=f"{RESULTS}/heterogeneity/traits.tsv",
        qc=analysis_qc_path,
        stores=analysed_stores,
    output:
        hti=f"{RESULTS}/heterogeneity/hti.tsv",
        gallery=report(
            f"{RESULTS}/heterogeneity/gallery.png",
            caption="report/gallery.rst",
            category="4. Heterogeneity",
            subcategory="Gallery",
            labels={"figure": "Gallery of maps by HTI"},
        ),
        maps=directory(f"{RESULTS}/heterogeneity/maps"),
    log:
        f"{LOGS}/heterogeneity.log",
    benchmark:
        f"{BENCHMARKS}/heterogeneity.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        hta_region=config["heterogeneity"]["hta_region"],
        permutations=config["heterogeneity"]["permutations"],
        hta_log_base=config["heterogeneity"]["hta_log_base"],
        seed=config["seed"],
        map_alpha=config["maps"]["alpha"],
    script:
        "../workflow_scripts/scripts/heterogeneity.py"


rule survival:
    input:
        hti=f"{RESULTS}/heterogeneity/hti.tsv",
        clinical=f"{RESULTS}/survival/clinical.tsv",
        labels=expand(f"{RESULTS}/labels/{{trait}}.tsv", trait=TRAITS),
        splits=f"{RESULTS}/splits/splits.tsv",
        traits=f"{RESULTS}/heterogeneity/traits.tsv",
    output:
        logrank=f"{RESULTS}/survival/logrank.tsv",
        cox=f"{RESULTS}/survival/cox.tsv",
        cohort=f"{RESULTS}/survival/cohort.tsv",
        group_tests=f"{RESULTS}/survival/group_tests.tsv",
        figures=report(
            directory(f"{RESULTS}/survival/figures"),
            patterns=["{name}.png"],
            caption="report/survival_figures.rst",
            category="5. Survival",
            subcategory=report_survival_subcategory,
            labels=report_survival_labels,
        ),
    log:
        f"{LOGS}/survival.log",
    benchmark:
        f"{BENCHMARKS}/survival.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        survival=config["survival"],
    script:
        "../workflow_scripts/scripts/survival.py"


rule qupath:
    input:
        cartography=f"{RESULTS}/cartography",
        traits=f"{RESULTS}/heterogeneity/traits.tsv",
        predictions=expand(f"{RESULTS}/predictions/{{trait}}", trait=TRAITS),
        members=f"{RESULTS}/evaluation/ensemble_members.tsv",
        qc=analysis_qc_path,
        stores=analysed_stores,
    output:
        qupath=report(
            directory(f"{RESULTS}/qupath"),
            patterns=["{name}.geojson"],
            caption="report/qupath.rst",
            category="4. Heterogeneity",
            subcategory="QuPath exports",
        ),
    log:
        f"{LOGS}/qupath.log",
    benchmark:
        f"{BENCHMARKS}/qupath.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        threshold=config["ensemble"]["threshold"],
    script:
        "../workflow_scripts/scripts/qupath.py"


rule viewer:
    input:
        hti=f"{RESULTS}/heterogeneity/hti.tsv",
        traits=f"{RESULTS}/heterogeneity/traits.tsv",
        cartography=f"{RESULTS}/cartography",
        predictions=expand(f"{RESULTS}/predictions/{{trait}}", trait=TRAITS),
        members=f"{RESULTS}/evaluation/ensemble_members.tsv",
        stores=analysed_stores,
    output:
        viewer=report(
            directory(f"{RESULTS}/viewer"),
            htmlindex="index.html",
            caption="report/viewer.rst",
            category="4. Heterogeneity",
            subcategory="Viewer",
        ),
    log:
        f"{LOGS}/viewer.log",
    benchmark:
        f"{BENCHMARKS}/viewer.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        viewer=output_settings("viewer"),
        map_alpha=config["maps"]["alpha"],
        cohort=COHORT,
    script:
        "../workflow_scripts/scripts/viewer.py"
