//! Cell–grid exchange (the `secrete` stage) against closed forms, and the exchange
//! ledger against an independent sum.
//!
//! PhysiCell's implicit per-cell update (BioFVM's cell sources and sinks: Ghaffarizadeh,
//! Friedman & Macklin, *Bioinformatics* 32:1256, 2016) of the concentration `ρ` in the
//! voxel holding a cell, over one tick `Δt`,
//! for cell volume `V_c`, voxel volume `V_v`, secretion rate `S` toward saturation `ρ*`,
//! uptake rate `U` and net export `E`:
//!
//! `ρ ← (ρ + Δt (V_c/V_v) S ρ*) / (1 + Δt (V_c/V_v)(S + U)) + Δt E / V_v`
//!
//! is, per cell, the affine map `ρ ↦ aρ + b`. The cells of one voxel act one after the
//! other in row order, so a voxel's tick is the composition of its cells' maps (then the
//! decay of the diffusion stage), again affine, `ρ ↦ αρ + β`, and `n` ticks have the
//! closed form `ρ_n = ρ_∞ + αⁿ (ρ_0 − ρ_∞)` with `ρ_∞ = β / (1 − α)`. The scenes here
//! have no diffusion (or, where they have it, only quantities diffusion cannot change are
//! checked), so every voxel follows its own closed form, computed in f64 by the test.
//!
//! The cells are placed by the test (`Simulation::with_cells`), never move (mobility 0)
//! and keep their expression (a teacher with zero rates): `V_c = 4/3 π 5³ µm³` and
//! `V_v = 20³ µm³` (the grid's voxels are cubes, also in 2D), so `V_c/V_v ≈ 0.0654`.

use std::f64::consts::PI;
use std::path::Path;

use explant_core::{CellId, InitialCells, PerturbationLog, Phase, Row, Simulation, Teacher};
use explant_field::{ChannelParams, CpuDiffusion, Scheme};
use explant_scene::{LoadedScene, Scene};
use glam::Vec3;

/// Voxel edge, µm, and voxels per side of the 200 µm square domain.
const DX: f64 = 20.0;
const NX: usize = 10;
/// Cell radius, µm.
const RADIUS: f64 = 5.0;

/// `V_c / V_v`, computed here in f64 (the simulator computes both in f32).
fn volume_ratio() -> f64 {
    4.0 / 3.0 * PI * RADIUS.powi(3) / DX.powi(3)
}

/// The float32 budget of `ticks` updates of a voxel, relative to the largest value it
/// holds: each tick rounds about five operations (≤ ε/2 each), so 4ε per tick is a
/// bound with room (the measured errors are 1–6 % of it); the wrong schemes the tests
/// name are off by percents, 100 times the budget or more (the tests assert that too).
fn budget(ticks: u64) -> f64 {
    4.0 * ticks as f64 * f64::from(f32::EPSILON)
}

/// One cell the test places: in voxel `(ix, iy)`, `offset` µm from the voxel's centre
/// along x, of cell type `ty` (0 `living`, 1 `doomed`), with expression `g` (of `G`, which
/// drives secretion toward saturation and export), `r` (of the receptor `R`: uptake).
#[derive(Clone, Copy, Debug)]
struct Placed {
    voxel: [usize; 2],
    offset: f32,
    ty: u32,
    g: f32,
    r: f32,
}

impl Placed {
    fn living(voxel: [usize; 2], offset: f32, g: f32, r: f32) -> Self {
        Self { voxel, offset, ty: 0, g, r }
    }

    fn index(&self) -> usize {
        self.voxel[1] * NX + self.voxel[0]
    }

    fn position(&self) -> Vec3 {
        let centre = |i: usize| (i as f64 * DX + DX / 2.0) as f32;
        Vec3::new(centre(self.voxel[0]) + self.offset, centre(self.voxel[1]), 0.0)
    }
}

