"""Selective aggregation (deep descriptors) on a hand-computed map: channel-sum threshold at the
mean, 4-connected largest component (a diagonal neighbour is a separate component), avg ⊕ max."""

import torch

from radsearch.models.mmdl import selective_mask, selective_pool


def _fmap():
    # channel-sum energy [[6, 0, 5], [0, 5, 5], [0, 0, 0]], mean 21/9: above are (0,0), (0,2),
    # (1,1), (1,2); (0,0) touches (1,1) only diagonally, so the largest 4-connected component is
    # {(0,2), (1,1), (1,2)} (8-connectivity would keep all four).
    c0 = torch.tensor([[6.0, 0.0, 1.0], [0.0, 4.0, 2.0], [0.0, 0.0, 0.0]])
    c1 = torch.tensor([[0.0, 0.0, 4.0], [0.0, 1.0, 3.0], [0.0, 0.0, 0.0]])
    return torch.stack([c0, c1])[None]


def test_selective_descriptor_hand_case_uses_four_connectivity_and_channel_sums():
    fmap = _fmap()
    expected = torch.tensor([[[False, False, True], [False, True, True], [False, False, False]]])
    assert torch.equal(selective_mask(fmap), expected)
    # kept cells: c0 = 1, 4, 2 (avg 7/3, max 4); c1 = 4, 1, 3 (avg 8/3, max 4)
    torch.testing.assert_close(selective_pool(fmap), torch.tensor([[7 / 3, 8 / 3, 4.0, 4.0]]))


def test_selective_descriptor_constant_map_keeps_every_cell_and_batches_independently():
    constant = torch.full((1, 2, 3, 3), 0.5)
    assert selective_mask(constant).all()  # nothing above the mean: every cell kept
    torch.testing.assert_close(selective_pool(constant), torch.full((1, 4), 0.5))
    both = torch.cat([_fmap(), constant])
    torch.testing.assert_close(selective_pool(both)[0], selective_pool(_fmap())[0])
    torch.testing.assert_close(selective_pool(both)[1], selective_pool(constant)[0])
