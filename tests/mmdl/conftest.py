import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """MMDL tests use tiny tensors and models: extra intra-op threads only add contention on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