/// A 2D scene of 10 × 10 voxels of 20 µm with genes `G`, `R` (and `E`, a second
/// secreting gene for ligands that only export), the given `[[ligands]]` tables and
/// `extra` tables, run for `ticks` ticks of `dt`. Its cells are given by the test;
/// `doomed` cells enter apoptosis at the first fate step (rate 1000/min) and take
/// 10⁴ min to be removed.
fn scene(dt: f64, ticks: u64, ligands: &str, extra: &str) -> Scene {
    let duration = dt * ticks as f64;
    let text = format!(
        r#"
version = 1
name = "exchange"
seed = 5
genes = ["G", "R", "E"]
[time]
dt = {dt:?}
duration = {duration:?}
record_every = {duration:?}
[grid]
size = [200.0, 200.0]
dx = {DX:?}
{ligands}
[[cell_types]]
name = "living"
[[cell_types]]
name = "doomed"
apoptosis = {{ rate = 1000.0, duration = 10000.0 }}
[tissue]
shape = "import"
path = "placed-by-the-test.h5ad"
cell_type = "living"
cell_radius = {RADIUS:?}
[mechanics]
mobility = 0.0
[teacher]
degradation = 0.0
default_max_rate = 0.0
{extra}
"#
    );
    LoadedScene::from_str(&text, Path::new("exchange.toml")).unwrap_or_else(|e| panic!("{e}")).scene
}

/// One `[[ligands]]` table; `coupling` holds the rates and `initial`.
fn ligand(name: &str, secreted_by: &str, diffusion: f64, decay: f64, coupling: &str) -> String {
    format!(
        "[[ligands]]\nname = \"{name}\"\ndiffusion = {diffusion:?}\ndecay = {decay:?}\nsecreted_by = \"{secreted_by}\"\n\
         receptor = \"R\"\n{coupling}\n"
    )
}

/// The simulation of `s` with exactly the `cells` (`E` expression = `g` as well).
fn start(s: &Scene, cells: &[Placed]) -> Simulation {
    start_with(s, cells, Scheme::Explicit)
}

/// [`start`] with diffusion integrated by `scheme`.
fn start_with(s: &Scene, cells: &[Placed], scheme: Scheme) -> Simulation {
    let given = InitialCells {
        positions: cells.iter().map(Placed::position).collect(),
        cell_types: cells.iter().map(|c| c.ty).collect(),
        expression: cells.iter().flat_map(|c| [c.g, c.r, c.g]).collect(),
    };
    Simulation::with_cells(
        s,
        Box::new(CpuDiffusion::with_scheme(scheme)),
        Box::new(Teacher::from_scene(s)),
        Some(given),
    )
    .unwrap()
}

/// Each cell's row (cells are given in id order).
fn rows(sim: &mut Simulation) -> Vec<u32> {
    let mut q = sim.world.query::<(&CellId, &Row)>();
    let mut r: Vec<(u64, u32)> = q.iter(&sim.world).map(|(id, row)| (id.0, row.0)).collect();
    r.sort_unstable();
    r.into_iter().map(|(_, row)| row).collect()
}

/// Step `ticks` ticks and check that no cell moved and the row order held (the closed
/// forms assume both).
fn run(sim: &mut Simulation, cells: &[Placed], ticks: u64) {
    let before = rows(sim);
    for _ in 0..ticks {
        sim.step().unwrap();
    }
    assert_eq!(rows(sim), before, "the row order changed");
    let t = sim.cells();
    for (c, p) in cells.iter().zip(&t.positions) {
        assert_eq!(Vec3::from_array(*p), c.position(), "a cell moved");
    }
}

/// The concentration of ligand `c` in voxel `v`.
fn at(sim: &Simulation, c: usize, v: usize) -> f64 {
    let f = &sim.ligands().field;
    f64::from(f.data[c * f.grid.voxels() + v])
}

/// `ρ ↦ aρ + b`.
#[derive(Clone, Copy, Debug)]
struct Affine {
    a: f64,
    b: f64,
}

