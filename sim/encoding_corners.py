"""The hash grid's per-point corner arithmetic, as plain Python functions on numpy scalars, which
each compiled backend compiles for its target: `sim.encoding_cpu` with numba (inlined into its CPU
kernels), `sim.encoding_cuda` as numba.cuda device functions. One source, so the backends cannot
drift apart; the semantics they implement are those of `sim.encoding_reference`.

Integer work is uint32 / int32 (the spec's uint32 hash; float -> int32 is one instruction, float ->
uint64 is not), table offsets uint64 (so numba emits no negative-index wraparound). Corner order:
c = bit0:x | bit1:y | bit2:z.
"""

from __future__ import annotations

import numpy as np

from sim.encoding_reference import PRIME_Y, PRIME_Z


def level_consts(n, dense, T):
    """Constants of level resolution ``n``: scale ``n - 1``, last cell ``n - 2``, dense strides
    (``dy, dz``; 0 when hashed) or hash primes (``hy, hz``; 0 when dense), mask ``T - 1``."""
    if dense:
        return np.float32(n - 1), np.int32(n - 2), np.uint32(n), np.uint32(n * n), np.uint32(0), np.uint32(0), np.uint32(T - 1)
    return np.float32(n - 1), np.int32(n - 2), np.uint32(0), np.uint32(0), np.uint32(PRIME_Y), np.uint32(PRIME_Z), np.uint32(T - 1)


def cell(x0, x1, x2, s, nm2, dy, dz, hy, hz, mask):
    """Table entries (uint64) of the 8 corners around a point, corner order c = bit0:x | bit1:y |
    bit2:z, and the point's fractions in its cell."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    p0 = min(max(x0, zero), one) * s
    p1 = min(max(x1, zero), one) * s
    p2 = min(max(x2, zero), one) * s
    c0 = min(np.int32(p0), nm2)  # p >= 0, so truncation == floor
    c1 = min(np.int32(p1), nm2)
    c2 = min(np.int32(p2), nm2)
    f0 = p0 - np.float32(c0)
    f1 = p1 - np.float32(c1)
    f2 = p2 - np.float32(c2)
    u0 = np.uint32(c0)
    u1 = np.uint32(c1)
    u2 = np.uint32(c2)
    if dy != 0:  # dense level
        k0 = u0 + u1 * dy + u2 * dz
        k1 = k0 + np.uint32(1)
        k2 = k0 + dy
        k3 = k1 + dy
        k4 = k0 + dz
        k5 = k1 + dz
        k6 = k2 + dz
        k7 = k3 + dz
    else:
        a1 = u0 + np.uint32(1)
        b0 = u1 * hy
        b1 = b0 + hy
        d0 = u2 * hz
        d1 = d0 + hz
        # the low log2(T) <= 32 bits of wider products equal those of the uint32 products
        k0 = (u0 ^ b0 ^ d0) & mask
        k1 = (a1 ^ b0 ^ d0) & mask
        k2 = (u0 ^ b1 ^ d0) & mask
        k3 = (a1 ^ b1 ^ d0) & mask
        k4 = (u0 ^ b0 ^ d1) & mask
        k5 = (a1 ^ b0 ^ d1) & mask
        k6 = (u0 ^ b1 ^ d1) & mask
        k7 = (a1 ^ b1 ^ d1) & mask
    u = np.uint64
    return u(k0), u(k1), u(k2), u(k3), u(k4), u(k5), u(k6), u(k7), f0, f1, f2


def trilinear(f0, f1, f2):
    """Trilinear weights of the 8 corners (same order as `cell`)."""
    one = np.float32(1.0)
    g0 = one - f0
    g1 = one - f1
    g2 = one - f2
    w00 = g1 * g2
    w10 = f1 * g2
    w01 = g1 * f2
    w11 = f1 * f2
    return g0 * w00, f0 * w00, g0 * w10, f0 * w10, g0 * w01, f0 * w01, g0 * w11, f0 * w11


def frac_grads(f0, f1, f2, v0, v1, v2, v3, v4, v5, v6, v7):
    """d/d(frac) of sum_c w_c v_c: per axis, corner pairs differing in that axis' bit, weighted by
    the other two axes' trilinear factors."""
    one = np.float32(1.0)
    g0 = one - f0
    g1 = one - f1
    g2 = one - f2
    e0 = g1 * g2 * (v1 - v0) + f1 * g2 * (v3 - v2) + g1 * f2 * (v5 - v4) + f1 * f2 * (v7 - v6)
    e1 = g0 * g2 * (v2 - v0) + f0 * g2 * (v3 - v1) + g0 * f2 * (v6 - v4) + f0 * f2 * (v7 - v5)
    e2 = g0 * g1 * (v4 - v0) + f0 * g1 * (v5 - v1) + g0 * f1 * (v6 - v2) + f0 * f1 * (v7 - v3)
    return e0, e1, e2
