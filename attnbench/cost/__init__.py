"""`profile`: MACs, parameters, memory and latency of every module and head."""
