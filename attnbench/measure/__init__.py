"""Measuring a model's cost: MACs, memory and time; the cost figures of one run."""