impl Affine {
    const IDENTITY: Affine = Affine { a: 1.0, b: 0.0 };

    /// One cell's implicit step (module docs), with `S`, `U`, `E` already scaled by the
    /// cell's expression.
    fn cell(dt: f64, s: f64, sat: f64, u: f64, e: f64) -> Self {
        let f = dt * volume_ratio();
        let a = 1.0 / (1.0 + f * (s + u));
        Affine { a, b: a * f * s * sat + dt * e / DX.powi(3) }
    }

    /// `self`, then `next`.
    fn then(self, next: Affine) -> Self {
        Affine { a: next.a * self.a, b: next.a * self.b + next.b }
    }

    /// `ρ_n` after `n` applications from `rho0`: `ρ_∞ + αⁿ(ρ_0 − ρ_∞)`, or `ρ_0 + nβ` when
    /// `α = 1`.
    fn after(self, n: u64, rho0: f64) -> f64 {
        if self.a == 1.0 {
            return rho0 + n as f64 * self.b;
        }
        let fixed = self.b / (1.0 - self.a);
        fixed + self.a.powi(n as i32) * (rho0 - fixed)
    }

    /// `Σ_{j<n} ρ_j`, the values at the start of the first `n` ticks (a geometric sum).
    fn sum_of_starts(self, n: u64, rho0: f64) -> f64 {
        if self.a == 1.0 {
            return n as f64 * rho0 + self.b * (n * n.saturating_sub(1) / 2) as f64;
        }
        let fixed = self.b / (1.0 - self.a);
        n as f64 * fixed + (rho0 - fixed) * (1.0 - self.a.powi(n as i32)) / (1.0 - self.a)
    }
}

/// The ligand's per-tick decay factor on a voxel without diffusion: the explicit solver's
/// `(1 − kΔt_s)^m` over its `m` substeps of `Δt_s`.
fn decay_factor(sim: &Simulation, c: usize, dt: f32) -> f64 {
    let l = sim.ligands();
    let p: &ChannelParams = &l.params[c];
    let plan = explant_field::substeps(&l.field.grid, &l.params, dt).unwrap();
    (1.0 - f64::from(p.decay * plan.dt)).powi(plan.count as i32)
}

/// Uptake only, in a still field (no diffusion, no decay) of 4.0: one cell with `R = 1`,
/// one with `R = 2.5` and, in a third voxel, two cells with `R = 1` and `R = 0.5`.
const UPTAKE: f64 = 0.8;
const RHO0: f64 = 4.0;

fn uptake_cells() -> Vec<Placed> {
    vec![
        Placed::living([2, 2], 0.0, 0.0, 1.0),
        Placed::living([5, 2], 0.0, 0.0, 2.5),
        Placed::living([7, 7], -4.0, 0.0, 1.0),
        Placed::living([7, 7], 4.0, 0.0, 0.5),
    ]
}

/// Run the uptake scene for `minutes` at step `dt`; returns the final grid of the ligand.
fn uptake_run(dt: f64, minutes: f64) -> (Vec<f64>, u64) {
    let ticks = (minutes / dt).round() as u64;
    let l = ligand(
        "L",
        "G",
        0.0,
        0.0,
        &format!("uptake_rate = {UPTAKE:?}\ninitial = {{ kind = \"uniform\", value = {RHO0:?} }}"),
    );
    let s = scene(dt, ticks, &l, "");
    let cells = uptake_cells();
    let mut sim = start(&s, &cells);
    run(&mut sim, &cells, ticks);
    ((0..NX * NX).map(|v| at(&sim, 0, v)).collect(), ticks)
}

/// Per voxel, the `x_i = Δt (V_c/V_v) U_i` of the cells in it.
fn uptake_x(dt: f64) -> Vec<Vec<f64>> {
    let mut x = vec![Vec::new(); NX * NX];
    for c in uptake_cells() {
        x[c.index()].push(dt * volume_ratio() * UPTAKE * f64::from(c.r));
    }
    x
}

