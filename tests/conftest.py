"""Test-wide setup: without CUDA, Triton kernels run in its CPU interpreter."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    # must be set before anything imports triton (torch._dynamo may, through FlexAttention)
    os.environ.setdefault("TRITON_INTERPRET", "1")
