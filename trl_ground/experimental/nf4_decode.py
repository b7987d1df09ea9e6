"""A decode-time matmul that reads bitsandbytes NF4 weights directly (Triton, CUDA).

With a handful of rows per step (one token per sampled answer), bitsandbytes computes a
4-bit linear by dequantizing the whole weight to bf16 and running a bf16 matmul: every
token writes and re-reads ~16 GB for an 8B model. This kernel instead streams the packed
4-bit codes (0.5 byte per weight), looks up the NF4 value, scales it by its block's absmax
and multiplies in registers, so a token reads ~4 GB.

Storage it reads (bitsandbytes ``Params4bit``, ``quant_type="nf4"``): the ``(N, K)`` weight
flattened row-major; element ``i`` lives in byte ``i // 2`` (even ``i`` in the high nibble)
and is ``code[nibble] * absmax[i // blocksize]``. With double quantization the absmax is
itself quantized; it is dequantized once per layer with bitsandbytes' own function and
cached (the base weights are frozen).

:func:`fast_nf4_decode` patches the ``Linear4bit`` layers of a model for the duration of a
``with`` block; inputs with more than ``max_rows`` rows (prefill, training) keep the
bitsandbytes path.
"""

from __future__ import annotations

import contextlib
import logging
import time

import torch

__all__ = ["dequantize_nf4_reference", "fast_nf4_decode", "nf4_linear", "nf4_state"]

logger = logging.getLogger(__name__)

_STATE_ATTR = "_trl_ground_nf4_state"


def nf4_state(weight) -> dict:
    """``{"packed", "absmax" (fp32, one per block), "code", "n", "k", "blocksize"}`` of a
    bitsandbytes 4-bit weight, computed once and cached on the parameter."""
    cached = getattr(weight, _STATE_ATTR, None)
    if cached is not None:
        return cached
    import bitsandbytes.functional as F

    qs = weight.quant_state
    absmax = qs.absmax
    if qs.nested:
        absmax = F.dequantize_blockwise(qs.absmax, qs.state2) + qs.offset
    n, k = qs.shape
    state = {
        # The codes may be stored in another dtype (``bnb_4bit_quant_storage``, e.g. bf16
        # for FSDP): the kernel reads bytes.
        "packed": weight.data.contiguous().view(torch.uint8).reshape(-1),
        "absmax": absmax.float().contiguous(),
        "code": qs.code.float().contiguous(),
        "n": int(n),
        "k": int(k),
        "blocksize": int(qs.blocksize),
        "dtype": qs.dtype,
    }
    setattr(weight, _STATE_ATTR, state)
    return state


def dequantize_nf4_reference(state: dict) -> torch.Tensor:
    """The ``(N, K)`` float32 weight, in plain torch with the kernel's indexing (for tests)."""
    packed = state["packed"].to(torch.int32)
    high, low = packed >> 4, packed & 0xF
    nibbles = torch.stack([high, low], dim=1).reshape(-1)  # even elements in the high nibble
    values = state["code"][nibbles.long()]
    scales = state["absmax"].repeat_interleave(state["blocksize"])
    return (values * scales[: values.numel()]).reshape(state["n"], state["k"])


_AUTOTUNE = [
    # (BLOCK_N, BLOCK_K, SPLIT_TARGET programs, num_warps)
    (32, 128, 1024, 4), (64, 128, 1024, 4), (64, 256, 512, 4), (128, 128, 512, 8),
    (128, 256, 256, 8), (32, 256, 2048, 2), (16, 256, 2048, 2),
]


