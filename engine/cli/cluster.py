"""``python -m engine cluster slurm --jobs N --gpus-per-job 1 ...``: Dask workers as SLURM jobs.

Starts a scheduler here and submits ``--jobs`` SLURM jobs through dask-jobqueue (an optional package),
each running one Dask worker process per GPU with ``--preload engine.distributed.worker``. Writes the
scheduler file, prints its address and keeps the cluster until Ctrl-C; segment runs meanwhile use it with
``--executor dask --scheduler FILE``. ``--dry-run`` prints the job script without submitting anything.
"""

from __future__ import annotations

import argparse
import sys
import time

from engine.errors import UserError

WORKER_PRELOAD = "engine.distributed.worker"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    slurm = kinds.add_parser("slurm", help="workers as SLURM jobs (needs dask-jobqueue)")
    slurm.add_argument("--jobs", type=int, required=True, help="SLURM jobs to submit")
    slurm.add_argument(
        "--gpus-per-job", type=int, default=1, help="GPUs per job: one worker each (default 1)"
    )
    slurm.add_argument("--cores", type=int, default=8, help="CPU cores per job (default 8)")
    slurm.add_argument("--memory", default="64GB", help="memory per job (default 64GB)")
    slurm.add_argument("--walltime", default="04:00:00", help="wall time per job (default 04:00:00)")
    slurm.add_argument("--queue", help="SLURM partition")
    slurm.add_argument("--account", help="SLURM account")
    slurm.add_argument("--python", default=sys.executable, help="the engine's Python on the nodes")
    slurm.add_argument(
        "--scheduler-file", default="rs-ovseg-scheduler.json", help="where to write the scheduler file"
    )
    slurm.add_argument("--dry-run", action="store_true", help="print the job script, submit nothing")


def slurm_cluster(args: argparse.Namespace):
    """A dask_jobqueue.SLURMCluster for ``args`` (not yet scaled)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise UserError(
            "python -m engine cluster slurm needs the optional package dask-jobqueue: "
            "pip install -c constraints.txt dask-jobqueue (or start workers yourself: "
            f"dask worker tcp://HOST:8786 --nthreads 1 --resources GPU=1 --preload {WORKER_PRELOAD})"
        ) from None
    if args.jobs < 1 or args.gpus_per_job < 1:
        raise UserError("--jobs and --gpus-per-job must be at least 1")
    gpus = args.gpus_per_job
    return SLURMCluster(
        cores=gpus,  # one thread per worker: one block at a time on its GPU
        job_cpu=max(args.cores, gpus),
        processes=gpus,  # one worker process per GPU; each takes GPU k of its job by its name (worker.py)
        memory=args.memory,
        walltime=args.walltime,
        queue=args.queue,
        account=args.account,
        python=args.python,
        job_extra_directives=[f"--gres=gpu:{gpus}"],
        worker_extra_args=["--resources", "GPU=1", "--preload", WORKER_PRELOAD],
    )


def run(args: argparse.Namespace) -> int:
    cluster = slurm_cluster(args)
    if args.dry_run:
        print(cluster.job_script())
        cluster.close()
        return 0
    from distributed import Client

    cluster.scale(jobs=args.jobs)
    client = Client(cluster)
    client.write_scheduler_file(args.scheduler_file)
    print(f"scheduler {cluster.scheduler_address}; file {args.scheduler_file}")
    print(f"dashboard {client.dashboard_link}")
    print(f"segment with: --executor dask --scheduler {args.scheduler_file}   (Ctrl-C stops the cluster)")
    try:
        while True:
            time.sleep(5)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
        cluster.close()
    return 0