#[test]
fn uptake_in_a_still_field_decays_as_the_implicit_per_cell_update_gives() {
    // Closed form: each tick each cell divides its voxel's ρ by (1 + x_i), so after n ticks
    // ρ_n = ρ_0 Π_i (1 + x_i)^(−n), x_i = Δt (V_c/V_v) U_i, U_i = uptake_rate × R_i.
    // Fails for: the explicit update ρ(1 − x) (≈ 8 % lower after 120 ticks), V_c/V_v left
    // out (x = Δt U = 0.4), the two cells of voxel (7, 7) merged into one implicit step
    // ρ/(1 + x_1 + x_2) (≈ 4 % higher), uptake deposited in another voxel (the empty
    // voxels must keep 4.0 exactly), the exact exponential (≈ 4 % lower).
    let dt = 0.5;
    let (grid, n) = uptake_run(dt, 60.0);
    let x = uptake_x(dt);
    for (v, xs) in x.iter().enumerate() {
        if xs.is_empty() {
            assert_eq!(grid[v], RHO0, "voxel {v} has no cell but changed");
            continue;
        }
        let expected = RHO0 * xs.iter().map(|x| (1.0 + x).powi(-(n as i32))).product::<f64>();
        let err = (grid[v] - expected).abs() / expected;
        assert!(err < budget(n), "voxel {v}: ρ = {} but the implicit closed form gives {expected}", grid[v]);
        // Guard the guard: the explicit update and the merged step are far outside.
        let explicit = RHO0 * xs.iter().map(|x| (1.0 - x).powi(n as i32)).product::<f64>();
        assert!((explicit - expected).abs() / expected > 100.0 * budget(n));
        if xs.len() == 2 {
            let merged = RHO0 * (1.0 + xs[0] + xs[1]).powi(-(n as i32));
            assert!((merged - expected).abs() / expected > 100.0 * budget(n));
        }
    }
}

#[test]
fn uptake_approaches_the_continuous_exponential_at_first_order_in_the_step() {
    // The continuous limit is ρ_0 exp(−k t) with k = Σ_i (V_c/V_v) U_i. Since
    // x − x²/2 ≤ ln(1 + x) ≤ x − x²/2 + x³/3, the implicit scheme's ρ_n = ρ_0 Π(1+x_i)^(−n)
    // lies above the exponential by ln(ρ_n / ρ_0 e^(−kt)) = n Σ_i (x_i − ln(1 + x_i)) in
    // [n Σ (x_i²/2 − x_i³/3), n Σ x_i²/2] = t Δt Σ k_i²/2 (1 + O(Δt)): first order in Δt, so
    // halving Δt halves it. Fails for: an explicit update (it lies below the exponential),
    // the exact exponential (no error at all), a scheme of another order (the ratio).
    let t = 60.0;
    let mut log_errors = Vec::new();
    for dt in [0.5, 0.25] {
        let (grid, n) = uptake_run(dt, t);
        let x = uptake_x(dt);
        let mut worst = 0.0f64;
        for (v, xs) in x.iter().enumerate().filter(|(_, xs)| !xs.is_empty()) {
            let k: f64 = xs.iter().sum::<f64>() / dt;
            let log_err = (grid[v] / (RHO0 * (-k * t).exp())).ln();
            let low: f64 = n as f64 * xs.iter().map(|x| x * x / 2.0 - x * x * x / 3.0).sum::<f64>();
            let high: f64 = n as f64 * xs.iter().map(|x| x * x / 2.0).sum::<f64>();
            let slack = budget(n);
            assert!(
                log_err > low - slack && log_err < high + slack,
                "Δt = {dt}, voxel {v}: ln(ρ/exponential) = {log_err}, first-order bound [{low}, {high}]"
            );
            worst = worst.max(log_err);
        }
        log_errors.push(worst);
    }
    // Order 1 less the O(Δt) correction above (−2Δt k/3 relative: ≈ 0.97 here).
    let order = (log_errors[0] / log_errors[1]).log2();
    assert!((0.9..1.1).contains(&order), "error {log_errors:?}: order {order}, expected 1");
}

