"""Classic losses against torch.nn.functional (values and autograd) and Optax.

PyTorch is the definition the losses promise to follow, so it is the
reference, in float64. Where PyTorch rounds more than we do (it forms
``sigmoid(x) - y`` and ``z - max - log(sum exp)``, exact only to ~1e-16
absolute), the comparison gets an absolute floor of 1e-15, and the relative
accuracy in the tails is checked against mpmath instead.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp

import mlejax as mj

torch = pytest.importorskip("torch")
TF = torch.nn.functional

L = mj.losses
N, K = 8, 5  # fixed shapes: inputs (N,) or (N, K) for cross-entropy
NAMES = ["mse", "bce_with_logits", "softmax_cross_entropy", "poisson_nll", "l1"]
#: absolute floor where PyTorch's own rounding is ~1e-16 absolute (see module doc)
TORCH_FLOOR = {"bce_with_logits": 1e-15, "softmax_cross_entropy": 1e-15}
#: XLA on CPU flushes subnormal results to zero; below this, numbers are 0
TINY = 1e-290

TORCH = {
    "mse": TF.mse_loss,
    "bce_with_logits": TF.binary_cross_entropy_with_logits,
    "softmax_cross_entropy": lambda x, y: TF.cross_entropy(x, y.long()),
    "poisson_nll": lambda x, y: TF.poisson_nll_loss(x, y, log_input=True, full=False),
    "l1": TF.l1_loss,
}


def torch_value_and_grad(name, x, y):
    """PyTorch's loss and its autograd gradient in the input, float64."""
    xt = torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=True)
    out = TORCH[name](xt, torch.tensor(np.asarray(y), dtype=torch.float64))
    out.backward()
    return out.item(), xt.grad.numpy()


@functools.cache
def ours_value_and_grad(name):
    return jax.jit(jax.value_and_grad(L.LOSSES[name]))


def _floats(lo, hi, shape=N):
    return hnp.arrays(
        np.float64, shape, elements=hs.floats(lo, hi, allow_subnormal=False)
    )


def _ints(hi, shape=N):
    return hnp.arrays(np.int64, shape, elements=hs.integers(0, hi)).map(
        lambda a: a.astype(np.float64)
    )


@hs.composite
def loss_case(draw, name):
    """(input, target) of fixed shape with values across the tails."""
    if name == "mse":
        return draw(_floats(-1e6, 1e6)), draw(_floats(-1e6, 1e6))
    if name == "bce_with_logits":
        x = draw(_floats(-30.0, 30.0))
        soft = draw(hs.booleans())  # probabilities as targets, as torch allows
        return x, draw(_floats(0.0, 1.0) if soft else _ints(1))
    if name == "softmax_cross_entropy":
        return draw(_floats(-30.0, 30.0, (N, K))), draw(_ints(K - 1))
    if name == "poisson_nll":
        return draw(_floats(-30.0, 30.0)), draw(_ints(1000))
    if name == "l1":
        x, y = draw(_floats(-1e6, 1e6)), draw(_floats(-1e6, 1e6))
        tie = draw(hnp.arrays(np.bool_, N))  # exact zero residuals too
        return x, np.where(tie, x, y)
    raise AssertionError(name)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=20)
@given(data=hs.data())
def test_value_and_gradient_match_torch(name, data):
    x, y = data.draw(loss_case(name))
    value, grad = ours_value_and_grad(name)(x, y)
    t_value, t_grad = torch_value_and_grad(name, x, y)
    floor = TORCH_FLOOR.get(name, 0.0) + TINY
    assert value.shape == () and value.dtype == jnp.float64
    np.testing.assert_allclose(value, t_value, rtol=1e-12, atol=floor)
    np.testing.assert_allclose(grad, t_grad, rtol=1e-12, atol=floor / N)


def test_any_shape_is_a_mean_over_all_elements():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    counts = rng.poisson(2.0, (4, 3)).astype(np.float64)
    for name, target in [
        ("mse", y),
        ("l1", y),
        ("bce_with_logits", (y > 0).astype(np.float64)),
        ("poisson_nll", counts),
    ]:
        value, grad = ours_value_and_grad(name)(x, target)
        t_value, t_grad = torch_value_and_grad(name, x, target)
        np.testing.assert_allclose(value, t_value, rtol=1e-13, err_msg=name)
        np.testing.assert_allclose(grad, t_grad, rtol=1e-13, err_msg=name)


def test_keyword_names_are_torch_names():
    x, y = np.array([1.0, 2.0]), np.array([0.0, 0.0])
    for name in NAMES:
        target = np.array([0.0, 1.0]) if name != "softmax_cross_entropy" else y
        inp = x if name != "softmax_cross_entropy" else np.eye(2)
        got = L.LOSSES[name](input=inp, target=target)
        assert float(got) == float(L.LOSSES[name](inp, target))


