"""The NF4 layout the decode kernel assumes, checked against bitsandbytes on the CPU.
(The Triton kernel itself runs on CUDA only; scripts/bench_step.py checks it there.)"""

import pytest
import torch

bnb_functional = pytest.importorskip("bitsandbytes.functional")

from trl_ground.experimental.nf4_decode import dequantize_nf4_reference, nf4_state  # noqa: E402


class FakeParam:
    """What nf4_state reads from a bitsandbytes Params4bit: .data and .quant_state."""

    def __init__(self, data, quant_state):
        self.data, self.quant_state = data, quant_state


@pytest.mark.parametrize("nested", [True, False])
@pytest.mark.parametrize("shape", [(128, 256), (96, 64)])
@pytest.mark.parametrize("storage", [torch.uint8, torch.bfloat16])
def test_reference_dequantization_matches_bitsandbytes(nested, shape, storage):
    torch.manual_seed(0)
    w = torch.randn(*shape, dtype=torch.bfloat16)
    packed, qs = bnb_functional.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=nested, quant_storage=storage)
    expected = bnb_functional.dequantize_4bit(packed, qs).float()
    state = nf4_state(FakeParam(packed, qs))
    assert (state["n"], state["k"]) == shape and state["packed"].numel() == shape[0] * shape[1] // 2
    torch.testing.assert_close(dequantize_nf4_reference(state), expected, rtol=1e-2, atol=1e-2)
