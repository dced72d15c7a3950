"""torch.distributed plumbing: process group from torchrun's environment, global-batch gathering.

Every rank embeds its slice of the same global P×m batch (MPerSubjectBatchSampler with rank /
world_size); the slices are all-gathered *with gradient flow* so the loss — and therefore the
mined triplets and the AutoMargin statistics — is computed on the global batch on every rank.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE > 1); single process otherwise."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def gather_batch(embeddings: torch.Tensor, labels: torch.Tensor,
                 info: DistInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate every rank's embeddings (differentiable) and labels, in rank order."""
    if not info.enabled:
        return embeddings, labels
    with warnings.catch_warnings():  # deprecated in favour of a private API; still differentiable
        warnings.simplefilter("ignore", FutureWarning)
        all_embeddings = torch.cat(dist_fn.all_gather(embeddings.contiguous()), dim=0)
    label_list = [torch.empty_like(labels) for _ in range(info.world_size)]
    dist.all_gather(label_list, labels.contiguous())
    return all_embeddings, torch.cat(label_list, dim=0)


def average_gradients(parameters, info: DistInfo) -> None:
    """All-reduce-average the gradients of parameters that DDP does not manage (loss proxies)."""
    if not info.enabled:
        return
    for param in parameters:
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad /= info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()

