"""Rendering: the analysis' records as people and scripts read them.

    text     number formats, markdown rows and the wording every table shares
    naming   what names a run: the config values that differ from its choices' defaults
    runs     the table of runs (one line per run)
    long     the summary, a line per group: rich and markdown
    wide     the summary as the literature prints it: rich and markdown
    records  the summary as CSV and JSON, every statistic at full precision
    check    the tables of `dropbench check` and of a baseline
"""
