"""LayerSVD factors and in-place kernel substitution."""

import keras
import numpy as np
import pytest

from workbench.engine import LayerSVD, substituted_kernel
from workbench.engine.svd import kernel_to_matrix, matrix_to_kernel


def random_kernel(rng, shape=(3, 5, 4, 6)):
    return rng.normal(size=shape).astype("float32")


def test_matrix_layout(rng):
    kernel = random_kernel(rng)
    matrix = kernel_to_matrix(kernel)
    kernel_h, kernel_w, in_channels, out_channels = kernel.shape
    assert matrix.shape == (in_channels * kernel_h, out_channels * kernel_w)
    # Row cin*kh + y, column cout*kw + x contains W[y, x, cin, cout].
    assert matrix[2 * kernel_h + 1, 5 * kernel_w + 4] == kernel[1, 4, 2, 5]
    np.testing.assert_array_equal(matrix_to_kernel(matrix, kernel.shape), kernel)


def test_full_rank_reconstructs_kernel(rng):
    kernel = random_kernel(rng)
    svd = LayerSVD(kernel)
    assert svd.max_rank == min(4 * 3, 6 * 5)
    np.testing.assert_allclose(svd.kernel(svd.max_rank), kernel, rtol=0, atol=1e-5)
    assert svd.kernel(svd.max_rank).dtype == np.float32


def test_factor_kernels_compose_to_rank_r_kernel(rng):
    kernel = random_kernel(rng)
    svd = LayerSVD(kernel)
    rank = 5
    vertical, horizontal = svd.factor_kernels(rank)
    assert vertical.shape == (3, 1, 4, rank)
    assert horizontal.shape == (1, 5, rank, 6)
    # W_r[y, x, cin, cout] = sum_k V[y, 0, cin, k] * H[0, x, k, cout]
    composed = np.einsum("yck,xko->yxco", vertical[:, 0], horizontal[0])
    np.testing.assert_allclose(composed, svd.kernel(rank), rtol=0, atol=1e-5)


def test_truncation_error_matches_singular_values(rng):
    kernel = random_kernel(rng)
    svd = LayerSVD(kernel)
    for rank in (1, 4, 8):
        error = np.linalg.norm(svd.kernel(rank).astype(np.float64) - kernel)
        assert error == pytest.approx(np.sqrt(np.sum(svd.singular_values[rank:] ** 2)), rel=1e-4)
    energies = [svd.energy(rank) for rank in range(1, svd.max_rank + 1)]
    assert energies == sorted(energies)
    assert energies[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("rank", [0, 13, -1, 2.0, True, "3"])
def test_invalid_rank_rejected(rng, rank):
    svd = LayerSVD(random_kernel(rng))
    with pytest.raises(ValueError, match=r"Expected rank in \[1, 12\]"):
        svd.kernel(rank)


def test_non_conv2d_kernel_rejected():
    with pytest.raises(ValueError, match=r"Received shape \(3, 4, 5\)"):
        LayerSVD(np.zeros((3, 4, 5)))


def built_conv(rng):
    conv = keras.layers.Conv2D(6, (3, 5), padding="same")
    conv.build((None, 8, 8, 4))
    conv.kernel.assign(random_kernel(rng))
    return conv


def test_substitution_replaces_and_restores(rng):
    conv = built_conv(rng)
    original = conv.kernel.numpy()
    truncated = LayerSVD(original).kernel(2)
    with substituted_kernel(conv, truncated) as layer:
        assert layer is conv
        np.testing.assert_array_equal(conv.kernel.numpy(), truncated)
    np.testing.assert_array_equal(conv.kernel.numpy(), original)


def test_substitution_restores_after_exception(rng):
    conv = built_conv(rng)
    original = conv.kernel.numpy()
    with pytest.raises(RuntimeError, match="evaluator failed"):
        with substituted_kernel(conv, np.zeros_like(original)):
            assert not conv.kernel.numpy().any()
            raise RuntimeError("evaluator failed")
    np.testing.assert_array_equal(conv.kernel.numpy(), original)


def test_substitution_rejects_wrong_shape(rng):
    conv = built_conv(rng)
    original = conv.kernel.numpy()
    with pytest.raises(ValueError, match=r"\(3, 3, 4, 6\) does not match"):
        with substituted_kernel(conv, np.zeros((3, 3, 4, 6), "float32")):
            pytest.fail("the block must not run")
    np.testing.assert_array_equal(conv.kernel.numpy(), original)


def test_substitution_accepts_float64_and_lists(rng):
    conv = built_conv(rng)
    original = conv.kernel.numpy()
    with substituted_kernel(conv, original.astype(np.float64) * 2):
        np.testing.assert_allclose(conv.kernel.numpy(), original * 2)
        assert conv.kernel.dtype == "float32"
    with substituted_kernel(conv, (original * 3).tolist()):
        np.testing.assert_allclose(conv.kernel.numpy(), original * 3)
    np.testing.assert_array_equal(conv.kernel.numpy(), original)
