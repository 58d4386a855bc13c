"""Layer planner: which contiguous blocks each host runs, for llama.cpp's `--tensor-split`.

Facade over the compiled `binpack_c` or the pure-Python twin `_binpack_py`
(picked by `olol._fast.load`); see `_binpack_py` for the algorithms,
`_plan_types` for inputs, results, errors and the two objectives, and
`_plan_latency` for the latency search's host orders and integer costs.

    plan = plan_layers(32, layer_bytes, output_bytes, kv_bytes_per_layer,
                       [Host("gpu-a", free, 2.0), Host("gpu-b", free, 1.0)], margin=0.1,
                       objective="balanced")
    plan.tensor_split_arg()  # "22,11"; objective="latency" (the default) puts all on gpu-a if it fits
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from olol._fast import load
from olol._fast._plan_types import OBJECTIVES, Assignment, Host, Plan, PlanError, check_objective

__all__ = [
    "IMPLEMENTATION",
    "OBJECTIVES",
    "Assignment",
    "Host",
    "Plan",
    "PlanError",
    "check_objective",
    "plan_layers",
]

if TYPE_CHECKING:
    from olol._fast._binpack_py import plan_layers
else:
    plan_layers = load("binpack").plan_layers

# Module name of the implementation in use ("olol._fast.binpack_c" or "olol._fast._binpack_py").
IMPLEMENTATION: str = load("binpack").__name__
