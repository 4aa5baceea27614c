"""The main job and the compiled artifact, on top of every other stage.

- ``steps``: the job's named steps (``export``, ``simulate``, ``lower``, ``place``, ``compile_graph``,
  ``check_rules``, ``check_on_lava``, ``compare_spikes``, ``count``, ``price``, ``report``), each a function of
  explicit inputs, shared by ``snncompile compile``, ``simulate`` and ``run``; the run report (``SCHEMA``).
- ``artifact``: a compiled model as one object (:class:`Compiled`: integer graph, placement, compile record)
  with its writer and reader (``save_compiled``, ``load_compiled``).
- ``run``: :func:`run_job`, the steps in order, behind ``snncompile run``.
"""
from .artifact import (ArtifactError, Compiled, CompileRecord, ModelSource, load_compiled, load_record, record_path,
                       save_compiled)
from .run import run_job
from .steps import SCHEMA, JobReport

__all__ = ["ArtifactError", "Compiled", "CompileRecord", "ModelSource", "load_compiled", "load_record",
           "record_path", "save_compiled", "run_job", "SCHEMA", "JobReport"]
