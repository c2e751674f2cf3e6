"""Scanning many suspects against every registered fingerprint, on one machine or a Ray cluster.

The stages of a scan, one module each: :mod:`.panel` (the fingerprints of a scan, and one
suspect checked against all of them with one batch of queries), :mod:`.engines` (where the
checks run: a local process pool or Ray), :mod:`.run` (the driver that records every outcome
in the registry and resumes), :mod:`.control` (how the verdicts of many fingerprints are decided
together: family-wise by default) and :mod:`.report` (matches, failures, score distributions).
"""

from .control import CONTROLS, ErrorControl
from .engines import ENGINES, Engine, EngineUnavailable, LocalEngine, RayEngine, get_engine, register_engine
from .panel import OpenOptions, Panel, QueryPlan, Suspect
from .report import ScanReport
from .run import endpoints_in, scan, suspects_in

__all__ = ["CONTROLS", "ENGINES", "Engine", "EngineUnavailable", "ErrorControl", "LocalEngine", "OpenOptions", "Panel",
           "QueryPlan", "RayEngine", "ScanReport", "Suspect", "endpoints_in", "get_engine", "register_engine", "scan",
           "suspects_in"]
