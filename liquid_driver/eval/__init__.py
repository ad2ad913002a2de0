"""Closed-loop evaluation of driving policies in the embedded simulator, without ROS.

`drive_run` drives one (layout, visual seed, noise) condition with a policy
and counts interventions; `liquid_driver.eval.cli` is `liquid-driver-eval`.
"""

from liquid_driver.eval.core import (
    Condition,
    EvalSettings,
    RunResult,
    add_gaussian_noise,
    build_conditions,
    drive_run,
)
from liquid_driver.eval.report import write_report

__all__ = [
    "Condition",
    "EvalSettings",
    "RunResult",
    "add_gaussian_noise",
    "build_conditions",
    "drive_run",
    "write_report",
]
