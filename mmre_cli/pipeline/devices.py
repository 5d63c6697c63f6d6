"""Where the learning stages and the predictor run: Lightning Fabric for ``--gpus``/``--nodes``, torch threads."""

from __future__ import annotations

import os

from mmre_cli.errors import MmreError


def make_fabric(gpus: int, nodes: int = 1):
    """Lightning Fabric for ``--gpus N``: 0 → CPU; 1 → one CUDA device; N > 1 → DDP on N devices.

    ``nodes = M > 1`` (``--nodes M``): DDP over M machines with N devices each (one CPU process
    each with ``--gpus 0``), Fabric's ``num_nodes``. The processes are started by the launcher —
    ``torchrun --nnodes M --nproc-per-node N --node-rank R --master-addr HOST --master-port PORT
    -m mmre_cli train-gnn --nodes M --gpus N ...`` on every machine, or ``srun`` under SLURM —
    and Fabric reads the rank and rendezvous from their environment (gloo on CPU, NCCL on GPUs).

    ``MMRE_CPU_DDP=K`` (K > 1) with ``--gpus 0`` runs K CPU processes with DDP over gloo — the
    way the DDP path is tested on machines without a GPU.
    """
    import torch
    from lightning.fabric import Fabric

    cpu_ddp = int(os.environ.get("MMRE_CPU_DDP", "0") or 0)
    if nodes < 1:
        raise MmreError(f"--nodes must be at least 1, not {nodes}")
    if nodes > 1:
        if gpus and (not torch.cuda.is_available() or torch.cuda.device_count() < gpus):
            raise MmreError(
                f"--gpus {gpus} asked for on each node, but this machine has "
                f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} CUDA device(s)"
            )
        return Fabric(accelerator="cuda" if gpus else "cpu", devices=gpus or 1, num_nodes=nodes, strategy="ddp")
    if gpus == 0:
        if cpu_ddp > 1:
            return Fabric(accelerator="cpu", devices=cpu_ddp, strategy="ddp")
        return Fabric(accelerator="cpu", devices=1)
    if not torch.cuda.is_available() or torch.cuda.device_count() < gpus:
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise MmreError(f"--gpus {gpus} asked for, but this machine has {have} CUDA device(s); use --gpus {have}")
    return Fabric(accelerator="cuda", devices=gpus, strategy="ddp" if gpus > 1 else "auto")


def cpu_threads(default: int = 1) -> None:
    """Intra-op threads: ``$MMRE_TORCH_THREADS``, else ``default`` (0 = every core).

    Small graph batches run faster on one thread per process (measured on 2 cores); a
    transformer being fine-tuned wants every core (``default=0``).
    """
    import torch

    n = int(os.environ.get("MMRE_TORCH_THREADS", str(default)) or default)
    torch.set_num_threads(max(1, n if n > 0 else (os.cpu_count() or 1)))
