"""Spatial SVD of one Conv2D kernel and in-place kernel substitution.

A kernel W of shape (kh, kw, Cin, Cout) becomes the matrix M of shape
(Cin*kh, Cout*kw) with M[cin*kh + y, cout*kw + x] = W[y, x, cin, cout]. With the
SVD M = U diag(s) V^T, the rank-r factors U_r sqrt(s_r) and sqrt(s_r) V_r^T are
the kernels of a (kh, 1) conv from Cin to r channels followed by a (1, kw) conv
from r to Cout channels. Their composition equals the original conv with its
kernel replaced by the rank-r reconstruction of M, so candidate ranks can be
evaluated by substituting that kernel in place.
"""

from __future__ import annotations

import contextlib

import numpy as np


def kernel_to_matrix(kernel: np.ndarray) -> np.ndarray:
    kernel_h, kernel_w, in_channels, out_channels = kernel.shape
    return np.transpose(kernel, (2, 0, 3, 1)).reshape(in_channels * kernel_h, out_channels * kernel_w)


def matrix_to_kernel(matrix: np.ndarray, kernel_shape) -> np.ndarray:
    kernel_h, kernel_w, in_channels, out_channels = kernel_shape
    return matrix.reshape(in_channels, kernel_h, out_channels, kernel_w).transpose(1, 3, 0, 2)


class LayerSVD:
    """The SVD of one Conv2D kernel, computed once; every rank is a truncation of it.

    Computed in float64 so that truncation error, not rounding, dominates; results
    are returned in the kernel's own dtype.
    """

    def __init__(self, kernel: np.ndarray):
        kernel = np.asarray(kernel)
        if kernel.ndim != 4:
            raise ValueError(f"Expected a Conv2D kernel of shape (kh, kw, Cin, Cout). Received shape {kernel.shape}.")
        self.shape = kernel.shape
        self.dtype = kernel.dtype
        matrix = kernel_to_matrix(kernel.astype(np.float64))
        self.u, self.singular_values, self.vt = np.linalg.svd(matrix, full_matrices=False)

    @property
    def max_rank(self) -> int:
        return len(self.singular_values)

    def _check_rank(self, rank: int) -> int:
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= self.max_rank:
            raise ValueError(f"Expected rank in [1, {self.max_rank}] for a kernel of shape {self.shape}. Received: rank={rank!r}")
        return int(rank)

    def _factors(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        rank = self._check_rank(rank)
        root = np.sqrt(self.singular_values[:rank])
        left = self.u[:, :rank] * root  # (Cin*kh, r)
        right = root[:, None] * self.vt[:rank]  # (r, Cout*kw)
        return left, right

    def factor_kernels(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the (kh, 1, Cin, r) vertical and (1, kw, r, Cout) horizontal kernels."""
        kernel_h, kernel_w, in_channels, out_channels = self.shape
        left, right = self._factors(rank)
        vertical = left.reshape(in_channels, kernel_h, rank).transpose(1, 0, 2)[:, None, :, :]
        horizontal = right.reshape(rank, out_channels, kernel_w).transpose(2, 0, 1)[None, :, :, :]
        return vertical.astype(self.dtype), horizontal.astype(self.dtype)

    def kernel(self, rank: int) -> np.ndarray:
        """Return the rank-r reconstruction of the kernel in its original shape."""
        left, right = self._factors(rank)
        return matrix_to_kernel(left @ right, self.shape).astype(self.dtype)

    def energy(self, rank: int) -> float:
        """Share of the squared singular values kept by rank `rank`."""
        squares = self.singular_values**2
        total = squares.sum()
        return float(squares[: self._check_rank(rank)].sum() / total) if total > 0 else 1.0


@contextlib.contextmanager
def substituted_kernel(layer, kernel: np.ndarray):
    """Replace `layer.kernel` by `kernel` for the duration of the block.

    The original values are restored on exit, also when an exception passes
    through, so a failing evaluator never leaves a truncated kernel behind.
    """
    original = layer.kernel.numpy()
    kernel = np.asarray(kernel)
    if tuple(kernel.shape) != tuple(original.shape):
        raise ValueError(
            f"Kernel shape {tuple(kernel.shape)} does not match layer '{layer.name}' kernel shape {tuple(original.shape)}."
        )
    layer.kernel.assign(kernel.astype(original.dtype, copy=False))
    try:
        yield layer
    finally:
        layer.kernel.assign(original)
