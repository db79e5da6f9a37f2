"""Deployment pieces: local:N pins one worker per GPU, the SLURM job script, the Kubernetes manifest."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from engine.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_local_workers_take_one_gpu_each():
    pytest.importorskip("distributed")
    from engine.distributed.cluster import local_worker_specs

    specs = local_worker_specs(3, 2)
    envs = [spec["options"]["env"]["CUDA_VISIBLE_DEVICES"] for spec in specs.values()]
    assert envs == ["0", "1", "0"]
    assert all(spec["options"]["resources"] == {"GPU": 1} for spec in specs.values())
    assert all(spec["options"]["nthreads"] == 1 for spec in specs.values())
    cpu = local_worker_specs(2, 0)
    assert all("CUDA_VISIBLE_DEVICES" not in s["options"]["env"] for s in cpu.values())
    assert all(s["options"]["preload"] == ["engine.distributed.worker"] for s in cpu.values())


def test_bad_scheduler_is_a_user_error(tmp_path, capsys):
    pytest.importorskip("distributed")
    from engine.distributed.cluster import connect
    from engine.errors import UserError

    cases = [("local:0", "N >= 1"), (str(tmp_path / "none.json"), "not an address"), ("", "needs")]
    for text, message in cases:
        with pytest.raises(UserError, match=message):
            connect(text)


def test_slurm_job_script_runs_one_single_thread_worker_per_gpu(capsys):
    pytest.importorskip("dask_jobqueue")
    argv = ["cluster", "slurm", "--jobs", "2", "--gpus-per-job", "2", "--cores", "16", "--queue", "gpu"]
    assert main([*argv, "--dry-run"]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --gres=gpu:2" in script and "#SBATCH --cpus-per-task=16" in script
    assert "#SBATCH -p gpu" in script
    assert "--nthreads 1" in script and "--nworkers 2" in script
    assert "--resources GPU=1" in script and "--preload engine.distributed.worker" in script


def test_slurm_without_dask_jobqueue_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # as if not installed
    assert main(["cluster", "slurm", "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert "dask-jobqueue" in err and "--preload engine.distributed.worker" in err


def test_gpu_pinning_by_worker_name_needs_several_gpus():
    pytest.importorskip("distributed")
    from engine.distributed.worker import pin_gpu

    assert pin_gpu("tcp://10.0.0.1:1234") is None  # no numbered name
    assert pin_gpu("job-1") is None  # on this machine: fewer than two GPUs


def test_kubernetes_manifest_preloads_the_worker_plugin():
    manifest = yaml.safe_load((ROOT / "resources" / "deploy" / "dask-kubernetes.yaml").read_text())
    assert manifest["apiVersion"] == "kubernetes.dask.org/v1" and manifest["kind"] == "DaskCluster"
    worker = manifest["spec"]["worker"]["spec"]["containers"][0]
    assert worker["args"][:1] == ["dask-worker"]
    assert "engine.distributed.worker" in worker["args"] and "GPU=1" in worker["args"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    service_ports = {p["port"] for p in manifest["spec"]["scheduler"]["service"]["ports"]}
    assert service_ports == {8786, 8787}
