"""Design study: a second-order-in-time implicit diffusion scheme for explant (issue: `adi`).

NumPy prototype of the schemes compared in docs/design/adi.md, on explant's equation
u_t = D ∇²u − k u, cell-centred voxels of edge dx, faces zero-flux (the study), with
Fixed faces (ghost 2·value − u) implemented for one check of the boundary terms.

Schemes (each one step of Δt; a = DΔt/dx², e = kΔt/dim, A_j the 1D operator of axis j
with its share −k/dim of the decay, so A = A_x + A_y + A_z − k exactly):

  lod        explant's current scheme: (I − ΔtA_j) u ← u along x, y, z (backward Euler).
  douglas    Douglas ADI, θ = 1/2, delta form:
               Δ₀ = Δt (A u + g)            (g: affine Fixed-face term; + sources, see below)
               (I − θΔtA_j) Δ_j = Δ_{j−1}   j = x, y, z  (homogeneous line solves)
               u ← u + Δ₃
             identical (to rounding) to the textbook stage form Y_j = Y_{j−1} + θΔt A_j(Y_j − u)
             (`douglas_y`, also implemented, where g enters both the explicit and the
             implicit part).
  lodcn      per-axis Crank–Nicolson: (I − ½ΔtA_j) u ← (I + ½ΔtA_j) u along x, y, z. On a
             tensor grid with constant D, k the A_j commute, so for the homogeneous problem
             this split has no splitting error and is second order; affine terms (Fixed
             faces with decay, sources) do not commute with it and make it first order.
  trbdf2     per-axis TR-BDF2 (γ = 2 − √2), L-stable and second order, two line solves
             per axis with the same matrix.
  +rannacher the first step replaced by two LOD steps of Δt/2 (backward Euler halves).

Sources (secretion, an amount Q added into one voxel every step) enter either
  'before'   added to the field before the step (what the engine does now), or
  'implicit' added to Δ₀ of Douglas (the forcing term of Δ₀ = Δt(Au + s)), so that the
             injected amount only passes through the M-matrix inverses (I − θΔtA_j)⁻¹.

No scipy needed: the exact-in-time references use numpy.linalg.eigh of the 1D operators.

Usage (single-threaded, about 1 min on the 2-core dev machine):
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python scripts/adi_prototype.py [sections]
sections: any of gauss order amp step source cost c mass fixed (default: all; `c` compiles a
small C analogue of the sweeps with the system cc, for the cost ratios).
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import math
import sys
import time

import numpy as np

# ---------------------------------------------------------------------------------------
# Line solver (the analogue of explant_field::implicit::LineCoefficients)
# ---------------------------------------------------------------------------------------

ZF = ("zf", 0.0)


def fixed(v):
    return ("fixed", float(v))


class Line:
    """(1 + e + 2b) c_i − b c_{i±1} = rhs on a line of n voxels with faces lo, hi, as
    LineCoefficients::new(n, b, e, lo, hi): ZeroFlux drops the missing neighbour (diagonal
    1 + e + b), Fixed uses the ghost 2·value − c (diagonal 1 + e + 3b, 2b·value added to the
    rhs unless the solve is homogeneous). Coefficients in float64, stored in `dtype`."""

    def __init__(self, n, b, e, lo=ZF, hi=ZF, dtype=np.float64):
        diag = np.full(n, 1.0 + e + 2.0 * b)
        for end, face in ((0, lo), (n - 1, hi)):
            diag[end] += -b if face[0] == "zf" else b
        cp = np.zeros(n)
        inv = np.zeros(n)
        for i in range(n):
            piv = diag[0] if i == 0 else diag[i] + b * cp[i - 1]
            inv[i] = 1.0 / piv
            cp[i] = -b * inv[i] if i + 1 < n else 0.0
        self.n, self.b = n, b
        self.cp = cp.astype(dtype)
        self.inv = inv.astype(dtype)
        self.lower = dtype(-b)
        self.rhs_lo = 2.0 * b * lo[1] if lo[0] == "fixed" else None
        self.rhs_hi = 2.0 * b * hi[1] if hi[0] == "fixed" else None

    def solve(self, u, ax, homogeneous=False):
        """Solve every line of axis `ax` of u in place (vectorised over the other axes)."""
        v = np.moveaxis(u, ax, 0)
        n, cp, inv, lo = self.n, self.cp, self.inv, self.lower
        if not homogeneous:
            if self.rhs_lo is not None:
                v[0] += v.dtype.type(self.rhs_lo)
            if self.rhs_hi is not None:
                v[n - 1] += v.dtype.type(self.rhs_hi)
        tmp = np.empty_like(v[0])
        v[0] *= inv[0]
        for i in range(1, n):
            np.multiply(v[i - 1], lo, out=tmp)
            v[i] -= tmp
            v[i] *= inv[i]
        for i in range(n - 2, -1, -1):
            np.multiply(v[i + 1], cp[i], out=tmp)
            v[i] -= tmp


def lap(u, ax, lo=ZF, hi=ZF, homogeneous=False):
    """u_{i−1} − 2u_i + u_{i+1} along axis ax with the face ghosts (the affine 2·value of a
    Fixed face included unless homogeneous)."""
    v = np.moveaxis(u, ax, 0)
    out = np.empty_like(v)
    out[1:-1] = v[:-2] + v[2:] - 2 * v[1:-1]
    for end, nb, face in ((0, 1, lo), (-1, -2, hi)):
        if face[0] == "zf":
            out[end] = v[nb] - v[end]
        else:
            out[end] = v[nb] - 3 * v[end]
            if not homogeneous:
                out[end] += v.dtype.type(2 * face[1])
    return np.moveaxis(out, 0, ax)


# ---------------------------------------------------------------------------------------
# Schemes
# ---------------------------------------------------------------------------------------

GAMMA = 2.0 - math.sqrt(2.0)


class Problem:
    def __init__(self, shape, dx, D, k, dt, faces=None, dtype=np.float64):
        self.shape, self.dx, self.D, self.k, self.dt, self.dtype = shape, dx, D, k, dt, dtype
        self.dim = len(shape)
        self.faces = faces or [(ZF, ZF)] * self.dim
        self.a = D * dt / dx**2
        self.kdt = k * dt
        self._co = {}

    def co(self, b_frac):
        """Per-axis lines with b = frac·a, e = frac·kΔt/dim (cached)."""
        if b_frac not in self._co:
            e = b_frac * self.kdt / self.dim
            self._co[b_frac] = [Line(n, b_frac * self.a, e, lo, hi, self.dtype)
                                for n, (lo, hi) in zip(self.shape, self.faces)]
        return self._co[b_frac]

    def Aj(self, u, ax, frac=1.0, homogeneous=False):
        """frac·Δt·A_ax u (with the affine face term unless homogeneous)."""
        lo, hi = self.faces[ax]
        t = self.dtype
        return t(frac * self.a) * lap(u, ax, lo, hi, homogeneous) - t(frac * self.kdt / self.dim) * u

    def full(self, u):
        """Δt (A u + g), summed as the engine's explicit stencil would."""
        out = self.Aj(u, 0)
        for ax in range(1, self.dim):
            out += self.Aj(u, ax)
        return out

    # -- the schemes ------------------------------------------------------------------
    def lod(self, u, frac=1.0):
        u = u.copy()
        for ax, co in enumerate(self.co(frac)):
            co.solve(u, ax)
        return u

    def douglas(self, u, theta=0.5, src=None):
        d = self.full(u)
        if src is not None:
            d += src
        for ax, co in enumerate(self.co(theta)):
            co.solve(d, ax, homogeneous=True)
        return u + d

    def douglas_y(self, u, theta=0.5):
        """Stage form: Y₀ = u + Δt(Au + g); (I − θΔtA_j) Y_j = Y_{j−1} − θΔt(A_j u + g_j)."""
        y = u + self.full(u)
        for ax, co in enumerate(self.co(theta)):
            y -= self.Aj(u, ax, theta)  # θΔt(A_j u + g_j): affine term in the explicit part
            co.solve(y, ax)             # ... and again (+2θb·value) in the implicit part
        return y

    def lodcn(self, u):
        u = u.copy()
        for ax, co in enumerate(self.co(0.5)):
            u += self.Aj(u, ax, 0.5)
            co.solve(u, ax)
        return u

    def trbdf2(self, u):
        g = GAMMA
        w1 = 1.0 / (g * (2.0 - g))
        w0 = (1.0 - g) ** 2 / (g * (2.0 - g))
        u = u.copy()
        for ax, co in enumerate(self.co(g / 2.0)):  # γ/2 = (1−γ)/(2−γ): one matrix
            w = u + self.Aj(u, ax, g / 2.0)
            co.solve(w, ax)
            rhs = self.dtype(w1) * w - self.dtype(w0) * u
            # Fixed faces: the TR stage got its affine term γ/2·Δt·g in Aj (explicit) and
            # again in solve (implicit); the BDF2 stage gets its (1−γ)/(2−γ)·Δt·g = γ/2·Δt·g
            # from solve alone.
            co.solve(rhs, ax)
            u = rhs
        return u

    def step(self, scheme, u, n, src=None, src_mode="before", first="plain"):
        """n steps; returns (u, min over steps of min(u)/max(u))."""
        worst = np.inf
        for i in range(n):
            s = None
            if src is not None:
                if src_mode == "before":
                    u = u + src
                else:
                    s = src
            if i == 0 and first == "rannacher":
                if s is not None:
                    u = u + s
                u = self.lod(self.lod(u, 0.5), 0.5)
            elif scheme == "lod":
                u = self.lod(u + (s if s is not None else 0))
            elif scheme == "douglas":
                u = self.douglas(u, 0.5, s)
            elif scheme.startswith("douglas_theta"):
                u = self.douglas(u, float(scheme.split("=")[1]), s)
            elif scheme == "douglas_y":
                u = self.douglas_y(u)
            elif scheme == "lodcn":
                u = self.lodcn(u + (s if s is not None else 0))
            elif scheme == "trbdf2":
                u = self.trbdf2(u + (s if s is not None else 0))
            elif scheme == "lod_half2":  # two backward-Euler LOD half steps every step
                u = self.lod(self.lod(u + (s if s is not None else 0), 0.5), 0.5)
            else:
                raise ValueError(scheme)
            mx = float(u.max())
            if mx > 0:
                worst = min(worst, float(u.min()) / mx)
        return u, worst


