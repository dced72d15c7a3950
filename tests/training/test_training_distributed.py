"""Two gloo CPU processes on slices of the global batch == one process on the whole batch.

The ranks' embeddings are all-gathered with gradient flow before the loss, so the loss value, the
AutoMargin statistics / margins and the updated weights must match a single-process run that sees
the same global P×m batches (same sampler seed). The model here has no BatchNorm: per-rank batch
statistics are the one thing that legitimately differs (SyncBatchNorm needs CUDA).
"""

import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from radsearch.data import MPerSubjectBatchSampler
from radsearch.losses import build_method
from radsearch.training.distributed import DistInfo
from radsearch.training.engine import train_step

N_SUBJECTS, PER_SUBJECT, P, M, EPOCHS = 12, 5, 4, 4, 3


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3)
        self.head = nn.Linear(6 * 4, 16)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 2).flatten(1)
        return F.normalize(self.head(x), dim=1)


def _data():
    g = torch.Generator().manual_seed(7)
    codes = np.repeat(np.arange(N_SUBJECTS), PER_SUBJECT)
    base = torch.rand(N_SUBJECTS, 1, 12, 12, generator=g)
    images = base[codes] + 0.3 * torch.rand(len(codes), 1, 12, 12, generator=g)
    return images, torch.as_tensor(codes, dtype=torch.int64)


def _run(rank: int, world_size: int) -> dict:
    torch.manual_seed(0)
    model = TinyNet()
    info = DistInfo(rank, world_size, rank)
    if world_size > 1:
        model = nn.parallel.DistributedDataParallel(model)
    method = build_method("AdaTriplet-AM", preset="oai", embedding_dim=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    images, codes = _data()
    sampler = MPerSubjectBatchSampler(codes.numpy(), m=M, subjects_per_batch=P, seed=3,
                                      rank=rank, world_size=world_size)
    out = {"loss": [], "epsilon": [], "beta": [], "mean_delta": [], "mean_neg_sim": []}
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for rows in sampler:
            out["loss"].append(train_step(model, method, optimizer, images[rows], codes[rows],
                                          info=info))
        stats = method.epoch_stats()
        for key in ("epsilon", "beta", "mean_delta", "mean_neg_sim"):
            out[key].append(float(stats[key]))
        method.on_epoch_end()
    net = model.module if world_size > 1 else model
    out["weights"] = torch.cat([p.detach().flatten() for p in net.parameters()]).numpy()
    return out


def _worker(rank: int, world_size: int, port: int, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        out = _run(rank, world_size)
        np.savez(os.path.join(result_dir, f"rank{rank}.npz"), **{k: np.asarray(v)
                                                                  for k, v in out.items()})
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_single_process_on_global_batch(tmp_path):
    # fork: no re-import of torch in the children (CPU only, so forking is safe here).
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    single = _run(0, 1)
    assert len(single["loss"]) == EPOCHS * (N_SUBJECTS * PER_SUBJECT // (P * M))
    # AutoMargin must actually have moved the margins, otherwise the comparison is vacuous.
    assert single["beta"][-1] != single["beta"][0]
    for rank in (0, 1):
        got = np.load(tmp_path / f"rank{rank}.npz")
        for key in ("loss", "epsilon", "beta", "mean_delta", "mean_neg_sim"):
            np.testing.assert_allclose(got[key], single[key], rtol=1e-4, atol=1e-6, err_msg=key)
        np.testing.assert_allclose(got["weights"], single["weights"], rtol=1e-4, atol=1e-5)