#[test]
fn secretion_reaches_saturation_at_the_analytic_rate_and_export_adds_a_fixed_amount_per_tick() {
    // Ligand S: secretion toward ρ* = 3 only (no uptake: R = 0, no decay, no diffusion).
    // Each tick ρ − ρ* is multiplied by 1/(1 + x), x = Δt (V_c/V_v) S, S = rate × G, so
    // ρ_n = ρ* + (ρ_0 − ρ*)(1 + x)^(−n): the fixed point ρ*, approached from below (ρ_0 =
    // 0.5) and from above (ρ_0 = 5 where x ≥ 100 µm), never crossed, at the analytic rate.
    // Ligand X: export only, secreted by gene `E` (set equal to G), E_i = 40 × E: each tick
    // adds exactly Δt E_i / V_v per cell, ρ_n = ρ_0 + n Δt Σ E_i / V_v whatever ρ is.
    // Fails for: the explicit update ρ + x(ρ* − ρ) (rate 1 − x; with G = 60, x ≈ 1.2, it
    // overshoots ρ* every tick), V_c/V_v left out or applied to export, a second cell of a
    // voxel using the concentration before the first cell's step, export scaled by V_c/V_v.
    let (dt, n, sat, rate, export) = (0.5, 120u64, 3.0, 0.6, 40.0);
    let initial = "initial = { kind = \"region\", shape = { kind = \"box\", min = [100.0, 0.0], max = [200.0, 200.0] }, \
                   value = 5.0, background = 0.5 }";
    let ligands = ligand("S", "G", 0.0, 0.0, &format!("secretion_rate = {rate:?}\nsaturation = {sat:?}\n{initial}"))
        + &ligand(
            "X",
            "E",
            0.0,
            0.0,
            &format!("export_rate = {export:?}\ninitial = {{ kind = \"uniform\", value = 0.5 }}"),
        );
    let s = scene(dt, n, &ligands, "");
    let cells = vec![
        Placed::living([2, 2], 0.0, 1.0, 0.0),
        Placed::living([3, 6], -4.0, 0.5, 0.0),
        Placed::living([3, 6], 4.0, 1.0, 0.0),
        Placed::living([7, 2], 0.0, 1.5, 0.0),
        Placed::living([8, 8], 0.0, 60.0, 0.0),
    ];
    let mut sim = start(&s, &cells);
    run(&mut sim, &cells, n);
    for v in 0..NX * NX {
        let here: Vec<&Placed> = cells.iter().filter(|c| c.index() == v).collect();
        let rho0 = if v % NX >= 5 { 5.0 } else { 0.5 };
        // Secretion: Π over the voxel's cells of 1/(1 + x_i).
        let factor: f64 =
            here.iter().map(|c| 1.0 + dt * volume_ratio() * rate * f64::from(c.g)).product::<f64>().recip();
        let expected = sat + (rho0 - sat) * factor.powi(n as i32);
        let rho = at(&sim, 0, v);
        assert!((rho - expected).abs() < budget(n) * 5.0, "S, voxel {v}: ρ = {rho}, the closed form gives {expected}");
        if !here.is_empty() {
            // Never crossed (to rounding at the fixed point itself).
            let beyond = (sat - rho) * (rho0 - sat).signum();
            assert!(beyond < 8.0 * f64::from(f32::EPSILON) * sat, "S, voxel {v}: crossed saturation: {rho}");
        }
        // Export: exactly Δt E / V_v per tick.
        let added: f64 = here.iter().map(|c| dt * export * f64::from(c.g) / DX.powi(3)).sum();
        let expected = 0.5 + n as f64 * added;
        let rho = at(&sim, 1, v);
        assert!((rho - expected).abs() < budget(n) * expected, "X, voxel {v}: ρ = {rho}, expected {expected}");
    }
    // The voxel with G = 60 is at the fixed point to float precision ((1 + 1.18)^(−120) ≈ 0).
    assert!((at(&sim, 0, 8 * NX + 8) - sat).abs() < 8.0 * f64::from(f32::EPSILON) * sat);
    // Guard the guard: after 120 ticks the explicit rate is well outside the tolerance
    // where the approach is still under way (voxel (2, 2), x ≈ 0.0196).
    let x = dt * volume_ratio() * rate;
    let (implicit, explicit) = ((1.0 + x).powi(-(n as i32)), (1.0 - x).powi(n as i32));
    assert!(2.5 * (implicit - explicit).abs() > 100.0 * budget(n));
}