# ---------------------------------------------------------------------------------------
# Exact references
# ---------------------------------------------------------------------------------------

def gauss1d(x, x0, L, s2):
    """Zero-flux images of a 1D Gaussian of variance s2 on [0, L] (normalised)."""
    out = np.zeros_like(x)
    for m in range(-2, 3):
        for c in (x0 + 2 * m * L, -x0 + 2 * m * L):
            out += np.exp(-(x - c) ** 2 / (2 * s2))
    return out / np.sqrt(2 * np.pi * s2)


def gauss3d(n, dx, x0, s2, decay=1.0):
    x = (np.arange(n) + 0.5) * dx
    g = gauss1d(x, x0, n * dx, s2)
    return decay * g[:, None, None] * g[None, :, None] * g[None, None, :]


def line_matrix(n, lo=ZF, hi=ZF):
    """The 1D operator lap (without the affine term) as a dense matrix."""
    m = np.zeros((n, n))
    for i in range(n):
        m[i, i] = -2
        if i > 0:
            m[i, i - 1] = 1
        if i + 1 < n:
            m[i, i + 1] = 1
    for end, face in ((0, lo), (n - 1, hi)):
        m[end, end] += 1 if face[0] == "zf" else -1
    return m


def eig_axis(n, lo=ZF, hi=ZF):
    lam, v = np.linalg.eigh(line_matrix(n, lo, hi))
    return lam, v


