#!/bin/sh
# Prints the rows the benches appended to target/bench-summary.tsv as one table.
# --markdown: the same table in Markdown, for the README's performance section.
set -eu
file=${BENCH_SUMMARY:-target/bench-summary.tsv}
[ -s "$file" ] || { echo "bench-table: no figures in $file (run make bench)" >&2; exit 1; }
if [ "${1:-}" = --markdown ]; then
    printf '| figure | codara | python original | target | method |\n|---|---:|---:|---:|---|\n'
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$file"
    exit 0
fi
awk -F'\t' '
    { for (i = 1; i <= 4; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }; method[NR] = $5 }
    END {
        h[1] = "figure"; h[2] = "codara"; h[3] = "python"; h[4] = "target"
        for (i = 1; i <= 4; i++) if (length(h[i]) > w[i]) w[i] = length(h[i])
        printf "%-" w[1] "s  %" w[2] "s  %" w[3] "s  %" w[4] "s  %s\n", h[1], h[2], h[3], h[4], "method"
        for (r = 1; r <= NR; r++)
            printf "%-" w[1] "s  %" w[2] "s  %" w[3] "s  %" w[4] "s  %s\n", cell[r, 1], cell[r, 2], cell[r, 3], cell[r, 4], method[r]
    }' "$file"
