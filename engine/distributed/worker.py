"""The worker side: a worker plugin that loads the models once per worker, and the block task.

Preload it on workers started by hand (``dask worker tcp://HOST:8786 --nthreads 1 --resources GPU=1
--preload engine.distributed.worker``); a client also registers the plugin on workers that lack it.
A task receives the run's ``BlockJob`` (options and a few numbers) and a block's five numbers, opens the
input itself (a shared file system, or GDAL's /vsis3/ and friends) and writes the block's part files.
"""

from __future__ import annotations

import logging

from distributed import WorkerPlugin, get_worker

log = logging.getLogger(__name__)
PLUGIN_NAME = "rs-ovseg-models"


class ModelPlugin(WorkerPlugin):
    """Per worker: the ModelCache (weights loaded once) and the opened run of the latest job."""

    name = PLUGIN_NAME

    def setup(self, worker) -> None:
        from engine.methods.registry import ModelCache
        from engine.runtime.allocator import keep_freed_memory
        from engine.runtime.float_env import flush_denormals

        keep_freed_memory()
        flush_denormals()
        pin_gpu(str(worker.name))
        self.models = ModelCache()
        self.contexts: dict = {}

    def context(self, job):
        """The BlockContext of ``job`` (opened on the first block of the job this worker gets)."""
        if job.key not in self.contexts:
            self._close()
            from engine.pipeline.partitioned import build_context

            log.info("worker: opening run %s", job.key)
            self.contexts[job.key] = build_context(job, self.models)
        return self.contexts[job.key]

    def _close(self) -> None:
        for context in self.contexts.values():
            context.source.close()
        self.contexts.clear()

    def teardown(self, worker) -> None:
        self._close()
        self.models.clear()


def pin_gpu(name: str) -> int | None:
    """Workers sharing a job's GPUs (``dask worker --nworkers K``, named ``NAME-0`` ... ``NAME-K-1``):
    worker k takes GPU k so that "cuda" means a different GPU in each. Returns the GPU taken, if any."""
    import torch

    suffix = name.rsplit("-", 1)[-1]
    if not suffix.isdigit() or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return None
    index = int(suffix) % torch.cuda.device_count()
    torch.cuda.set_device(index)
    log.info("worker %s: GPU %d", name, index)
    return index


def plugin_of(worker) -> ModelPlugin:
    plugin = worker.plugins.get(PLUGIN_NAME)
    if plugin is None:  # neither preloaded nor registered yet (a worker that joined mid-run)
        plugin = ModelPlugin()
        plugin.setup(worker)
        worker.plugins[PLUGIN_NAME] = plugin
    return plugin


def run_block(job, numbers) -> dict:
    """Task: process block ``numbers`` (engine.pipeline.blocks.Block.to_json) of ``job`` into its parts."""
    from engine.pipeline.blocks import Block
    from engine.pipeline.parts import PartsFolder, write_block_part

    context = plugin_of(get_worker()).context(job)
    return write_block_part(context, PartsFolder(job.parts, job.fingerprint), Block.from_json(numbers))


async def dask_setup(worker) -> None:
    """``--preload engine.distributed.worker``: install the plugin when the worker starts."""
    await worker.plugin_add(ModelPlugin(), name=PLUGIN_NAME)