def apply_axes(u, mats):
    for ax, m in enumerate(mats):
        u = np.moveaxis(np.tensordot(m, np.moveaxis(u, ax, 0), axes=(1, 0)), 0, ax)
    return u


def semi_discrete(u0, n, D, dx, k, t):
    """exp(t(D/dx² L − k)) u0 exactly (zero-flux, cubic grid), via the 1D eigenbases."""
    lam, v = eig_axis(n)
    e = v @ np.diag(np.exp(t * D / dx**2 * lam)) @ v.T
    return math.exp(-k * t) * apply_axes(u0, [e, e, e])


def semi_discrete_source(n, D, dx, k, t, idx, rate):
    """Exact semi-discrete field from zero at time t with a constant point source `rate`
    (amount/min) in voxel idx: ∫₀ᵗ exp(τA) s dτ in the eigenbasis."""
    lam, v = eig_axis(n)
    mu = D / dx**2 * lam
    sh = [v[i, :] for i in idx]  # Vᵀ δ_i
    shat = sh[0][:, None, None] * sh[1][None, :, None] * sh[2][None, None, :]
    L = mu[:, None, None] + mu[None, :, None] + mu[None, None, :] - k
    uhat = rate * shat * np.expm1(L * t) / L
    return apply_axes(uhat, [v, v, v])


def rel(u, ref):
    return float(np.linalg.norm(u - ref) / np.linalg.norm(ref)), float(np.abs(u - ref).max() / np.abs(ref).max())


# ---------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------

D, K, DX, DT = 1.0e5, 0.1, 20.0, 0.01
N = 80
SIGMA0 = 100.0  # µm: t0 = σ0²/(2D) = 0.05 min, 5 voxels; reproduces the project's LOD 2.80 % / 5.35 %


def gauss_case(n=N, sigma0=SIGMA0):
    x0 = n * DX / 2
    u0 = gauss3d(n, DX, x0, sigma0**2)
    t = 10 * DT
    ex = gauss3d(n, DX, x0, sigma0**2 + 2 * D * t, math.exp(-K * t))
    return u0, ex, t


def section_gauss():
    print(f"\n== Gaussian, {N}^3, dx {DX} µm, D {D:g}, k {K}, dt {DT} (a = {D*DT/DX**2}), "
          f"σ0 = {SIGMA0} µm (t0 = {SIGMA0**2/(2*D):.3g} min), 10 steps, vs exact (images) ==")
    u0, ex, t = gauss_case()
    sd = semi_discrete(u0, N, D, DX, K, t)
    l2, mx = rel(sd, ex)
    print(f"  space error alone (exact-in-time semi-discrete vs exact): rel L2 {l2:.3e}, max {mx:.3e}")
    p = Problem((N, N, N), DX, D, K, DT)
    rows = [("lod", "plain"), ("douglas", "plain"), ("douglas", "rannacher"), ("lodcn", "plain"),
            ("lodcn", "rannacher"), ("trbdf2", "plain"), ("douglas_theta=0.55", "plain"),
            ("douglas_theta=0.6", "plain")]
    print(f"  {'scheme':26s} {'rel L2':>9s} {'max':>9s} | time err vs semi-discrete: {'rel L2':>9s} {'max':>9s}")
    for s, first in rows:
        u, _ = p.step(s, u0, 10, first=first)
        l2, mx = rel(u, ex)
        tl2, tmx = rel(u, sd)
        print(f"  {s + ('+rannacher' if first == 'rannacher' else ''):26s} {l2:9.3e} {mx:9.3e} | {'':27s}{tl2:9.3e} {tmx:9.3e}")
    p32 = Problem((N, N, N), DX, D, K, DT, dtype=np.float32)
    u, _ = p32.step("douglas", u0.astype(np.float32), 10)
    l2, mx = rel(u.astype(np.float64), ex)
    print(f"  {'douglas (float32)':26s} {l2:9.3e} {mx:9.3e}")
    # explicit Euler with substeps inside the stability limit, as the engine's Explicit
    sub = math.ceil(6 * p.a / 0.9)
    pe = Problem((N, N, N), DX, D, K, DT / sub)
    u = u0.copy()
    for _ in range(10 * sub):
        u = u + pe.full(u)
    l2, mx = rel(u, ex)
    print(f"  {'explicit (' + str(sub) + ' substeps)':26s} {l2:9.3e} {mx:9.3e}")


