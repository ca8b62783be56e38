import pytest
import torch


@pytest.fixture
def one_thread():
    """Training results depend on the thread count (summation order): fix it where asserted."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