def test_losses_registry_matches_module():
    assert sorted(L.LOSSES) == sorted(NAMES)
    assert set(L.__all__) == set(NAMES) | {"LOSSES"}
    for name, fn in L.LOSSES.items():
        assert fn is getattr(L, name)


# -- shapes are checked, never broadcast ------------------------------------------
@pytest.mark.parametrize("name", ["mse", "bce_with_logits", "poisson_nll", "l1"])
@pytest.mark.parametrize(
    ("x_shape", "y_shape"),
    [((3,), (3, 1)), ((3, 1), (3,)), ((3,), (1,)), ((2, 3), (3,))],
)
def test_mismatched_shapes_raise_instead_of_broadcasting(name, x_shape, y_shape):
    # (3,) against (3, 1) would silently average 9 pairs
    x, y = np.zeros(x_shape), np.zeros(y_shape)
    with pytest.raises(ValueError) as info:
        L.LOSSES[name](x, y)
    msg = str(info.value)
    assert name in msg and str(x_shape) in msg and str(y_shape) in msg, msg
    assert f"Reshape target to {x_shape}" in msg, msg
    with pytest.raises(ValueError):  # a static check: raised while tracing too
        jax.jit(L.LOSSES[name])(x, y)


def test_cross_entropy_wants_n_by_k_logits_and_n_labels():
    z = np.zeros((4, 3))
    cases = [
        (z, np.zeros((4, 1)), "Reshape target to (4,)"),
        (z, np.zeros(3), "Reshape target to (4,)"),
        (z, np.eye(3)[[0, 1, 2, 0]], "one-hot? pass target.argmax(-1)"),
        (np.zeros(3), np.zeros(()), "logits of shape (n, K)"),
        (np.zeros((2, 4, 3)), np.zeros((2, 4)), "logits of shape (n, K)"),
    ]
    for x, y, hint in cases:
        with pytest.raises(ValueError, match="softmax_cross_entropy") as info:
            L.softmax_cross_entropy(x, y)
        assert hint in str(info.value) and str(np.shape(x)) in str(info.value)


def test_equal_shapes_still_work_after_the_check():
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 2.0, 1.0, 4.0])
    assert float(L.mse(x, y)) == 5 / 4  # exact in binary
    assert float(L.mse(x[:, None], y[:, None])) == 5 / 4
    assert float(L.mse(2.0, 0.0)) == 4.0  # scalars: shape () twice


# -- L1 at a zero residual ------------------------------------------------------------
def test_l1_gradient_at_zero_residual_is_zero_like_torch():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 5.0])
    value, grad = ours_value_and_grad("l1")(x, y)
    t_value, t_grad = torch_value_and_grad("l1", x, y)
    np.testing.assert_array_equal(grad, [0.0, 1 / 3, -1 / 3])
    np.testing.assert_array_equal(grad, t_grad)
    assert float(value) == t_value == 4 / 3
    # all residuals zero: the gradient is exactly 0, as in torch
    _, grad = ours_value_and_grad("l1")(x, x)
    np.testing.assert_array_equal(grad, np.zeros(3))
    # which jnp.abs would not give: its derivative at 0 is 1
    assert float(jax.grad(jnp.abs)(0.0)) == 1.0


# -- Optax counterparts ----------------------------------------------------------
def _optax_mse(x, y):
    return 2 * optax.l2_loss(x, y).mean()  # optax.l2_loss is 0.5 * (x - y)**2


def _optax_mse_no_half(x, y):
    return optax.squared_error(x, y).mean()  # squared_error has no 1/2


def _optax_bce(x, y):
    return optax.sigmoid_binary_cross_entropy(x, y).mean()


def _optax_cross_entropy(z, labels):
    return optax.softmax_cross_entropy_with_integer_labels(
        z, labels.astype(jnp.int32)
    ).mean()


@functools.cache
def value_and_grad_jit(f):
    return jax.jit(jax.value_and_grad(f))


def assert_same_loss(ours, theirs, x, y, rtol, atol=0.0):
    value, grad = value_and_grad_jit(ours)(x, y)
    want_value, want_grad = value_and_grad_jit(theirs)(x, y)
    np.testing.assert_allclose(value, want_value, rtol=rtol, atol=atol + TINY)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=atol / N + TINY)


@given(x=_floats(-1e3, 1e3), y=_floats(-1e3, 1e3))
def test_mse_is_twice_optax_l2_loss(x, y):
    assert_same_loss(L.mse, _optax_mse, x, y, rtol=1e-14)
    assert_same_loss(L.mse, _optax_mse_no_half, x, y, rtol=1e-14)