def section_order():
    n = N
    print(f"\n== Order in time: Gaussian on {n}^3 (σ0 {SIGMA0} µm, centred), end t = 0.1 min, "
          f"vs exact-in-time semi-discrete solution (time error only) ==")
    u0, ex, t = gauss_case(n)
    sd = semi_discrete(u0, n, D, DX, K, t)
    rows = [("lod", "plain"), ("douglas", "plain"), ("douglas", "rannacher"), ("lodcn", "plain"),
            ("trbdf2", "plain"), ("douglas_theta=0.55", "plain")]
    for s, first in rows:
        errs = []
        for m in (1, 2, 4, 8):
            p = Problem((n, n, n), DX, D, K, DT / m)
            u, _ = p.step(s, u0, 10 * m, first=first)
            errs.append(rel(u, sd)[0])
        orders = [math.log2(errs[i] / errs[i + 1]) for i in range(3)]
        name = s + ("+rannacher" if first == "rannacher" else "")
        print(f"  {name:22s} dt, dt/2, dt/4, dt/8: " + " ".join(f"{e:.3e}" for e in errs)
              + "   orders " + " ".join(f"{o:.2f}" for o in orders))


def step_field(n, half):
    u = np.zeros((n, n, n))
    c = n // 2
    u[c - half:c + half, c - half:c + half, c - half:c + half] = 1.0
    return u


def section_step():
    n = 40
    print(f"\n== Step function (cube of 1 in zeros, centred), {n}^3, zero-flux, k {K}, 20 steps ==")
    print("  neg = min over steps of min(u)/max(u); over = max over steps of max(u) − 1 (> 0 breaks the "
          "maximum principle); wig = max over steps of the largest rise of u walking outward from the centre "
          "along the x centre line, over max(u) (> 0: a non-monotone profile); rannacher×m: the first m "
          "steps each replaced by two backward-Euler LOD half steps")

    def measure(p, scheme, u0, first="plain", bolus=False):
        neg, over, wig = np.inf, -np.inf, 0.0
        u = np.zeros_like(u0) if bolus else u0
        c = u0.shape[0] // 2
        damped = {"plain": 0, "rannacher": 1, "rannacher2": 2, "rannacher3": 3}[first]
        for i in range(20):
            if bolus and i == 0:
                u = p.douglas(u, 0.5, u0)  # the cube enters as Δ₀'s source term
            elif i < damped:
                u = p.lod(p.lod(u, 0.5), 0.5)
            else:
                u = getattr(p, scheme)(u)
            mx = float(u.max())
            neg = min(neg, float(u.min()) / mx)
            over = max(over, mx - 1.0)
            line = u[c, c, c:]
            wig = max(wig, float(np.max(np.diff(line), initial=0.0)) / mx)
        return neg, over, wig

    for half in (5, 1):
        u0 = step_field(n, half)
        for a_target, dt in ((2.5, 0.01), (25.0, 0.1)):
            p = Problem((n, n, n), DX, D, K, dt)
            print(f"  -- cube {2*half}^3, a = {p.a:g}")
            for name, scheme, first, bolus in (("lod", "lod", "plain", False),
                                                ("douglas", "douglas", "plain", False),
                                                ("douglas+rannacher", "douglas", "rannacher", False),
                                                ("douglas+rannacher×2", "douglas", "rannacher2", False),
                                                ("douglas+rannacher×3", "douglas", "rannacher3", False),
                                                ("douglas, cube via Δ0", "douglas", "plain", True),
                                                ("lodcn", "lodcn", "plain", False),
                                                ("lodcn+rannacher", "lodcn", "rannacher", False),
                                                ("trbdf2", "trbdf2", "plain", False)):
                neg, over, wig = measure(p, scheme, u0, first, bolus)
                print(f"    {name:22s} neg {neg:+.2e}  over {over:+.2e}  wig {wig:.2e}")


def section_amp():
    print("\n== Amplification factors of the stiffest modes (λ_j = ΔtA_j eigenvalue, −4a at the "
          "grid's highest mode of axis j; decay left out) ==")
    g = GAMMA

    def cn(l):
        return (1 + l / 2) / (1 - l / 2)

    def tr(l):
        w = (1 + g / 2 * l) / (1 - g / 2 * l)
        return ((1 / (g * (2 - g))) * w - (1 - g) ** 2 / (g * (2 - g))) / (1 - g / 2 * l)

    for a in (0.5, 2.5, 25.0):
        lm = -4 * a
        for axes in (1, 2, 3):
            ls = [lm] * axes + [0.0] * (3 - axes)
            lod = np.prod([1 / (1 - l) for l in ls])
            lcn = np.prod([cn(l) for l in ls])
            dou = 1 + sum(ls) / np.prod([1 - l / 2 for l in ls])
            trb = np.prod([tr(l) for l in ls])
            ex = math.exp(sum(ls))
            print(f"  a = {a:4g}, highest mode on {axes} axis/axes: exact {ex:.1e}  lod {lod:+.3f}  "
                  f"douglas {dou:+.3f}  lodcn {lcn:+.3f}  trbdf2 {trb:+.3f}")