/// The ledger scene's ligand: secretion toward ρ* = 3 and export from `G`, uptake through
/// `R`, decay 0.01/min, no diffusion, from 2.0 everywhere.
const LEDGER: (f64, f64, f64, f64, f64) = (0.6, 3.0, 0.8, 20.0, 0.01);

#[test]
fn the_ledger_equals_the_sum_of_per_cell_exchanges_and_not_the_grids_change() {
    // Each voxel's tick is its cells' implicit maps in row order, then decay by d (module
    // docs): ρ ↦ d(Aρ + B). What its cells exchange in a tick is V_v((A − 1)ρ_j + B) for the
    // value ρ_j at the start of that tick, so over n ticks the voxel contributes
    // V_v((A − 1) Σ_{j<n} ρ_j + nB), a geometric sum. The ledger must be the sum of these.
    // A doomed cell (apoptotic from the first fate step on) exchanges in tick 0 only.
    // With decay on, the grid's change differs from the exchange by what decayed, so a
    // ledger that copied the grid's change fails, as do: exchanges counted twice or scaled
    // by V_c instead of V_v, a dying cell that still exchanges, export left out of the
    // ledger, the cells of a voxel visited in reverse row order or all starting from the
    // tick's value instead of one after the other.
    let (rate, sat, uptake, export, decay) = LEDGER;
    let (dt, n, rho0) = (0.5, 120u64, 2.0);
    let coupling = format!(
        "secretion_rate = {rate:?}\nsaturation = {sat:?}\nuptake_rate = {uptake:?}\nexport_rate = {export:?}\n\
         initial = {{ kind = \"uniform\", value = {rho0:?} }}"
    );
    let s = scene(dt, n, &ligand("L", "G", 0.0, decay, &coupling), "");
    let doomed = Placed { voxel: [8, 1], offset: 0.0, ty: 1, g: 1.0, r: 2.0 };
    let cells = vec![
        Placed::living([1, 1], 0.0, 1.0, 0.0),  // secretes and exports
        Placed::living([4, 1], 0.0, 0.0, 1.5),  // takes up
        Placed::living([6, 6], -4.0, 0.5, 1.0), // both, sharing a voxel with an uptaker
        Placed::living([6, 6], 4.0, 0.0, 2.0),
        Placed::living([2, 8], -4.0, 2.0, 0.0), // a secretor and an uptaker together
        Placed::living([2, 8], 4.0, 0.0, 3.0),
        doomed,
    ];
    let mut sim = start(&s, &cells);
    let row = rows(&mut sim);
    let d = decay_factor(&sim, 0, dt as f32);
    assert!(d < 1.0);
    run(&mut sim, &cells, n);
    assert_eq!(sim.cells().phases[6], Phase::Apoptotic);

    let vv = DX.powi(3);
    let mut ledger = 0.0;
    let mut gross = 0.0;
    for v in 0..NX * NX {
        let mut here: Vec<usize> = (0..cells.len()).filter(|&i| cells[i].index() == v).collect();
        here.sort_by_key(|&i| row[i]);
        let step = |i: usize| {
            let c = cells[i];
            let (g, r) = (f64::from(c.g), f64::from(c.r));
            Affine::cell(dt, rate * g, sat, uptake * r, export * g)
        };
        let living = here.iter().filter(|&&i| cells[i].ty == 0).fold(Affine::IDENTITY, |m, &i| m.then(step(i)));
        let all = here.iter().fold(Affine::IDENTITY, |m, &i| m.then(step(i)));
        let tick = |m: Affine| Affine { a: d * m.a, b: d * m.b };
        // Tick 0 with every cell, then n − 1 ticks with the living ones.
        let x0 = vv * ((all.a - 1.0) * rho0 + all.b);
        let rho1 = tick(all).after(1, rho0);
        let rest = vv * ((living.a - 1.0) * tick(living).sum_of_starts(n - 1, rho1) + (n - 1) as f64 * living.b);
        ledger += x0 + rest;
        gross += x0.abs() + rest.abs();
        let expected = tick(living).after(n - 1, rho1);
        let got = at(&sim, 0, v);
        assert!((got - expected).abs() < budget(n) * sat, "voxel {v}: ρ = {got}, closed form {expected}");
    }
    let got = sim.ligands().exchanged[0];
    let tol = budget(n) * gross;
    assert!((got - ledger).abs() < tol, "ledger {got}, sum of per-cell exchanges {ledger} (± {tol})");
    // Guard the guard: the grid's own change is far from the exchange (what decayed).
    let grid_change = sim.ligands().field.total(0) - rho0 * vv * (NX * NX) as f64;
    assert!((grid_change - ledger).abs() > 1000.0 * tol, "grid change {grid_change} ≈ ledger {ledger}");
}

