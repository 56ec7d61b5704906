"""An experiment before it runs: the YAML as frozen dataclasses, the planned runs, their folders."""
