"""The main job, on top of every other stage.

- ``steps``: the job's named steps (``export``, ``simulate``, ``lower``, ``place``, ``compile_graph``,
  ``check_rules``, ``check_on_lava``, ``compare_spikes``, ``count``, ``price``, ``report``), each a function of
  explicit inputs, shared by ``snncompile compile``, ``simulate`` and ``run``; the run report (``SCHEMA``).
- ``artifact``: a compiled model as one object (:class:`Compiled`: integer graph, placement, compile record).
- ``run``: :func:`run_job`, the steps in order, behind ``snncompile run``.
"""
from .artifact import Compiled, CompileRecord, ModelSource
from .run import run_job
from .steps import SCHEMA, JobReport

__all__ = ["Compiled", "CompileRecord", "ModelSource", "run_job", "SCHEMA", "JobReport"]
