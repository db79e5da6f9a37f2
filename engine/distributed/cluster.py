"""Connect to a Dask scheduler: ``tcp://HOST:PORT``, a scheduler file, or ``local:N`` workers here.

``local:N`` starts N worker processes (spawned: never forked after GDAL or CUDA started), one thread
each; on a machine with GPUs each worker sees one GPU (``CUDA_VISIBLE_DEVICES``, round robin) and
declares the resource ``GPU=1``, as a ``dask worker --resources GPU=1`` started by hand would.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from engine.errors import UserError

log = logging.getLogger(__name__)
WORKER_PRELOAD = "engine.distributed.worker"


def require_distributed():
    try:
        import distributed
    except ImportError:
        raise UserError(
            "--executor dask needs the packages dask and distributed: "
            "pip install -c constraints.txt dask distributed"
        ) from None
    return distributed


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # no usable CUDA: CPU workers
        return 0


def local_worker_specs(workers: int, gpus: int) -> dict:
    """Nanny specs for ``local:N``: one thread each, GPU i pinned to worker i mod gpus."""
    from distributed import Nanny

    specs = {}
    # CPU workers share the cores: each one's PyTorch gets its part (read when the worker starts).
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for n in range(workers):
        options: dict = {"nthreads": 1, "preload": [WORKER_PRELOAD], "env": {"OMP_NUM_THREADS": threads}}
        if gpus:
            options["env"] = {"CUDA_VISIBLE_DEVICES": str(n % gpus)}
            options["resources"] = {"GPU": 1}
        specs[f"worker-{n}"] = {"cls": Nanny, "options": options}
    return specs


@dataclass
class Connection:
    client: object
    cluster: object | None = None  # a cluster this process started (closed with the connection)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def connect(scheduler: str | None) -> Connection:
    """A Client for ``--scheduler``; logs the dashboard's address."""
    distributed = require_distributed()
    import dask

    text = (scheduler or "").strip()
    if not text:
        raise UserError("--executor dask needs --scheduler tcp://HOST:8786, a scheduler file, or local:N")
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        if text.startswith("local:"):
            try:
                workers = int(text.split(":", 1)[1])
            except ValueError:
                workers = 0
            if workers < 1:
                raise UserError(f"--scheduler {text}: local:N needs N >= 1 workers")
            cluster = distributed.SpecCluster(
                workers=local_worker_specs(workers, gpu_count()),
                scheduler={
                    "cls": distributed.Scheduler,
                    "options": {"dashboard_address": ":0", "host": "127.0.0.1"},
                },
                silence_logs=logging.WARNING,
            )
            connection = Connection(distributed.Client(cluster), cluster)
        elif "://" in text:
            try:
                connection = Connection(distributed.Client(text, timeout="30s"))
            except OSError as error:
                raise UserError(f"cannot reach the Dask scheduler at {text}: {error}") from None
        elif os.path.isfile(text):
            connection = Connection(distributed.Client(scheduler_file=text, timeout="30s"))
        else:
            raise UserError(
                f"--scheduler {text}: not an address (tcp://HOST:PORT), a scheduler file, or local:N"
            )
    log.info("Dask dashboard: %s", connection.client.dashboard_link)
    return connection
