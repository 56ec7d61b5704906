import os
import sys

import torch

# Several test processes may share two cores; one thread each keeps them from thrashing.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")
sys.dont_write_bytecode = True
