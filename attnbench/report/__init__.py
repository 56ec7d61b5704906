"""The report layer: runs.csv and curves.csv, seed statistics, tables and figures, for
`report`, `readme` and the end of `run`."""
