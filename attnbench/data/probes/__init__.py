"""Context probes: segmentation tasks on which a local network is at chance by construction.

The registry: every probe the config's `probes:` and `data.probe` accept, in the
order the reports list them. Each is a `Probe` (base.py) declared in its own file;
adding one is that file, its entry below, and its test.

pairing       relating items by content and counting them (pairing.py)
retrieval     looking up one distant cue and broadcasting it (retrieval.py)
connectivity  tracing a path from a cue along a chain of links (connectivity.py)
"""

from __future__ import annotations

from . import connectivity, pairing, retrieval
from .base import Probe, local_chance_iou, probe_options
from .grid import ProbeTask

REGISTRY: dict[str, Probe] = {
    p.name: p for p in (pairing.PROBE, retrieval.PROBE, connectivity.PROBE)
}
PROBES = tuple(REGISTRY)
CLASS_NAMES = {name: probe.class_names for name, probe in REGISTRY.items()}

__all__ = [
    "CLASS_NAMES", "PROBES", "REGISTRY", "Probe", "ProbeTask", "local_chance_iou", "probe_options",
]  # fmt: skip
