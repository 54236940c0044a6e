"""The numbers behind `report`, `check` and `plot`: rows in, plain records out.

Runs are plain rows (dicts, as in runs.csv) and every module here is standard library (no
scipy, pandas, rich or torch), so `dropbench report` and `dropbench check` answer at once and
any caller (the CLI, a script, a library API) gets the very statistics a report prints.

    tdist         Student's t: the regularized incomplete beta, t_sf, t_ppf
    significance  tests of one sweep's groups: Welch's t-test, the paired t-test
    spread        the spreads after ±: std, the literature's se, the 95% t-interval
    taxonomy      what each runs.csv column is to an analysis: config, result, repetition, data set
    plugins       what regularizers declare that analysis reads (keys they set, their notes)
    metrics       the compared metric: its column, its train counterpart, which way is better
    grouping      which keys name a sweep's groups, and what a coarse grouping pools
    labels        names for people: a group's label, a csv file's, a data set's
    pairing       each run against its reference twin: paired differences
    summary       one record per group: repetitions, means, spreads, rank, paired difference
    selection     which epoch a run is reported at (--epoch best, --select-on) and what that chose on
    platforms     which platforms computed the runs, and the note where they differ
    wide          the summary pivoted as the literature prints it: data sets by groups
    budgets       a tuning's fairness: each method's grid points and its choices at a grid's edge
"""
