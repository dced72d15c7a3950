"""MPerSubjectBatchSampler: batch structure, policies, reproducibility, rank slicing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from radsearch.data.sampler import MPerSubjectBatchSampler, augment_only_pairs
from radsearch.errors import ConfigError, DataError


def _codes(counts: list[int], seed: int = 0) -> np.ndarray:
    """Subject code per row, rows shuffled so subjects are not contiguous."""
    codes = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(codes)


def _check_structure(batch: list[int], codes: np.ndarray, p: int, m: int) -> None:
    assert len(batch) == p * m
    subjects = [codes[batch[i * m:(i + 1) * m]] for i in range(p)]
    for block in subjects:  # m rows of one subject, contiguous
        assert len(set(block.tolist())) == 1
    assert len({int(block[0]) for block in subjects}) == p  # P distinct subjects


def test_length_and_structure_with_enough_images():
    counts = [4, 5, 6, 7, 8, 9] * 10  # 390 images, 60 subjects, all with >= 4 images
    codes = _codes(counts)
    sampler = MPerSubjectBatchSampler(codes, m=4, subjects_per_batch=8)
    assert len(sampler) == 390 // 32 == 12
    batches = list(sampler)
    assert len(batches) == 12
    for batch in batches:
        _check_structure(batch, codes, 8, 4)
        assert len(set(batch)) == 32  # no row twice when every subject has >= m images
    assert sampler.duplicates_last_epoch == 0


def test_subjects_come_up_evenly():
    codes = _codes([5] * 40)  # 200 images → 6 batches of 8 × 4 = 48 subject slots for 40 subjects
    sampler = MPerSubjectBatchSampler(codes, m=4, subjects_per_batch=8, seed=3)
    counts = Counter(int(codes[b[i * 4]]) for b in sampler for i in range(8))
    assert set(counts) == set(range(40))  # every subject used
    assert max(counts.values()) - min(counts.values()) <= 1


def test_skip_policy_drops_singletons_and_fills_short_subjects_with_own_images():
    counts = [1] * 10 + [2] * 10 + [3] * 10 + [6] * 10  # 10 singletons skipped
    codes = _codes(counts)
    sampler = MPerSubjectBatchSampler(codes, m=4, subjects_per_batch=4, policy="skip", seed=1)
    info = sampler.describe()
    assert info["subjects_used"] == 30 and info["subjects_skipped"] == 10
    assert info["subjects_with_fewer_than_m"] == 20
    assert info["images_usable"] == 20 + 30 + 60
    assert len(sampler) == 110 // 16
    singletons = set(range(10))
    expected_duplicates = 0
    for batch in sampler:
        _check_structure(batch, codes, 4, 4)
        for i in range(4):
            block = batch[i * 4:(i + 1) * 4]
            subject = int(codes[block[0]])
            assert subject not in singletons
            n = counts[subject]
            assert len(set(block)) == min(n, 4)  # every distinct image of a short subject
            expected_duplicates += 4 - len(set(block))
    assert sampler.duplicates_last_epoch == expected_duplicates > 0


def test_replace_policy_is_the_reference():
    counts = [1] * 20 + [2] * 20 + [8] * 5  # 100 images
    codes = _codes(counts)
    sampler = MPerSubjectBatchSampler(codes, m=4, subjects_per_batch=4, policy="replace", seed=2)
    assert len(sampler) == 100 // 16
    seen_singleton = False
    for batch in sampler:
        _check_structure(batch, codes, 4, 4)
        for i in range(4):
            block = batch[i * 4:(i + 1) * 4]
            if counts[int(codes[block[0]])] == 1:
                seen_singleton = True
                assert len(set(block)) == 1  # four copies of its only image
    assert seen_singleton


def test_reproducible_per_seed_and_epoch():
    codes = _codes([3, 4, 5, 6] * 20)
    a = MPerSubjectBatchSampler(codes, m=4, subjects_per_batch=8, seed=7)
    b = MPerSubjectBatchSampler(codes, m=4, subjects_per_batch=8, seed=7)
    c = MPerSubjectBatchSampler(codes, m=4, subjects_per_batch=8, seed=8)
    epoch0, epoch1 = list(a), list(a)  # iter() advances the epoch
    assert epoch0 != epoch1
    assert list(b) == epoch0 and list(b) == epoch1
    assert list(c) != epoch0
    b.set_epoch(1)
    assert list(b) == epoch1
    a.set_epoch(5)
    assert list(a) == a.global_batches(5)[0]


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_slice_the_same_global_batch(world_size):
    codes = _codes([2, 3, 4, 5, 6, 7] * 12)
    single = MPerSubjectBatchSampler(codes, m=4, subjects_per_batch=8, seed=4)
    ranks = [MPerSubjectBatchSampler(codes, m=4, subjects_per_batch=8, seed=4, rank=r,
                                     world_size=world_size) for r in range(world_size)]
    for epoch in (0, 3):
        single.set_epoch(epoch)
        for r in ranks:
            r.set_epoch(epoch)
        per_rank = [list(r) for r in ranks]
        assert all(len(r) == len(single) for r in ranks)
        for step, global_batch in enumerate(single):
            gathered = [row for r in range(world_size) for row in per_rank[r][step]]
            assert gathered == global_batch
            for r in range(world_size):  # whole subjects per rank
                _check_structure(per_rank[r][step], codes, 8 // world_size, 4)


def test_clear_errors():
    with pytest.raises(DataError, match="no subject has 2 or more images"):
        MPerSubjectBatchSampler(np.arange(50), m=4, subjects_per_batch=4)
    with pytest.raises(DataError, match="only 5 usable subjects"):
        MPerSubjectBatchSampler(_codes([4] * 5 + [1] * 30), m=4, subjects_per_batch=8)
    with pytest.raises(ConfigError, match="not divisible by world_size=3"):
        MPerSubjectBatchSampler(_codes([4] * 40), subjects_per_batch=8, world_size=3)
    with pytest.raises(ConfigError, match="unknown sampler policy"):
        MPerSubjectBatchSampler(_codes([4] * 40), subjects_per_batch=8, policy="drop")
    with pytest.raises(ConfigError, match="m=1"):
        MPerSubjectBatchSampler(_codes([4] * 40), m=1, subjects_per_batch=8)
    with pytest.raises(DataError, match="fewer than one batch"):
        MPerSubjectBatchSampler(_codes([2] * 10), m=4, subjects_per_batch=8)


def test_augment_only_pairs_marks_repeated_rows():
    mask = augment_only_pairs(torch.tensor([5, 5, 7, 9, 5]))
    expected = torch.zeros(5, 5, dtype=torch.bool)
    for i, j in [(0, 1), (1, 0), (0, 4), (4, 0), (1, 4), (4, 1)]:
        expected[i, j] = True
    assert torch.equal(mask, expected)


def test_works_as_dataloader_batch_sampler():
    codes = _codes([4] * 16)
    sampler = MPerSubjectBatchSampler(codes, m=4, subjects_per_batch=4, seed=0)
    dataset = torch.utils.data.TensorDataset(torch.arange(len(codes)), torch.as_tensor(codes))
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler)
    assert len(loader) == 4
    rows, labels = next(iter(loader))
    assert rows.tolist() == sampler.global_batches(0)[0][0]
    assert torch.equal(labels, torch.as_tensor(codes)[rows])


def test_short_subjects_are_said_not_silently_repeated(caplog):
    # issue 8: images_per_subject (m) above what a subject has → the sampler repeats images; say it
    with caplog.at_level("WARNING", logger="radsearch.data.sampler"):
        MPerSubjectBatchSampler(_codes([2, 3, 4, 4]), m=4, subjects_per_batch=2)
    assert "2 of 4 subject(s) have fewer than 4 images" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="radsearch.data.sampler"):
        MPerSubjectBatchSampler(_codes([4, 5, 4, 4]), m=4, subjects_per_batch=2)
    assert caplog.text == ""