@given(x=_floats(-30.0, 30.0), y=_floats(0.0, 1.0))
def test_bce_is_optax_sigmoid_binary_cross_entropy_mean(x, y):
    # optax's log_sigmoid form is as accurate as ours in value; its gradient
    # sigmoid(x) - y is exact only to ~1e-16 absolute
    assert_same_loss(L.bce_with_logits, _optax_bce, x, y, rtol=1e-12, atol=1e-15)


@given(z=_floats(-30.0, 30.0, (N, K)), labels=_ints(K - 1))
def test_cross_entropy_is_optax_integer_label_cross_entropy_mean(z, labels):
    # optax forms z - logsumexp(z): exact to ~1e-16 absolute, like torch
    assert_same_loss(
        L.softmax_cross_entropy, _optax_cross_entropy, z, labels, 1e-12, 1e-15
    )


# -- stability and tail accuracy -------------------------------------------------
def test_huge_inputs_are_finite_and_match_torch():
    big = 1e3
    cases = [
        ("bce_with_logits", np.array([big, -big, big, -big]), np.array([0, 0, 1, 1.0])),
        (
            "softmax_cross_entropy",
            np.array([[big, -big, 0.0], [-big, big, big]]),
            [2, 0],
        ),
        ("poisson_nll", np.array([-big, -big]), np.array([0.0, 7.0])),
        ("mse", np.array([big, -big]), np.array([-big, big])),
        ("l1", np.array([big, -big]), np.array([-big, big])),
    ]
    for name, x, y in cases:
        y = np.asarray(y, np.float64)
        value, grad = ours_value_and_grad(name)(x, y)
        assert np.isfinite(value) and np.isfinite(grad).all(), name
        t_value, t_grad = torch_value_and_grad(name, x, y)
        np.testing.assert_allclose(value, t_value, rtol=1e-14, err_msg=name)
        np.testing.assert_allclose(grad, t_grad, rtol=1e-14, atol=1e-300, err_msg=name)
    # by hand: bce = mean(1000, 0, 0, 1000); cross-entropy rows 1000, 2000 + log 2
    assert float(L.bce_with_logits(cases[0][1], cases[0][2])) == 500.0
    want = (2000.0 + 1000.0 + np.log(2.0)) / 2
    np.testing.assert_allclose(
        L.softmax_cross_entropy(cases[1][1], np.array([2, 0])), want, rtol=1e-15
    )


def test_tiny_losses_keep_relative_accuracy():
    # all-correct confident predictions: the loss is ~1e-13 and stays exact
    with mp.workdps(50):
        bce = float(mp.log1p(mp.exp(-30)))
        ce = float(mp.log1p(2 * mp.exp(-30)))
    got = L.bce_with_logits(np.full(4, 30.0), np.ones(4))
    np.testing.assert_allclose(got, bce, rtol=1e-14)
    got = L.bce_with_logits(np.full(4, -30.0), np.zeros(4))
    np.testing.assert_allclose(got, bce, rtol=1e-14)
    got = L.softmax_cross_entropy(np.array([[30.0, 0.0, 0.0]] * 3), np.zeros(3))
    np.testing.assert_allclose(got, ce, rtol=1e-14)


# -- jit and vmap ---------------------------------------------------------------------
SAMPLES = {
    "mse": (np.linspace(-2, 2, 6), np.linspace(1, -1, 6)),
    "bce_with_logits": (np.linspace(-4, 4, 6), np.array([0, 1, 1, 0, 1, 0.0])),
    "softmax_cross_entropy": (
        np.linspace(-3, 3, 18).reshape(6, 3),
        np.array([0, 1, 2, 2, 1, 0.0]),
    ),
    "poisson_nll": (np.linspace(-2, 2, 6), np.array([0, 1, 3, 2, 8, 5.0])),
    "l1": (np.linspace(-2, 2, 6), np.array([0, 1, 3, 0.4, 8, 2.0])),
}


class TestJitVariants(chex.TestCase):
    """jit and eager agree (up to the few ulps XLA's fusion may reorder)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(n, n) for n in NAMES])
    def test_value_and_grad(self, name):
        x, y = SAMPLES[name]
        f = jax.value_and_grad(L.LOSSES[name])
        value, grad = self.variant(f)(x, y)
        want_value, want_grad = f(x, y)
        np.testing.assert_allclose(value, want_value, rtol=1e-14)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_a_batch_equals_a_python_loop(name):
    x, y = SAMPLES[name]
    X = np.stack([x, x + 0.5, x - 1.0])
    Y = np.stack([y, y, y])
    got = jax.jit(jax.vmap(L.LOSSES[name]))(X, Y)
    want = np.array([L.LOSSES[name](X[b], Y[b]) for b in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-14)
