"""Lava backends: export of lowered integer graphs to Lava 0.10.0 / lava-dl 0.6.0 (an optional extra).

- :mod:`.netx`: the part of a lowered, scheduled graph that lava-dl's netx can express (:mod:`.netx_weights`:
  its weights, exact or refused), written as netx HDF5 (:mod:`.netx_hdf5`) and run with
  ``lava.lib.dl.netx.hdf5.Network`` (:mod:`.netx_run`) in an isolated Lava session (:mod:`.session`: a child
  process under a timeout, nothing left behind), the session the backend's own runner (:mod:`.runner`) uses.

Nothing here defines a Lava Process: Lava's compiler executes every module beside a Process definition
(spec lava_loihi.md §1.4), so Process classes go in their own import-safe modules of this package.
Importing this package does not import Lava.
"""
from snncompile.backends.lava.netx import NetxExportError, NetxLayer, NetxPlan, expressible_chain, plan_netx
from snncompile.backends.lava.netx_hdf5 import NetxExport, write_netx
from snncompile.backends.lava.netx_run import NetxRun, NetxRunError, run_netx
from snncompile.backends.lava.netx_weights import netx_dense_weights

__all__ = ["NetxExport", "NetxExportError", "NetxLayer", "NetxPlan", "NetxRun", "NetxRunError", "expressible_chain",
           "netx_dense_weights", "plan_netx", "run_netx", "write_netx"]