#[test]
fn with_diffusion_and_decay_the_grid_balances_injections_exchanges_and_decay() {
    // Zero-flux walls: each explicit substep maps the grid total T to (1 − kΔt_s)T exactly
    // (the Laplacian sums to zero), so a tick's decay is d = (1 − kΔt_s)^m of what stood
    // after secretion, and what decayed in a tick is (1/d − 1) T_after: accounted from the
    // decay rate, not from the ledger. Then T_N + decayed = T_0 + injected + exchanged.
    // Ligand A couples every way (its exchanges follow the diffusing field: only the
    // balance is known); ligand X is only exported, so its ledger is n Δt Σ E_i and its
    // total the closed form T_n = dⁿT_0 + X_tick d(1 − dⁿ)/(1 − d), independently of the grid.
    // Fails for: diffusion that loses or makes mass, a bolus or source not (or twice)
    // logged, decay not at its rate, a ledger that copies the grid's change (ligand X).
    let (dt, n) = (0.5, 80u64);
    let a = ligand(
        "A",
        "G",
        100.0,
        0.02,
        "secretion_rate = 0.6\nsaturation = 3.0\nuptake_rate = 0.8\nexport_rate = 20.0\n\
         initial = { kind = \"uniform\", value = 1.0 }",
    );
    let x = ligand("X", "E", 100.0, 0.02, "export_rate = 30.0");
    let perturbations = "[[perturbations]]\nkind = \"bolus\"\nligand = \"A\"\nvalue = 2.0\nstart = 5.0\n\
                         region = { kind = \"box\", min = [0.0, 0.0], max = [100.0, 100.0] }\n\
                         [[perturbations]]\nkind = \"source\"\nligand = \"A\"\nrate = 0.05\nstart = 10.0\nstop = 20.0\n";
    let s = scene(dt, n, &(a + &x), perturbations);
    let cells: Vec<Placed> = (0..30)
        .map(|k| Placed::living([k % NX, (3 * k + k / NX) % NX], 0.0, (k % 4) as f32 * 0.5, (k % 3) as f32))
        .collect();
    let mut sim = start(&s, &cells);
    let d: Vec<f64> = (0..2).map(|c| decay_factor(&sim, c, dt as f32)).collect();
    let t0: Vec<f64> = (0..2).map(|c| sim.ligands().field.total(c)).collect();
    let mut decayed = 0.0;
    for _ in 0..n {
        sim.step().unwrap();
        decayed += (1.0 / d[0] - 1.0) * sim.ligands().field.total(0);
    }
    let l = sim.ligands();
    let injected = sim.world.resource::<PerturbationLog>().injected[0];
    assert!(injected > 0.0 && decayed > 0.1 * t0[0] && l.exchanged[0].abs() > 0.01 * t0[0]);
    let (lhs, rhs) = (l.field.total(0) + decayed, t0[0] + injected + l.exchanged[0]);
    assert!(((lhs - rhs) / rhs).abs() < 2e-6, "A: grid + decayed {lhs} vs initial + injected + exchanged {rhs}");

    let per_tick: f64 = cells.iter().map(|c| dt * 30.0 * f64::from(c.g)).sum();
    let exported = n as f64 * per_tick;
    assert!(((l.exchanged[1] - exported) / exported).abs() < 1e-6, "X: ledger {} vs {exported}", l.exchanged[1]);
    let expected = d[1].powi(n as i32) * t0[1] + per_tick * d[1] * (1.0 - d[1].powi(n as i32)) / (1.0 - d[1]);
    let total = l.field.total(1);
    assert!(((total - expected) / expected).abs() < 1e-6, "X: grid holds {total}, closed form {expected}");
    assert!((total - exported).abs() > 0.1 * exported, "decay too weak to tell the grid's change from the ledger");
}

