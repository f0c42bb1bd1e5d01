"""``calibrate``: whether SCR helps a given model on given yes/no questions, at which setting, and how sure.

Library entry point for the CLI (``python -m scr_core calibrate``) and, later, a ComfyUI node::

    from scr_core.calibrate import calibrate, load_questions, write_outputs
    result = calibrate(pipe, load_questions("data/pope", limit=200))
    print(result.verdict); write_outputs(result, "calibration/")
"""

from .grid import DEFAULT_KS, DEFAULT_LAMS, Setting, build_grid, default_hook_grid, parse_hook_grid
from .questions import Question, load_questions, split_holdout
from .report import markdown, plot, write_outputs
from .run import Calibration, Scores, SettingResult, calibrate
from .stats import bootstrap_mean_ci, holm

__all__ = ["DEFAULT_KS", "DEFAULT_LAMS", "Calibration", "Question", "Scores", "Setting", "SettingResult",
           "bootstrap_mean_ci", "build_grid", "calibrate", "default_hook_grid", "holm", "load_questions",
           "markdown", "parse_hook_grid", "plot", "split_holdout", "write_outputs"]
