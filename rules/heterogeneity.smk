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
        qc=qc_table_path,
        stores=passed_stores,
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
        qc=qc_table_path,
        stores=passed_stores,
    output:
        hti=report(
            f"{RESULTS}/heterogeneity/hti.tsv",
            caption="report/hti.rst",
            category="4. Heterogeneity",
        ),
        gallery=report(
            f"{RESULTS}/heterogeneity/gallery.png",
            caption="report/gallery.rst",
            category="4. Heterogeneity",
        ),
        maps=report(
            directory(f"{RESULTS}/heterogeneity/maps"),
            patterns=["{name}.overlay.png"],
            caption="report/maps.rst",
            category="4. Heterogeneity",
            subcategory="Heterogeneity maps",
        ),
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
        logrank=report(
            f"{RESULTS}/survival/logrank.tsv",
            caption="report/logrank.rst",
            category="5. Survival",
        ),
        cox=report(
            f"{RESULTS}/survival/cox.tsv",
            caption="report/cox.rst",
            category="5. Survival",
        ),
        cohort=f"{RESULTS}/survival/cohort.tsv",
        group_tests=report(
            f"{RESULTS}/survival/group_tests.tsv",
            caption="report/group_tests.rst",
            category="5. Survival",
        ),
        figures=report(
            directory(f"{RESULTS}/survival/figures"),
            patterns=["{name}.png"],
            caption="report/survival_figures.rst",
            category="5. Survival",
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