#[test]
fn adi_takes_the_cells_exports_into_its_step_and_converges_at_second_order() {
    // Ligand X is only exported (a fixed amount per tick, so the exchange itself has no
    // splitting error), diffuses with a = DΔt/Δx² = 2.5 at the coarsest tick and decays.
    // The secrete stage lists each cell's amount and the ADI step puts it into its
    // explicit increment: the field then converges at second order in the tick. Fails
    // for: amounts not listed (added to the field before a Crank–Nicolson step, which
    // then neither converges at order 2 nor beats LOD), amounts listed twice or at the
    // wrong voxel (the mass and the order go), a first-order scheme.
    let x = ligand("X", "E", 2000.0, 0.05, "export_rate = 30.0");
    let cells: Vec<Placed> = (0..30)
        .map(|k| Placed::living([k % NX, (3 * k + k / NX) % NX], 0.0, 0.5 + (k % 4) as f32 * 0.5, 0.0))
        .collect();
    let minutes = 10.0;
    let field = |scheme: Scheme, dt: f64| {
        let n = (minutes / dt).round() as u64;
        let s = scene(dt, n, &x, "");
        let mut sim = start_with(&s, &cells, scheme);
        run(&mut sim, &cells, n);
        sim.ligands().field.data.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>()
    };
    let reference = field(Scheme::Adi, 0.5 / 16.0);
    let diff = |f: &[f64]| {
        let num: f64 = f.iter().zip(&reference).map(|(a, b)| (a - b).powi(2)).sum();
        (num / reference.iter().map(|b| b * b).sum::<f64>()).sqrt()
    };
    let adi: Vec<f64> = [0.5, 0.25, 0.125].iter().map(|&dt| diff(&field(Scheme::Adi, dt))).collect();
    let lod = diff(&field(Scheme::Implicit, 0.5));
    let order = (adi[1] / adi[2]).log2();
    eprintln!(
        "exports through ADI, 2D, 10 min: errors {adi:?} at dt 0.5/0.25/0.125 (order {order:.2}); LOD at 0.5: {lod:.2e}"
    );
    assert!(order > 1.8, "ADI with the engine's sources: order {order:.2} ({adi:?})");
    assert!(adi[0] < lod / 5.0, "ADI {} vs LOD {lod}", adi[0]);
    // Mass: with decay, what the grid holds is what was exported less what decayed, the
    // same for every scheme to second order; the coarse ADI run is within 0.1 % of the
    // reference's total.
    let total = |f: &[f64]| f.iter().sum::<f64>();
    let coarse = field(Scheme::Adi, 0.5);
    assert!(((total(&coarse) - total(&reference)) / total(&reference)).abs() < 1e-3);
}
