"""``--executor dask``: the run's blocks as tasks on a Dask cluster, progress and cancel as locally.

Each task carries the ``BlockJob`` and a block's five numbers. A task that raises is tried again
(``--retries``); a worker that dies takes only its running block with it (the scheduler runs it again
elsewhere); a block that keeps failing stops the run with a message naming it. Finished blocks are part
files on disk, so ``--resume`` picks a failed run up from there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from engine.errors import UserError
from engine.pipeline.blocks import Block
from engine.pipeline.progress import CancelToken, ProgressEvent, ignore_progress

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25


class BlockFailedError(UserError):
    """A block failed on every try."""


class DaskExecutor:
    name = "dask"
    device = "per worker"

    def __init__(self, scheduler: str | None, retries: int, *, cancel=None, progress=ignore_progress) -> None:
        from engine.distributed.cluster import connect

        self.retries = max(0, int(retries))
        self.cancel = cancel or CancelToken()
        self.progress = progress
        self.connection = connect(scheduler)
        self.client = self.connection.client
        self.progress(ProgressEvent(0.01, "model", f"Dask cluster, dashboard {self.client.dashboard_link}"))
        self._register_plugin()

    def _register_plugin(self) -> None:
        from engine.distributed.worker import PLUGIN_NAME, ModelPlugin

        # Registering replaces a preloaded plugin (and its loaded models): only where it is missing.
        has = self.client.run(lambda dask_worker: PLUGIN_NAME in dask_worker.plugins)
        if not has or not all(has.values()):
            self.client.register_plugin(ModelPlugin(), name=PLUGIN_NAME)

    def run(self, job, blocks: list[Block], parts) -> Iterator[dict]:
        from distributed import wait

        from engine.distributed.worker import run_block

        pending = {}
        for block in blocks:
            future = self.client.submit(
                run_block,
                job,
                block.to_json(),
                key=f"rs-ovseg-{job.key}-block-{block.index}",
                retries=self.retries,
                pure=False,
            )
            pending[future] = block
        try:
            while pending:
                self.cancel.check()
                try:
                    done = wait(list(pending), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")[0]
                except TimeoutError:
                    continue  # none finished yet: look at the cancel token again
                for future in done:
                    block = pending.pop(future)
                    if future.status != "finished":
                        raise BlockFailedError(self._failure(job, block, future))
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()

    def _failure(self, job, block: Block, future) -> str:
        error = future.exception()
        tries = self.retries + 1
        plan = getattr(self, "plan", None)
        where = block.describe(plan) if plan is not None else _describe(block)
        return f"{where} failed after {tries} tries: {type(error).__name__}: {error}"

    def close(self) -> None:
        self.connection.close()


def _describe(block: Block) -> str:
    rows, cols = block.rows, block.cols
    return f"block {block.index} (tile rows {rows[0]}-{rows[1] - 1}, columns {cols[0]}-{cols[1] - 1})"