def section_source():
    n = 40
    c = (n // 2,) * 3
    print(f"\n== Point source: amount Q = rate·dt into voxel {c} every step, zero field at start, "
          f"{n}^3, zero-flux, k {K} ==")
    print("  worst = min over steps of min(u)/max(u) (max = the source voxel); err = rel L2 vs the "
          "exact semi-discrete field with a constant source after 0.2 min (time error only)")
    rate = 1.0
    variants = [
        ("lod", "before", "plain"),
        ("douglas", "before", "plain"),
        ("douglas", "before", "rannacher"),
        ("douglas", "implicit", "plain"),
        ("douglas", "implicit", "rannacher"),
        ("douglas_theta=0.55", "implicit", "plain"),
        ("douglas_theta=0.6", "before", "plain"),
        ("douglas_theta=0.6", "implicit", "plain"),
        ("douglas_theta=1.0", "implicit", "plain"),
        ("lodcn", "before", "plain"),
        ("trbdf2", "before", "plain"),
        ("lod_half2", "before", "plain"),
    ]
    for a_target, dt in ((2.5, 0.01), (25.0, 0.1)):
        T = 0.2 if a_target == 2.5 else 2.0
        ref = semi_discrete_source(n, D, DX, K, T, c, rate)
        print(f"  -- a = {D*dt/DX**2:g} (dt {dt}), {round(T/dt)} steps to t = {T}")
        for s, mode, first in variants:
            p = Problem((n, n, n), DX, D, K, dt)
            src = np.zeros((n, n, n))
            src[c] = rate * dt
            u, worst = p.step(s, np.zeros((n, n, n)), round(T / dt), src=src, src_mode=mode, first=first)
            err = rel(u, ref)[0]
            # error away from the source voxel (the voxel itself holds the spike)
            mask = np.ones_like(u, bool)
            mask[c] = False
            err_far = float(np.linalg.norm((u - ref)[mask]) / np.linalg.norm(ref[mask]))
            name = f"{s} src={mode}" + ("+R" if first == "rannacher" else "")
            print(f"    {name:36s} worst {worst:+.2e}  err {err:.2e} (without the source voxel {err_far:.2e})")
    # order in time of the source term: same end time, dt halved (a = 2.5 at dt)
    T = 0.2
    ref = semi_discrete_source(n, D, DX, K, T, c, rate)
    print("  order in time with the source (rel L2 vs exact semi-discrete, t = 0.2, dt = 0.01/m):")
    for s, mode in (("lod", "before"), ("douglas", "before"), ("douglas", "implicit"), ("lodcn", "before")):
        errs = []
        for m in (1, 2, 4, 8):
            dt = 0.01 / m
            p = Problem((n, n, n), DX, D, K, dt)
            src = np.zeros((n, n, n))
            src[c] = rate * dt
            u, _ = p.step(s, np.zeros((n, n, n)), round(T / dt), src=src, src_mode=mode)
            errs.append(rel(u, ref)[0])
        orders = [math.log2(errs[i] / errs[i + 1]) for i in range(3)]
        print(f"    {s + ' src=' + mode:24s} " + " ".join(f"{e:.3e}" for e in errs)
              + "   orders " + " ".join(f"{o:.2f}" for o in orders))
    # when and where does douglas src=implicit go negative?
    for dt in (0.01, 0.1):
        p = Problem((n, n, n), DX, D, K, dt)
        src = np.zeros((n, n, n))
        src[c] = rate * dt
        u = np.zeros((n, n, n))
        hist = []
        for i in range(20):
            u = p.douglas(u, 0.5, src)
            j = np.unravel_index(np.argmin(u), u.shape)
            hist.append((float(u.min() / u.max()), i + 1, tuple(int(q) - n // 2 for q in j)))
        neg = [h for h in hist if h[0] < 0]
        print(f"  douglas src=implicit, a = {p.a:g}: negative after steps {[h[1] for h in neg]}; worst "
              f"{min(hist)[0]:+.1e} at offset {min(hist)[2]} from the source")
    # a strong sink (PhysiCell's implicit uptake ρ ← ρ/(1 + fU), fU = 10 per tick) on a uniform field
    print("  point sink (ρ ← ρ/(1+fU), fU = 10) in a uniform field of 1, 20 steps: min(u), max(u) − 1 over steps")
    for a_target, dt in ((2.5, 0.01), (25.0, 0.1)):
        for s_, mode in (("lod", "before"), ("douglas", "before"), ("douglas", "implicit")):
            p = Problem((n, n, n), DX, D, K, dt)
            u = np.ones((n, n, n))
            lo_, hi_ = np.inf, -np.inf
            for i in range(20):
                take = u[c] / (1 + 10.0) - u[c]
                if mode == "before" or s_ == "lod":
                    u = u.copy()
                    u[c] += take
                    u = p.lod(u) if s_ == "lod" else p.douglas(u)
                else:
                    sv = np.zeros_like(u)
                    sv[c] = take
                    u = p.douglas(u, 0.5, sv)
                lo_, hi_ = min(lo_, float(u.min())), max(hi_, float(u.max()) - 1)
            print(f"    a = {p.a:4g} {s_ + ' src=' + mode:24s} min {lo_:+.3e}  max−1 {hi_:+.1e}")
    # many sources: 300 random voxels secreting, as a tissue would
    rng = np.random.default_rng(1)
    src = np.zeros((n, n, n))
    idx = rng.integers(5, n - 5, size=(300, 3))
    src[idx[:, 0], idx[:, 1], idx[:, 2]] += rng.uniform(0.5, 1.5, 300) * 0.01
    print("  300 random point sources, a = 2.5, 20 steps: worst min/max")
    for s, mode in (("lod", "before"), ("douglas", "before"), ("douglas", "implicit"), ("lodcn", "before")):
        p = Problem((n, n, n), DX, D, K, 0.01)
        _, worst = p.step(s, np.zeros((n, n, n)), 20, src=src, src_mode=mode)
        print(f"    {s + ' src=' + mode:24s} worst {worst:+.2e}")


def section_cost():
    print(f"\n== Cost per step, float32, {N}^3, NumPy single thread (indicative only) ==")
    u0 = gauss_case()[0].astype(np.float32)
    p = Problem((N, N, N), DX, D, K, DT, dtype=np.float32)
    src = np.zeros_like(u0)
    src[N // 2, N // 2, N // 2] = 0.01
    funcs = {
        "lod": lambda u: p.lod(u),
        "douglas (delta form)": lambda u: p.douglas(u, 0.5, src),
        "douglas_y (stage form)": lambda u: p.douglas_y(u),
        "lodcn": lambda u: p.lodcn(u),
        "trbdf2": lambda u: p.trbdf2(u),
    }
    base = None
    for name, f in funcs.items():
        f(u0)
        ts = []
        for _ in range(7):
            t0 = time.perf_counter()
            f(u0)
            ts.append(time.perf_counter() - t0)
        t = min(ts)
        base = base or t
        print(f"  {name:24s} {t*1e3:7.1f} ms/step  ({t/base:.2f}× lod)")
    # the pieces
    u = u0.copy()
    pieces = []
    for ax in range(3):
        pieces.append((f"one line-solve sweep, axis {ax}", lambda ax=ax: p.co(0.5)[ax].solve(u, ax, True)))
    for ax in range(3):
        pieces.append((f"one 3-point stencil, axis {ax}", lambda ax=ax: p.Aj(u0, ax, 0.5)))
    pieces.append(("7-point Δt(Au) (3 axes)", lambda: p.full(u0)))
    for label, f in pieces:
        f()
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        print(f"  {label:32s} {sorted(ts)[2]*1e3:7.1f} ms")


def section_mass():
    n = 40
    print(f"\n== Mass drift in float32 (sum in float64), {n}^3 Gaussian (σ0 {SIGMA0:g} µm), zero-flux, "
          f"k = 0, 200 steps of dt 0.01 (a = 2.5) ==")
    x0 = n * DX / 2
    u0 = gauss3d(n, DX, x0, SIGMA0**2).astype(np.float32)
    u0 /= np.float32(u0.max())
    m0 = float(u0.sum(dtype=np.float64))
    p = Problem((n, n, n), DX, D, 0.0, DT, dtype=np.float32)
    for s, first in (("lod", "plain"), ("douglas", "plain"), ("douglas", "rannacher"),
                     ("lodcn", "plain"), ("trbdf2", "plain")):
        u = u0.copy()
        drifts = []
        for i in range(200):
            if i == 0 and first == "rannacher":
                u = p.lod(p.lod(u, 0.5), 0.5)
            elif s == "douglas":
                u = p.douglas(u)
            else:
                u = getattr(p, s)(u)
            assert u.dtype == np.float32
            drifts.append(float(u.sum(dtype=np.float64)) / m0 - 1)
        d = np.array(drifts)
        per = np.diff(np.concatenate([[0.0], d]))
        name = s + ("+rannacher" if first == "rannacher" else "")
        print(f"  {name:20s} total drift after 200 steps {d[-1]:+.2e}; per step mean {per.mean():+.2e}, "
              f"rms {np.sqrt((per**2).mean()):.2e}")
    print("  (the NumPy LOD line coefficients are plainly rounded; explant's LineCoefficients moves "
          "them by a few ulps to match column sums, which removes LOD's systematic drift)")


def section_fixed():
    n = 24
    print(f"\n== Fixed faces: {n}^3, x faces Fixed (1.0 low, 0.25 high), y, z zero-flux, zero start, "
          f"k {K}; time error vs exact semi-discrete at t = 0.1 ==")
    lo, hi = fixed(1.0), fixed(0.25)
    faces = [(lo, hi), (ZF, ZF), (ZF, ZF)]
    # the solution depends on axis 0 only: u(t) = u_ss + exp(t(A_x − k))(u0 − u_ss)
    Lx = line_matrix(n, lo, hi)
    g = np.zeros(n)
    g[0], g[-1] = 2 * lo[1], 2 * hi[1]
    Ax = D / DX**2 * Lx - K * np.eye(n)
    gx = D / DX**2 * g
    uss = np.linalg.solve(Ax, -gx)
    t = 0.1
    lam, v = np.linalg.eig(Ax)
    ex1 = uss + (v @ np.diag(np.exp(lam * t)) @ np.linalg.inv(v) @ (-uss)).real
    ref = np.broadcast_to(ex1[:, None, None], (n, n, n))
    for s in ("lod", "douglas", "douglas_y", "lodcn", "trbdf2"):
        errs = []
        for m in (1, 2, 4):
            p = Problem((n, n, n), DX, D, K, DT / m, faces=faces)
            u, _ = p.step(s, np.zeros((n, n, n)), 10 * m)
            errs.append(rel(u, ref)[0])
        print(f"  {s:10s} dt, dt/2, dt/4: " + " ".join(f"{e:.3e}" for e in errs)
              + f"   order {math.log2(errs[1] / errs[2]):.2f}")
    p = Problem((n, n, n), DX, D, K, DT, faces=faces)
    rng = np.random.default_rng(0)
    u = rng.uniform(0, 1, (n, n, n))
    print(f"  delta form vs stage form, one step from random data: max |diff| "
          f"{np.abs(p.douglas(u) - p.douglas_y(u)).max():.1e}")


# A structural C analogue of explant's sweeps (not the Rust code; plain C, float32, no FMA
# contraction, baseline x86-64 like the default Rust target), for the per-step cost ratios
# NumPy cannot give. Compiled with the system `cc` into a temporary directory.
C_BENCH = r"""/* Structural analogue (not the Rust code) of explant's LOD line sweeps and of Douglas
   ADI built from the same sweeps, float32, zero-flux faces, one thread.
   usage: bench N STEPS A REPS  -> ns per voxel-step, min over REPS interleaved repetitions */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <math.h>
#define TILE 32
#define BLOCK 512
static int NX, NY, NZ;
static float buf[TILE * 4096], prevo[4096];
typedef struct { float *lo, *up, *iv; float b, e; } Co;
static Co coeffs(int n, double b, double e) {
  Co c = { malloc(n * 4), malloc(n * 4), malloc(n * 4), (float)b, (float)e };
  double cp = 0;
  for (int i = 0; i < n; i++) {
    double d = 1 + e + 2 * b - ((i == 0 || i == n - 1) ? b : 0), piv = i == 0 ? d : d + b * cp;
    c.iv[i] = (float)(1 / piv); cp = i + 1 < n ? -b / piv : 0; c.up[i] = (float)cp; c.lo[i] = i ? (float)-b : 0;
  }
  return c;
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
/* mode 0: plain Thomas; 1: per-axis CN (explicit half formed in the forward pass); out != 0: back pass also does out += c */
static void solve(float *base, float *out, size_t st, int n, int w, const Co *k, int cn) {
  float s = 1 - 2 * k->b - k->e, b = k->b;
  for (int i = 0; i < n; i++) {
    float *c = base + i * st; const float *p = i ? c - st : c, *q = i + 1 < n ? c + st : c; float l = k->lo[i], v = k->iv[i];
    if (!cn) { if (i == 0) for (int j = 0; j < w; j++) c[j] *= v; else for (int j = 0; j < w; j++) c[j] = (c[j] - l * p[j]) * v; }
    else if (i == 0) for (int j = 0; j < w; j++) { float o = c[j]; prevo[j] = o; c[j] = (s * o + b * (o + q[j])) * v; }
    else for (int j = 0; j < w; j++) { float o = c[j], r = s * o + b * (prevo[j] + q[j]); prevo[j] = o; c[j] = (r - l * p[j]) * v; }
  }
  if (out) { float *c = base + (size_t)(n - 1) * st, *o = out + (size_t)(n - 1) * st; for (int j = 0; j < w; j++) o[j] += c[j]; }
  for (int i = n - 2; i >= 0; i--) { float *c = base + i * st, *q = c + st, u = k->up[i];
    if (out) { float *o = out + i * st; for (int j = 0; j < w; j++) { c[j] -= u * q[j]; o[j] += c[j]; } }
    else for (int j = 0; j < w; j++) c[j] -= u * q[j]; }
}
/* Δt(Au) of x row r = z*NY + y (zero-flux mirror) */
static void stencil_row(const float *restrict u, int r, float *restrict out, float a, float kdt) {
  int y = r % NY, z = r / NY; size_t P = (size_t)NX * NY; const float *restrict c = u + (size_t)r * NX;
  const float *ym = y > 0 ? c - NX : c, *yp = y + 1 < NY ? c + NX : c, *zm = z > 0 ? c - P : c, *zp = z + 1 < NZ ? c + P : c;
  float s6 = 6 * a + kdt; int x = 0;
  out[0] = a * (c[0] + c[1] + ym[0] + yp[0] + zm[0] + zp[0]) - s6 * c[0];
  for (x = 1; x < NX - 1; x++) out[x] = a * (c[x - 1] + c[x + 1] + ym[x] + yp[x] + zm[x] + zp[x]) - s6 * c[x];
  out[x] = a * (c[x - 1] + c[x] + ym[x] + yp[x] + zm[x] + zp[x]) - s6 * c[x];
}
static float row[4096];
/* x sweep in transposed tiles; u: Δ0 computed from u while loading; out: write back out += result */
static void sweep_x(float *f, const Co *k, int cn, const float *u, float a, float kdt, float *out) {
  int rows = NY * NZ;
  for (int r0 = 0; r0 < rows; r0 += TILE) {
    int L = rows - r0 < TILE ? rows - r0 : TILE;
    for (int l = 0; l < L; l++) { const float *s = f + (size_t)(r0 + l) * NX; if (u) { stencil_row(u, r0 + l, row, a, kdt); s = row; }
      for (int i = 0; i < NX; i++) buf[i * L + l] = s[i]; }
    solve(buf, 0, L, NX, L, k, cn);
    for (int l = 0; l < L; l++) { float *d = (out ? out : f) + (size_t)(r0 + l) * NX;
      if (out) for (int i = 0; i < NX; i++) d[i] += buf[i * L + l]; else for (int i = 0; i < NX; i++) d[i] = buf[i * L + l]; }
  }
}
static void sweep_rows(float *f, int groups, int n, int len, const Co *k, int cn, float *out) {
  for (int g = 0; g < groups; g++) for (int b = 0; b < len; b += BLOCK) {
    int w = len - b < BLOCK ? len - b : BLOCK; size_t off = (size_t)g * n * len + b;
    solve(f + off, out ? out + off : 0, len, n, w, k, cn);
  }
}
/* z sweep whose forward pass forms Δ0 = Δt(Au) plane by plane (blocks of whole x rows) */
static void sweep_z_stencil(float *d, const float *u, const Co *k, float a, float kdt) {
  size_t P = (size_t)NX * NY; int per = BLOCK / NX > 0 ? BLOCK / NX : 1;
  for (int y0 = 0; y0 < NY; y0 += per) {
    int yr = NY - y0 < per ? NY - y0 : per, w = yr * NX; size_t off = (size_t)y0 * NX;
    for (int i = 0; i < NZ; i++) {
      for (int r = 0; r < yr; r++) stencil_row(u, i * NY + y0 + r, d + i * P + off + (size_t)r * NX, a, kdt);
      float *c = d + i * P + off, v = k->iv[i];
      if (i == 0) for (int j = 0; j < w; j++) c[j] *= v;
      else { const float *p = c - P; float l = k->lo[i]; for (int j = 0; j < w; j++) c[j] = (c[j] - l * p[j]) * v; }
    }
    for (int i = NZ - 2; i >= 0; i--) { float *c = d + i * P + off; const float *q = c + P; float uu = k->up[i];
      for (int j = 0; j < w; j++) c[j] -= uu * q[j]; }
  }
}
static float *U, *D; static Co BE, HALF; static float A, KDT; static size_t V;
static void step(int s) {
  switch (s) {
  case 0: sweep_x(U, &BE, 0, 0, 0, 0, 0); sweep_rows(U, NZ, NY, NX, &BE, 0, 0); sweep_rows(U, 1, NZ, NX * NY, &BE, 0, 0); break;
  case 1: sweep_x(U, &HALF, 1, 0, 0, 0, 0); sweep_rows(U, NZ, NY, NX, &HALF, 1, 0); sweep_rows(U, 1, NZ, NX * NY, &HALF, 1, 0); break;
  case 2: for (int r = 0; r < NY * NZ; r++) stencil_row(U, r, D + (size_t)r * NX, A, KDT);
          sweep_x(D, &HALF, 0, 0, 0, 0, 0); sweep_rows(D, NZ, NY, NX, &HALF, 0, 0); sweep_rows(D, 1, NZ, NX * NY, &HALF, 0, 0);
          for (size_t i = 0; i < V; i++) U[i] += D[i];
          break;
  case 3: sweep_x(D, &HALF, 0, U, A, KDT, 0); sweep_rows(D, NZ, NY, NX, &HALF, 0, 0); sweep_rows(D, 1, NZ, NX * NY, &HALF, 0, U); break;
  case 4: sweep_z_stencil(D, U, &HALF, A, KDT); sweep_rows(D, NZ, NY, NX, &HALF, 0, 0); sweep_x(D, &HALF, 0, 0, 0, 0, U); break;
  }
}
static void init(float *u) { for (size_t i = 0; i < V; i++) u[i] = (float)((i * 7919) % 1000) * 1e-3f; }
int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 100, steps = argc > 2 ? atoi(argv[2]) : 3, reps = argc > 4 ? atoi(argv[4]) : 15;
  double a = argc > 3 ? atof(argv[3]) : 10.0, kdt = 0.001;
  NX = NY = NZ = n; V = (size_t)n * n * n; A = (float)a; KDT = (float)kdt;
  BE = coeffs(n, a, kdt / 3); HALF = coeffs(n, a / 2, kdt / 6);
  U = malloc(V * 4); D = malloc(V * 4);
  const char *names[] = { "lod (3 backward-Euler sweeps)", "lodcn (explicit half fused into each sweep)",
    "douglas unfused (Δ0 pass, 3 sweeps, add pass)", "douglas x-first (Δ0 in x-tile load, add in z back pass)",
    "douglas z-first (Δ0 in z forward pass, add in x write-back)" };
  double best[5] = { 1e30, 1e30, 1e30, 1e30, 1e30 };
  for (int rep = 0; rep < reps; rep++) for (int s = 0; s < 5; s++) {
    init(U); double t0 = now();
    for (int k = 0; k < steps; k++) step(s);
    double t = (now() - t0) / steps / V * 1e9; if (t < best[s]) best[s] = t;
  }
  for (int s = 0; s < 5; s++) printf("  %-62s %5.2f ns/voxel/step  %.2fx lod\n", names[s], best[s], best[s] / best[0]);
  /* the three Douglas variants agree to rounding */
  float *r = malloc(V * 4); init(U); step(2); for (size_t i = 0; i < V; i++) r[i] = U[i];
  for (int s = 3; s < 5; s++) { double md = 0; init(U); step(s); for (size_t i = 0; i < V; i++) md = fmax(md, fabs(U[i] - r[i]));
    printf("  variant %d vs unfused Douglas, one step: max |diff| %.1e (values O(1))\n", s, md); }
  return 0;
}
"""


def section_c():
    import shutil
    import subprocess
    import tempfile
    cc = shutil.which("cc") or shutil.which("gcc")
    print("\n== Cost per step, C analogue of the sweeps (cc -O3 -ffp-contract=off), one thread, "
          "min over 15 interleaved repetitions of 3 steps ==")
    if cc is None:
        print("  no C compiler: skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "bench.c")
        exe = os.path.join(tmp, "bench")
        with open(src, "w") as f:
            f.write(C_BENCH)
        subprocess.run([cc, "-O3", "-ffp-contract=off", "-o", exe, src, "-lm"], check=True)
        for n, a in ((100, 10.0), (80, 2.5)):
            print(f"  -- {n}^3, a = {a:g}")
            out = subprocess.run([exe, str(n), "3", str(a), "15"], check=True, capture_output=True, text=True)
            print(out.stdout.rstrip())


SECTIONS = {"gauss": section_gauss, "order": section_order, "amp": section_amp, "step": section_step,
            "source": section_source, "cost": section_cost, "c": section_c, "mass": section_mass,
            "fixed": section_fixed}

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(SECTIONS)
    t0 = time.perf_counter()
    for name in chosen:
        ts = time.perf_counter()
        SECTIONS[name]()
        print(f"  [{name}: {time.perf_counter() - ts:.1f} s]")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
