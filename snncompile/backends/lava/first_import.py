"""Imported by every module of this package that imports Lava at its top, before Lava: Lava's first import calls
``multiprocessing.set_start_method('fork')``, which raises where the caller has already set a start method
(spawn, a test's, a data loader's). :func:`.session.import_lava` makes that first import safe and puts the
caller's method back. Lava's compiler executes this file too (it sits beside the Process definitions); with
Lava imported, the call imports nothing new."""
from snncompile.backends.lava.session import import_lava

import_lava()
