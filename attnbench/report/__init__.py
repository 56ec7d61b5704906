"""`report` and `readme`: runs.csv and curves.csv, seed statistics, tables and figures."""
