"""Finite-field arithmetic for the verifier's random tests.

A value is a pair of integer arrays: ``p`` in Z_p (where all arithmetic outside ``exp`` happens)
and ``q`` in Z_q (where the arguments of ``exp`` are tracked). ``q`` divides ``p - 1`` and
``exp(x) = omega ** x_q mod p`` for an ``omega`` of multiplicative order ``q`` — the paper's
construction. The ``q`` half is ``None`` once a value has passed through ``exp``: the argument of
an ``exp`` may not itself contain an ``exp`` (the LAX class), and ``NotLaxError`` says so.

Ops outside the LAX class (``sqrt``, ``silu`` …) are random functions: a keyed hash of the Z_p
value, with keys drawn per ``Field`` (one per trial) and shared by every graph evaluated with it.

The default primes are small enough that a float64 matrix product of field elements is exact
when the contraction is cut into chunks, so the verifier runs at BLAS speed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

P = 2_097_143  # prime, p = 2q + 1 < 2**21
Q = 1_048_571  # prime, q | p - 1
OMEGA = 25  # 5 ** ((p - 1) / q) mod p with 5 a primitive root: order exactly q


class NotLaxError(ValueError):
    """Raised when an ``exp`` argument already contains an ``exp`` (outside the LAX class)."""


@dataclass(frozen=True)
class FFValue:
    """One tensor under finite-field semantics: its Z_p half and (if defined) its Z_q half."""

    p: np.ndarray
    q: np.ndarray | None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.p.shape


@functools.cache
def _power_table(base: int, count: int, modulus: int) -> np.ndarray:
    """base ** k mod modulus for k < count, by blocked doubling (vectorised)."""
    table = np.empty(count, dtype=np.int64)
    table[0] = 1
    filled = 1
    while filled < count:
        step = min(filled, count - filled)
        table[filled : filled + step] = (table[:step] * pow(base, filled, modulus)) % modulus
        filled += step
    return table


def _mix(z: np.ndarray) -> np.ndarray:
    # splitmix64 finaliser; uint64 arithmetic wraps, which is what we want.
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def inverse(x: np.ndarray, modulus: int) -> np.ndarray:
    """x ** (m - 2) mod m by square-and-multiply; 0 maps to 0 (probability 1/m per element)."""
    result = np.ones_like(x)
    base = x % modulus
    e = modulus - 2
    while e:
        if e & 1:
            result = (result * base) % modulus
        base = (base * base) % modulus
        e >>= 1
    return result


class Field:
    """Z_p x Z_q arithmetic for one trial: moduli, exp base, and the random-function keys."""

    def __init__(self, seed: int, p: int = P, q: int = Q, omega: int = OMEGA):
        assert (p - 1) % q == 0 and pow(omega, q, p) == 1 and omega != 1
        self.p, self.q, self.omega = p, q, omega
        self.rng = np.random.default_rng(seed)
        self._keys: dict[str, np.uint64] = {}
        # float64 sums of products stay exact below 2**53.
        self.matmul_chunk = max(1, (2**53) // ((p - 1) ** 2))

    def random_input(self, shape: tuple[int, ...]) -> FFValue:
        """Fresh uniform values in Z_p and (independently) in Z_q."""
        return FFValue(
            self.rng.integers(0, self.p, size=shape, dtype=np.int64),
            self.rng.integers(0, self.q, size=shape, dtype=np.int64),
        )

    def state(self) -> tuple:
        """What later draws depend on: the keys drawn so far and the generator's state."""
        return dict(self._keys), self.rng.bit_generator.state

    def restore(self, state: tuple) -> None:
        """Continue as the field that ``state`` was taken from would."""
        keys, rng_state = state
        self._keys = dict(keys)
        self.rng.bit_generator.state = rng_state

    def key(self, name: str) -> np.uint64:
        if name not in self._keys:
            self._keys[name] = np.uint64(self.rng.integers(1, 2**63, dtype=np.int64))
        return self._keys[name]

    # --- elementwise ---------------------------------------------------------------------------

    def _both(self, a: FFValue, b: FFValue, fn) -> FFValue:
        q = None if a.q is None or b.q is None else fn(a.q, b.q, self.q)
        return FFValue(fn(a.p, b.p, self.p), q)

    def add(self, a: FFValue, b: FFValue) -> FFValue:
        return self._both(a, b, lambda x, y, m: (x + y) % m)

    def sub(self, a: FFValue, b: FFValue) -> FFValue:
        return self._both(a, b, lambda x, y, m: (x - y) % m)

    def mul(self, a: FFValue, b: FFValue) -> FFValue:
        return self._both(a, b, lambda x, y, m: (x * y) % m)

    def div(self, a: FFValue, b: FFValue) -> FFValue:
        return self._both(a, b, lambda x, y, m: (x * inverse(y, m)) % m)

    def scale(self, a: FFValue, numerator: int, denominator: int) -> FFValue:
        """a * numerator / denominator for integer constants (the 1/n of a mean)."""

        def fn(x, m):
            return (x * (numerator * pow(denominator, m - 2, m) % m)) % m

        return FFValue(fn(a.p, self.p), None if a.q is None else fn(a.q, self.q))

    def exp(self, a: FFValue) -> FFValue:
        if a.q is None:
            raise NotLaxError("exp of a value that already contains exp: outside the LAX class")
        return FFValue(_power_table(self.omega, self.q, self.p)[a.q], None)

    def constant(self, numerator: int, denominator: int) -> FFValue:
        """The exact rational ``numerator / denominator`` (a float's ``as_integer_ratio``) as a
        0-d value in both halves; it broadcasts against any tensor."""

        def fn(m):
            return np.array(numerator % m * pow(denominator, m - 2, m) % m, dtype=np.int64)

        return FFValue(fn(self.p), fn(self.q))

    def row_function(self, name: str, a: FFValue, dim: int) -> FFValue:
        """A random symmetric function of each row along ``dim`` (kept as size 1): a keyed hash
        of the multiset of the row's Z_p values, standing in for a row max. Equal rows (in any
        order) give equal values; both halves are defined, so ``exp(x - m)`` factors as
        ``exp(x) * exp(-m)`` like any other difference."""
        # A sum in Z_p of per-element hashes: the hashes of a row's chunks add up to the row's
        # (what a max accumulated over loop iterations would need).
        z = (_mix(a.p.astype(np.uint64) ^ self.key(name)) % np.uint64(self.p)).astype(np.int64)
        row = np.sum(z, axis=dim, keepdims=True) % self.p
        return self.random_function(name, FFValue(row, None))

    def random_function(self, name: str, a: FFValue) -> FFValue:
        """A keyed hash standing in for a non-LAX op: equal inputs give equal outputs."""
        z = _mix(a.p.astype(np.uint64) ^ self.key(name))
        p_half = (z % np.uint64(self.p)).astype(np.int64)
        q_half = (_mix(z ^ np.uint64(0x5851F42D4C957F2D)) % np.uint64(self.q)).astype(np.int64)
        return FFValue(p_half, q_half)

    # --- linear --------------------------------------------------------------------------------

    def _matmul_mod(self, a: np.ndarray, b: np.ndarray, modulus: int) -> np.ndarray:
        k = a.shape[-1]
        af, bf = a.astype(np.float64), b.astype(np.float64)
        out = None
        for start in range(0, k, self.matmul_chunk):
            stop = min(k, start + self.matmul_chunk)
            # Contiguous operands keep numpy on its BLAS path (strided slices fall off it).
            a_part = np.ascontiguousarray(af[..., start:stop])
            b_part = np.ascontiguousarray(bf[..., start:stop, :])
            part = matmul_flat(a_part, b_part)
            # The float products are exact integers below 2**53: integer % is exact too and
            # several times faster than np.fmod on large tiles.
            part = part.astype(np.int64) % modulus
            out = part if out is None else (out + part) % modulus
        return out

    def matmul(self, a: FFValue, b: FFValue) -> FFValue:
        q = None if a.q is None or b.q is None else self._matmul_mod(a.q, b.q, self.q)
        return FFValue(self._matmul_mod(a.p, b.p, self.p), q)

    def reduce_sum(self, a: FFValue, dim: int) -> FFValue:
        # Values < 2**21 summed over fewer than 2**42 terms stay exact in int64.
        def fn(x, m):
            return np.sum(x, axis=dim, keepdims=True) % m

        return FFValue(fn(a.p, self.p), None if a.q is None else fn(a.q, self.q))


def map_both(a: FFValue, fn) -> FFValue:
    """Apply a shape-only transform (transpose, slicing) to both halves."""
    return FFValue(fn(a.p), None if a.q is None else fn(a.q))


def matmul_flat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.matmul`` with the batch dims broadcast and flattened first: numpy's BLAS path takes
    one batch dim; more, or broadcast ones, run many times slower (tiles of a block grid have
    four or five)."""
    if a.ndim <= 3 and a.shape[:-2] == b.shape[:-2]:
        return np.matmul(a, b)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a3 = np.broadcast_to(a, batch + a.shape[-2:]).reshape(-1, *a.shape[-2:])
    b3 = np.broadcast_to(b, batch + b.shape[-2:]).reshape(-1, *b.shape[-2:])
    return np.matmul(a3, b3).reshape(*batch, a.shape[-2], b.shape[-1])
