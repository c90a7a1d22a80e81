"""The model on a CUDA GPU: fit, score and Grad-CAM's gradient path give the CPU's results.

Two placement bugs reached only a GPU (the stem's padded weight and the channel statistics stayed
on the CPU), so this runs wherever CUDA exists; `scripts/bench_gpu.py` is the full-size check.
"""

from __future__ import annotations

import copy

import pytest
import torch

from models.patchcore import PatchCore, PatchCoreConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def test_fit_and_score_on_cuda_match_the_cpu() -> None:
    cfg = PatchCoreConfig(input_size=64, coreset_ratio=0.5, pretrained=False)
    g = torch.Generator().manual_seed(0)
    good = 0.5 + 0.05 * torch.randn(8, 3, 64, 64, generator=g)
    probe = good[:2].clone()
    probe[:, :, 20:30, 20:30] = 1.0
    cpu = PatchCore(cfg)
    gpu = copy.deepcopy(cpu).to("cuda")
    cpu.fit([good[:4], good[4:]])
    gpu.fit([good[:4].cuda(), good[4:].cuda()])
    assert gpu.channel_mean.is_cuda and gpu.memory_bank.is_cuda
    s_cpu, _ = cpu.score_embedding(cpu.embed(probe))
    x = probe.cuda().requires_grad_(True)
    s_gpu, _ = gpu.score_embedding(gpu.embed(x), exact=True)
    s_gpu.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.allclose(s_gpu.detach().cpu(), s_cpu, rtol=1e-2)
    # The default map: the fine bank on the GPU and its focused search give the CPU's map (cells
    # chosen from round-off-close coarse scores may differ, hence the loose tolerance).
    assert gpu.fine_map is not None and gpu.fine_map.is_fitted and gpu.fine_map.bank.is_cuda
    m_cpu, m_gpu = cpu.predict(probe).anomaly_map, gpu.predict(probe.cuda()).anomaly_map.cpu()
    assert torch.isfinite(m_gpu).all() and torch.allclose(m_gpu, m_cpu, rtol=5e-2, atol=5e-2 * float(m_cpu.max()))
