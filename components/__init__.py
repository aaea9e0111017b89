"""kfp_yolo.components: what runs inside KFP steps and training pods.

Imported inside a KFP step's process (kfp.dsl.executor_main), this package installs the step
boundary (boundary.install: the failure record, and the step's life tied to `kfp-yolo run`'s);
anywhere else, importing it does nothing.
"""

import sys as _sys

if _sys.argv and _sys.argv[0].endswith("executor_main.py"):
    from kfp_yolo.components import boundary as _boundary

    if _boundary.is_step_process():
        _boundary.install()