def _kernel():
    import triton
    import triton.language as tl

    @triton.autotune(
        configs=[triton.Config({"BLOCK_N": bn, "BLOCK_K": bk, "SPLIT_TARGET": st}, num_warps=w) for bn, bk, st, w in _AUTOTUNE],
        key=["M", "N", "K"],
        reset_to_zero=["y_ptr"],
    )
    @triton.jit
    def nf4_matmul(
        x_ptr, packed_ptr, absmax_ptr, code_ptr, y_ptr, M, N, K, stride_xm,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCKSIZE: tl.constexpr,
        SPLIT_TARGET: tl.constexpr,
    ):
        pid_n = tl.program_id(0)
        pid_k = tl.program_id(1)
        n_splits = tl.num_programs(1)
        tiles_k = K // BLOCK_K
        tiles_per_split = tl.cdiv(tiles_k, n_splits)
        offs_m = tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        half = tl.arange(0, BLOCK_K // 2)
        offs_k = tl.arange(0, BLOCK_K)
        m_mask = offs_m < M
        n_mask = offs_n < N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for t in range(pid_k * tiles_per_split, tl.minimum((pid_k + 1) * tiles_per_split, tiles_k)):
            k0 = t * BLOCK_K
            byte = tl.load(packed_ptr + offs_n[:, None] * (K // 2) + (k0 // 2 + half)[None, :], mask=n_mask[:, None], other=0)
            byte = byte.to(tl.int32)
            hi = tl.load(code_ptr + (byte >> 4))
            lo = tl.load(code_ptr + (byte & 0xF))
            w = tl.interleave(hi, lo)  # (BLOCK_N, BLOCK_K) in k order
            scale = tl.load(absmax_ptr + offs_n[:, None] * (K // BLOCKSIZE) + ((k0 + offs_k) // BLOCKSIZE)[None, :], mask=n_mask[:, None], other=0.0)
            w = (w * scale).to(tl.bfloat16)
            x = tl.load(x_ptr + offs_m[:, None] * stride_xm + (k0 + offs_k)[None, :], mask=m_mask[:, None], other=0.0)
            acc += tl.dot(x, tl.trans(w))
        tl.atomic_add(y_ptr + offs_m[:, None] * N + offs_n[None, :], acc, mask=m_mask[:, None] & n_mask[None, :])

    return nf4_matmul


_KERNEL = None


def nf4_linear(x: torch.Tensor, state: dict) -> torch.Tensor:
    """``x (M, K) @ W^T`` for an NF4 weight ``W (N, K)``; returns ``(M, N)`` in ``x.dtype``.

    Programs cover ``BLOCK_N`` output columns and a slice of K (split-K, summed with fp32
    atomics) so that a 4096-wide layer still fills the GPU; tile sizes are autotuned per
    shape. ``M`` is at most 64.
    """
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _kernel()
    m, k = x.shape
    n = state["n"]
    block_m = max(16, 1 << (m - 1).bit_length())
    y = torch.zeros((m, n), dtype=torch.float32, device=x.device)
    xb = x.to(torch.bfloat16).contiguous()

    def grid(meta):
        n_blocks = (n + meta["BLOCK_N"] - 1) // meta["BLOCK_N"]
        return (n_blocks, max(1, min(k // meta["BLOCK_K"], meta["SPLIT_TARGET"] // n_blocks)))

    _KERNEL[grid](
        xb, state["packed"], state["absmax"], state["code"], y, m, n, k, xb.stride(0), BLOCK_M=block_m, BLOCKSIZE=state["blocksize"]
    )
    return y.to(x.dtype)


def _supported(module) -> bool:
    qs = getattr(getattr(module, "weight", None), "quant_state", None)
    return (
        qs is not None
        and getattr(qs, "quant_type", None) == "nf4"
        and qs.shape[1] % qs.blocksize == 0
        and qs.blocksize % 2 == 0
        and module.weight.is_cuda
    )


# (N, K, M) -> {"rel_error", "kernel_us", "bnb_us", "used"}: the kernel against
# bitsandbytes on the first input of each shape.
KERNEL_CHECKS: dict[tuple[int, int, int], dict] = {}
_MAX_REL_ERROR = 1e-2


def _time_us(fn, reps: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return 1e6 * (time.perf_counter() - start) / reps


def _checked(key, x2d, state, original, x) -> bool:
    """Once per shape (in an eager step: the first decode step always runs eagerly before a
    CUDA graph is captured), check the kernel against bitsandbytes and time both; the
    kernel is used only where it is right and faster."""
    if key not in KERNEL_CHECKS:
        try:
            ours = nf4_linear(x2d, state).float()
        except Exception as err:  # noqa: BLE001 - e.g. Triton missing or failing to compile: keep bitsandbytes
            logger.warning("NF4 decode kernel unavailable (%s); using bitsandbytes", err)
            KERNEL_CHECKS[key] = {"rel_error": float("inf"), "used": False}
            return False
        ref = original(x).reshape(ours.shape).float()
        check = {"rel_error": float((ours - ref).norm() / ref.norm().clamp(min=1e-12))}
        check["kernel_us"] = _time_us(lambda: nf4_linear(x2d, state))
        check["bnb_us"] = _time_us(lambda: original(x))
        check["used"] = check["rel_error"] <= _MAX_REL_ERROR and check["kernel_us"] < check["bnb_us"]
        if check["rel_error"] > _MAX_REL_ERROR:
            logger.warning("NF4 decode kernel disagrees with bitsandbytes for %s (rel. error %.2e); not used", key, check["rel_error"])
        KERNEL_CHECKS[key] = check
    return KERNEL_CHECKS[key]["used"]


def _patched_forward(module, original, max_rows: int):
    def forward(x, *args, **kwargs):
        rows = x.numel() // x.shape[-1]
        if rows > max_rows or torch.is_grad_enabled():
            return original(x, *args, **kwargs)
        state = nf4_state(module.weight)
        x2d = x.reshape(rows, x.shape[-1])
        if not _checked((state["n"], state["k"], rows), x2d, state, original, x):
            return original(x, *args, **kwargs)
        y = nf4_linear(x2d, state)
        if module.bias is not None:
            y = y + module.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], state["n"])

    return forward


@contextlib.contextmanager
def fast_nf4_decode(model, max_rows: int = 64):
    """Within the block, the model's NF4 ``Linear4bit`` layers use :func:`nf4_linear` for
    inputs of at most ``max_rows`` rows without gradient. A no-op without such layers."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        yield 0
        return
    patched = []
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and _supported(module) and "forward" not in module.__dict__:
            module.forward = _patched_forward(module, module.forward, max_rows)
            patched.append(module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.forward  # back to the class's forward
