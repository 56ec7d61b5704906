"""Studies beyond the benchmark table, each its own command."""
