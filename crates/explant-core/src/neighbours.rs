//! Fixed-radius neighbour search: every other cell within a radius of each cell, as
//! CSR lists in batch order.
//!
//! Two methods give identical output:
//!
//! * [`CellList`] — a uniform grid of cubic bins with edge at least the radius over
//!   the cells' bounding box; cells are counting-sorted by bin, so the layout is
//!   spatially sorted and a query scans 3 (2D) or 9 (3D) contiguous runs of the
//!   sorted array. Linear-time build, no tree. This is the classic "linked cell"
//!   method of molecular dynamics (Allen & Tildesley, *Computer Simulation of
//!   Liquids*, §5.3), here in the array form of Green, "Particle Simulation using
//!   CUDA" (NVIDIA, 2010). It is the hot path of the `sense` stage.
//! * [`neighbours_rstar`] — one `rstar` R-tree radius query per cell, kept as the
//!   reference and for comparison benchmarks (`examples/neighbour_speed.rs`); an
//!   R-tree is the better structure for nearest-neighbour queries.
//!
//! **Inclusion rule** (shared by both, bit for bit): cell `j ≠ i` is a neighbour of
//! `i` when `d² ≤ r²` in `f32`, with `r² = radius * radius` and `d²` summed as
//! `(dx² + dy²) + dz²` — exactly what `rstar::RTree::locate_within_distance` does
//! with the squared radius, so cells at exactly the radius and coincident cells are
//! included. 2D tissues are positions with `z = 0`; the bounding box is then flat and
//! the grid has a single layer. Cells with non-finite coordinates never pass the
//! test and have no neighbours.
//!
//! Each list is in ascending batch index. The lists are computed in parallel with
//! `rayon` over fixed-size chunks, and sorted, so the output does not depend on the
//! number of threads.

use glam::Vec3;
use rayon::prelude::*;

use crate::CoreError;
use rstar::{RTree, primitives::GeomWithData};

/// Cells per parallel work item. A constant, so the work split never depends on
/// the thread count.
const CHUNK: usize = 512;

/// Neighbour lists in CSR form: the neighbours of cell `i` are
/// `neighbours[offsets[i]..offsets[i + 1]]`, batch indices in ascending order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Csr {
    /// `N + 1` offsets into `neighbours`, starting at 0.
    pub offsets: Vec<u32>,
    /// The concatenated lists.
    pub neighbours: Vec<u32>,
}

impl Csr {
    /// Neighbours of cell `i`.
    pub fn list(&self, i: usize) -> &[u32] {
        &self.neighbours[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Number of cells.
    pub fn cells(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
}

/// Squared distance, summed in the same order as `rstar`'s `PointExt::length_2`
/// (`fold(0, |acc, c| c * c + acc)`), so both methods agree at the boundary.
#[inline(always)]
fn distance_2(a: Vec3, b: Vec3) -> f32 {
    let d = a - b;
    d.z * d.z + (d.y * d.y + (d.x * d.x + 0.0))
}

/// A uniform grid of bins over the cells' bounding box, with the cells sorted by bin.
///
/// Build with [`CellList::new`] (O(N) counting sort), then
/// [`CellList::neighbours_into`] for every cell's neighbours within the radius.
#[derive(Debug, Clone)]
pub struct CellList {
    radius: f32,
    /// Bin edge, ≥ radius (slightly more, to absorb rounding), µm.
    edge: f64,
    /// Bounding-box minimum corner of the finite positions.
    min: [f64; 3],
    /// Bins along x, y, z.
    dims: [usize; 3],
    /// `bins + 1` offsets into the sorted arrays: bin `b` holds slots
    /// `start[b]..start[b + 1]`.
    start: Vec<u32>,
    /// Batch index of each sorted slot (ascending within a bin).
    order: Vec<u32>,
    /// Position of each sorted slot.
    sorted: Vec<Vec3>,
    /// Bin of each sorted slot.
    bin: Vec<u32>,
    /// Sorted slot of each batch index (the inverse of `order`).
    slot: Vec<u32>,
}

impl CellList {
    /// Bin the cells for queries within `radius`, µm (the test uses `radius²`, as
    /// `rstar` does, so a negative radius acts as its magnitude).
    ///
    /// The number of bins is capped at about twice the number of cells (the bins
    /// grow when the radius is small against the spread of the cells), so memory
    /// stays O(N) whatever the radius.
    pub fn new(positions: &[Vec3], radius: f32) -> Self {
        let n = positions.len();
        assert!(n < u32::MAX as usize, "a cell list holds fewer than 2^32 cells");
        // The finite cells' bounding box (min and max are exact, so the parallel
        // reduction gives the same box on any thread count).
        let (lo, hi) = positions
            .par_iter()
            .filter(|p| p.is_finite())
            .fold(|| (Vec3::INFINITY, Vec3::NEG_INFINITY), |(lo, hi), &p| (lo.min(p), hi.max(p)))
            .reduce(|| (Vec3::INFINITY, Vec3::NEG_INFINITY), |a, b| (a.0.min(b.0), a.1.max(b.1)));
        let (mut lo, mut hi) = (lo.as_dvec3().to_array(), hi.as_dvec3().to_array());
        if lo[0] > hi[0] {
            (lo, hi) = ([0.0; 3], [0.0; 3]);
        }
        let extent = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
        let widest = extent.iter().copied().fold(0.0, f64::max);
        // The f32 distance test may accept a pair a few ulps beyond the radius; a bin
        // edge a little larger than the radius keeps every accepted pair within one bin.
        let mut edge = (f64::from(radius.abs()) * (1.0 + 1e-5)).max(widest * 1e-7).max(f64::MIN_POSITIVE);
        let max_bins = (2 * n + 8) as f64;
        let count = |edge: f64| extent.map(|e| (e / edge).floor() + 1.0);
        while count(edge).iter().product::<f64>() > max_bins {
            edge *= 2.0;
        }
        let dims = count(edge).map(|c| c as usize);
        let bins = dims[0] * dims[1] * dims[2];

        let key_of = |p: Vec3| -> u32 {
            let mut k = [0usize; 3];
            for d in 0..3 {
                let x = (f64::from(p[d]) - lo[d]) / edge;
                // Non-finite or out-of-box coordinates clamp into the grid (NaN → 0).
                k[d] = (x.max(0.0) as usize).min(dims[d] - 1);
            }
            ((k[2] * dims[1] + k[1]) * dims[0] + k[0]) as u32
        };
        let keys: Vec<u32> = positions.par_iter().map(|&p| key_of(p)).collect();

        // Counting sort by bin, stable, so batch indices ascend within each bin.
        let mut start = vec![0u32; bins + 1];
        for &k in &keys {
            start[k as usize + 1] += 1;
        }
        for b in 0..bins {
            start[b + 1] += start[b];
        }
        let mut next = start.clone();
        let mut order = vec![0u32; n];
        let mut slot = vec![0u32; n];
        for (i, &k) in keys.iter().enumerate() {
            let s = &mut next[k as usize];
            order[*s as usize] = i as u32;
            slot[i] = *s;
            *s += 1;
        }
        let sorted = order.par_iter().map(|&i| positions[i as usize]).collect();
        let bin = order.par_iter().map(|&i| keys[i as usize]).collect();
        Self { radius, edge, min: lo, dims, start, order, sorted, bin, slot }
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there are no cells.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Bins along x, y and z (z is 1 for a flat, 2D tissue).
    pub fn bins(&self) -> [usize; 3] {
        self.dims
    }

    /// Bin edge, µm (≥ the radius).
    pub fn edge(&self) -> f64 {
        self.edge
    }

    /// Minimum corner of the grid (the finite cells' bounding box), µm.
    pub fn origin(&self) -> [f64; 3] {
        self.min
    }

    /// Batch indices in spatially sorted (bin) order.
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// Neighbours (sorted ascending) of the cell in sorted slot `s`, appended to `out`.
    fn query_slot(&self, s: usize, r2: f32, out: &mut Vec<u32>) {
        let [nx, ny, nz] = self.dims;
        let b = self.bin[s] as usize;
        let (bx, by, bz) = (b % nx, (b / nx) % ny, b / (nx * ny));
        let p = self.sorted[s];
        // The contiguous runs of slots to scan: one per row of bins (3 in 2D, 9 in 3D).
        let mut runs = [(0usize, 0usize); 9];
        let (mut count, mut candidates) = (0, 0);
        let (x0, x1) = (bx.saturating_sub(1), (bx + 1).min(nx - 1));
        for z in bz.saturating_sub(1)..=(bz + 1).min(nz - 1) {
            for y in by.saturating_sub(1)..=(by + 1).min(ny - 1) {
                let row = (z * ny + y) * nx;
                let run = (self.start[row + x0] as usize, self.start[row + x1 + 1] as usize);
                candidates += run.1 - run.0;
                runs[count] = run;
                count += 1;
            }
        }
        // Branch-free filter: write every candidate, keep it when it passes.
        let first = out.len();
        out.resize(first + candidates, 0);
        let mut len = first;
        for &(a, e) in &runs[..count] {
            for (t, (&q, &j)) in (a..e).zip(self.sorted[a..e].iter().zip(&self.order[a..e])) {
                out[len] = j;
                len += usize::from((distance_2(q, p) <= r2) & (t != s));
            }
        }
        out.truncate(len);
        // Rows kept in bin order (see `life::sort_rows`) usually come out sorted already.
        if !out[first..].is_sorted() {
            out[first..].sort_unstable();
        }
    }

    /// Every cell's neighbours within the radius, written as CSR into `offsets`
    /// (`N + 1` entries) and `neighbours` (both cleared first, capacity reused).
    ///
    /// # Errors
    ///
    /// [`CoreError::TooManyPairs`] when there are 2^32 − 1 pairs or more.
    ///
    /// Cells are queried in batch order, one local list per fixed chunk of rows, and
    /// the chunks are then joined in parallel. Rows kept in bin order
    /// ([`crate::sort_rows`]) make neighbouring queries touch the same bins.
    pub fn neighbours_into(&self, offsets: &mut Vec<u32>, neighbours: &mut Vec<u32>) -> Result<(), CoreError> {
        let n = self.len();
        let r2 = self.radius * self.radius;
        let chunks: Vec<(Vec<u32>, Vec<u32>)> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let cells = c * CHUNK..((c + 1) * CHUNK).min(n);
                let mut ends = Vec::with_capacity(cells.len());
                let mut flat = Vec::with_capacity(cells.len() * 16);
                for i in cells {
                    self.query_slot(self.slot[i] as usize, r2, &mut flat);
                    ends.push(flat.len() as u32);
                }
                (ends, flat)
            })
            .collect();
        join_chunks(&chunks, n, self.radius, offsets, neighbours)
    }

    /// Every cell's neighbours within the radius, as a new [`Csr`].
    ///
    /// # Errors
    ///
    /// As [`CellList::neighbours_into`].
    pub fn neighbours(&self) -> Result<Csr, CoreError> {
        let mut csr = Csr::default();
        self.neighbours_into(&mut csr.offsets, &mut csr.neighbours)?;
        Ok(csr)
    }
}

/// The skin of [`SkinLists`], as a fraction of the radius: lists are built out to
/// `radius × (1 + SKIN)`.
pub const SKIN: f32 = 0.1;

/// Neighbour lists kept from call to call (Verlet lists, each cell with its own
/// reference position): built by cell list out to `radius + skin` around the cells'
/// reference positions, and each call only filters them with the same test
/// ([`distance_2`] `≤ radius²`). The output is exactly [`neighbours_cell_list`]'s, lists
/// in ascending order, on any thread count.
///
/// Why it holds: the wide lists hold every pair whose reference positions are within
/// `radius + skin`, and no cell is further than `δ`, a little under half the skin, from
/// its reference position. A pair within `radius` now had reference positions within
/// `radius + 2δ`, so it is in the wide lists.
///
/// Between calls cells move, divide, die and swap rows. A cell that moved further than
/// `δ`, and a new cell, is *refreshed*: its reference position becomes where it is, its
/// wide list is found afresh against every other cell's reference position, and it is
/// added to (or dropped from) the lists of the cells it now is (or no longer is) within
/// `radius + skin` of. Rows whose cell died or moved to another row are renumbered in
/// the lists that hold them. So a step with a few divisions and deaths, as in a growing
/// tumour, costs a few cells' searches instead of every cell's. The lists are built
/// anew when the radius changed, when more than a small fraction of the rows changed (a
/// re-sort of the rows; a large tissue dividing thousands of cells a step) or so many
/// cells moved that refreshing would rewrite a quarter of the rows (then, for a few
/// calls, every cell is searched within the radius alone), when a position is not
/// finite, or when the skin is too thin for the rounding of the coordinates.
#[derive(Debug, Clone, Default)]
pub struct SkinLists {
    radius: f32,
    /// Ids, row by row, at the last call.
    ids: Vec<u64>,
    /// Each row's reference position.
    at: Vec<Vec3>,
    /// Each row's neighbours within `radius × (1 + SKIN)` by reference position;
    /// symmetric (`j` lists `i` when `i` lists `j`).
    wide: Csr,
    /// The wide lists before the last refresh, kept for their memory.
    spare: Csr,
    /// Each chunk's ends and lists in the last filter, kept for their memory.
    chunks: Vec<(Vec<u32>, Vec<u32>)>,
    /// The largest coordinate (in magnitude) of the reference positions.
    scale: f32,
    /// Whether the wide lists are valid for `radius` and `ids` (and the skin's margin
    /// is far above the rounding of the positions).
    reusable: bool,
    /// Calls left in which to search every cell directly while cells change, and the
    /// length of the last such stretch (see [`CROWDED_CALLS`]).
    crowded: u32,
    /// See `crowded`.
    backoff: u32,
    /// Calls that built the lists anew.
    pub builds: u64,
    /// Calls that reused the wide lists unchanged.
    pub reuses: u64,
    /// Calls that kept the wide lists by refreshing some cells (see above).
    pub refreshes: u64,
}

/// Rows that may change between two calls (ids differing row by row, or rows added or
/// removed) before [`SkinLists`] searches every cell anew: a small fraction of the cells
/// (with more, as in a tissue of 10⁶ cells dividing thousands a step, the refreshed
/// cells' partners are most of the rows, and even building wide lists to try does not
/// pay).
const CHANGED_ROWS_DIVISOR: usize = 256;

/// The rows a refresh may rewrite (refreshed, dead and renumbered cells times their
/// partners), as a fraction of the cells, before [`SkinLists`] gives up keeping lists:
/// past it, a refresh costs more than a search of every cell (a tissue of 10⁶ cells with
/// thousands of divisions a step).
const TOUCHED_DIVISOR: usize = 4;

/// After a refresh was given up, [`SkinLists`] searches every cell within the radius
/// alone for a number of calls while the cells keep changing before it tries keeping
/// lists again: 1 after the first such call, doubling while refreshes keep being given
/// up, at most this many (a tissue that divides thousands of cells a step probes
/// rarely; one with an occasional burst of movement loses a call or two).
const CROWDED_CALLS: u32 = 64;

/// A row with no counterpart: a dead cell's old row, a new cell's new row.
const NONE: u32 = u32::MAX;

impl SkinLists {
    /// Every cell's neighbours within `radius` (cells `ids` at `positions`, row by row),
    /// written as CSR into `offsets` and `neighbours` (both cleared first).
    ///
    /// # Errors
    ///
    /// As [`CellList::neighbours_into`] (the wide lists can overflow first).
    pub fn neighbours_into(
        &mut self,
        ids: &[u64],
        positions: &[Vec3],
        radius: f32,
        offsets: &mut Vec<u32>,
        neighbours: &mut Vec<u32>,
    ) -> Result<(), CoreError> {
        if positions.len() != ids.len() {
            // Not a row per cell: no lists to keep.
            self.reusable = false;
            self.ids.clear();
            self.builds += 1;
            return CellList::new(positions, radius).neighbours_into(offsets, neighbours);
        }
        // Rows whose cell changed since the last call (none on the first call).
        let changed = (!self.ids.is_empty()).then(|| changed_rows(&self.ids, ids));
        let kept = match &changed {
            Some(changed) if self.reusable && self.radius.to_bits() == radius.to_bits() => {
                self.keep(ids, changed, positions, radius)?
            }
            _ => false,
        };
        if !kept {
            let (n0, n1) = (self.ids.len(), ids.len());
            let changes = changed.map(|c| c.len() + n0.max(n1) - n0.min(n1));
            let many = changes.is_none_or(|c| c > changes_allowed(self.ids.len(), ids.len()));
            if many || (self.crowded > 0 && changes != Some(0)) {
                // Most rows changed (the first call, a re-sort of the rows), or refreshing
                // was given up lately and the cells still change: wide lists would likely
                // not be kept; the lists for `radius` alone are cheaper.
                self.crowded = self.crowded.saturating_sub(1);
                self.reusable = false;
                self.ids.clear();
                self.ids.extend_from_slice(ids);
                self.builds += 1;
                return CellList::new(positions, radius).neighbours_into(offsets, neighbours);
            }
            self.build(ids, positions, radius)?;
        }
        self.filter(positions, radius, offsets, neighbours)
    }

    /// Build the wide lists anew for the cells `ids` at `positions`.
    fn build(&mut self, ids: &[u64], positions: &[Vec3], radius: f32) -> Result<(), CoreError> {
        let wide = radius.abs() * (1.0 + SKIN);
        // Forget the old lists first, so a failed build leaves nothing to reuse.
        self.reusable = false;
        CellList::new(positions, wide).neighbours_into(&mut self.wide.offsets, &mut self.wide.neighbours)?;
        self.radius = radius;
        self.at.clear();
        self.at.extend_from_slice(positions);
        self.ids.clear();
        self.ids.extend_from_slice(ids);
        let (finite, scale) = positions
            .par_iter()
            .with_min_len(CHUNK)
            .map(|p| (p.is_finite(), p.abs().max_element()))
            .reduce(|| (true, 0.0), |a, b| (a.0 && b.0, a.1.max(b.1)));
        self.scale = scale;
        self.reusable = finite && skin_above_rounding(radius, scale);
        self.builds += 1;
        Ok(())
    }

    /// Bring the wide lists up to date for the cells `ids` at `positions` by renumbering
    /// changed rows and refreshing the cells that moved past the skin or are new; `false`
    /// when that is not possible or not worth it (the caller builds anew).
    /// `changed`: the rows whose cell changed ([`changed_rows`]).
    fn keep(&mut self, ids: &[u64], changed: &[usize], positions: &[Vec3], radius: f32) -> Result<bool, CoreError> {
        let (n0, n1) = (self.ids.len(), ids.len());
        let common = n0.min(n1);
        // Valid again only once the lists are up to date (an error leaves none to reuse).
        self.reusable = false;
        let old_ids = &self.ids;
        if changed.len() + n0.max(n1) - common > changes_allowed(n0, n1) {
            return Ok(false);
        }
        // `from`: new row → old row (NONE: a new cell) for the rows that changed, by new
        // row; `renumber`: every old row's new row (NONE: the cell died).
        let mut old_row: std::collections::HashMap<u64, u32> =
            changed.iter().copied().chain(common..n0).map(|i| (old_ids[i], i as u32)).collect();
        if old_row.len() != changed.len() + n0 - common {
            return Ok(false); // an id held by two rows: nothing to match rows by
        }
        let from: Vec<(u32, u32)> = changed
            .iter()
            .copied()
            .chain(common..n1)
            .map(|i| (i as u32, old_row.remove(&ids[i]).unwrap_or(NONE)))
            .collect();
        let source = |i: usize| from.binary_search_by_key(&(i as u32), |&(n, _)| n).map_or(i as u32, |k| from[k].1);

        // Reference positions in the new rows (old rows read before any is written: a
        // swap moves both ways).
        let mut at = std::mem::take(&mut self.at);
        let moved: Vec<(u32, Vec3)> = from
            .iter()
            .map(|&(new, old)| (new, if old == NONE { positions[new as usize] } else { at[old as usize] }))
            .collect();
        at.resize(n1, Vec3::ZERO);
        for &(new, p) in &moved {
            at[new as usize] = p;
        }
        // The cells to refresh: new cells and cells further than δ from their reference
        // (a non-finite position is never within it).
        let limit = 0.45 * SKIN * radius.abs();
        let limit2 = limit * limit;
        // (Whole chunks tested first: in most no cell moved that far.)
        let mut movers: Vec<u32> = positions
            .par_chunks(CHUNK)
            .zip(at.par_chunks(CHUNK))
            .enumerate()
            .flat_map_iter(|(c, (p, a))| {
                let within = |k: usize| (p[k] - a[k]).length_squared() <= limit2;
                let all_within = p.iter().zip(a).all(|(&p, &a)| (p - a).length_squared() <= limit2);
                let far = if all_within { 0..0 } else { 0..p.len() };
                far.filter(move |&k| !within(k)).map(move |k| (c * CHUNK + k) as u32)
            })
            .collect();
        movers.extend(from.iter().filter(|&&(_, old)| old == NONE).map(|&(new, _)| new));
        movers.sort_unstable();
        movers.dedup();
        if movers.is_empty() && from.is_empty() && n0 == n1 {
            self.at = at;
            self.reusable = true;
            self.reuses += 1;
            return Ok(true);
        }
        // Every other cell is within δ of its reference position, so the coordinates'
        // scale grows only by the refreshed cells'.
        let scale = movers.iter().map(|&m| positions[m as usize].abs().max_element()).fold(self.scale, f32::max);
        let finite = movers.iter().all(|&m| positions[m as usize].is_finite());
        if !finite || !skin_above_rounding(radius, scale) {
            self.at = at;
            return Ok(false);
        }
        // The refresh's work: the rows listing a refreshed, dead or renumbered cell.
        let mean = self.wide.neighbours.len() as f64 / n0.max(1) as f64;
        let touched = (movers.len() + from.len() + old_row.len()) as f64 * (mean + 1.0);
        if touched > (n1 / TOUCHED_DIVISOR + 64) as f64 {
            // Too many to keep: give the memory of the lists back and search directly
            // for a while.
            self.backoff = (2 * self.backoff).clamp(1, CROWDED_CALLS);
            self.crowded = self.backoff;
            self.wide = Csr::default();
            self.spare = Csr::default();
            return Ok(false);
        }
        let mut renumber: Vec<u32> = (0..n0 as u32).collect();
        for &o in old_row.values() {
            renumber[o as usize] = NONE;
        }
        for &(new, old) in &from {
            if old != NONE {
                renumber[old as usize] = new;
            }
        }
        let mut is_mover = vec![false; n1];
        for &m in &movers {
            at[m as usize] = positions[m as usize];
            is_mover[m as usize] = true;
        }

        // Each refreshed cell's wide list: every other cell within the wide radius by
        // reference position, found with a cell list of the reference positions.
        let wide = radius.abs() * (1.0 + SKIN);
        let near = CellList::new(&at, wide);
        let found: Vec<Vec<u32>> = movers
            .par_iter()
            .map(|&m| {
                let mut list = Vec::new();
                near.query_slot(near.slot[m as usize] as usize, wide * wide, &mut list);
                list
            })
            .collect();

        // Rows whose lists change besides the refreshed cells': every row that lists a
        // cell that died, changed rows or was refreshed (the lists are symmetric, so
        // these are the rows that cell listed), that a refreshed cell now lists, or that
        // holds another cell than before.
        let old = &self.wide;
        let mut rewrite: Vec<u32> = Vec::new();
        let partners = |o: u32, rewrite: &mut Vec<u32>| {
            rewrite.extend(
                old.list(o as usize)
                    .iter()
                    .map(|&e| renumber[e as usize])
                    .filter(|&r| r != NONE && !is_mover[r as usize]),
            );
        };
        for (o, &r) in renumber.iter().enumerate() {
            if r != o as u32 {
                partners(o as u32, &mut rewrite);
            }
        }
        for &m in &movers {
            let o = source(m as usize);
            if o != NONE {
                partners(o, &mut rewrite);
            }
        }
        // (row, refreshed cell it gains), by row.
        let mut gained: Vec<(u32, u32)> = movers
            .iter()
            .zip(&found)
            .flat_map(|(&m, list)| list.iter().filter(|&&j| !is_mover[j as usize]).map(move |&j| (j, m)))
            .collect();
        gained.sort_unstable();
        rewrite.extend(gained.iter().map(|&(j, _)| j));
        rewrite.extend(from.iter().filter(|&&(new, old)| old != NONE && !is_mover[new as usize]).map(|&(new, _)| new));
        rewrite.sort_unstable();
        rewrite.dedup();
        let mut edits: Vec<(u32, Vec<u32>)> = movers.iter().copied().zip(found).collect();
        edits.extend(rewrite.iter().map(|&t| {
            let mut list: Vec<u32> = old
                .list(source(t as usize) as usize)
                .iter()
                .map(|&e| renumber[e as usize])
                .filter(|&r| r != NONE && !is_mover[r as usize])
                .collect();
            let first = gained.partition_point(|&(j, _)| j < t);
            list.extend(gained[first..].iter().take_while(|&&(j, _)| j == t).map(|&(_, m)| m));
            list.sort_unstable();
            (t, list)
        }));
        edits.sort_unstable_by_key(|&(t, _)| t);

        // The new CSR, into the spare buffers (no fresh pages each call): edited rows
        // from `edits`, runs of untouched rows (the same number, the same list) copied
        // whole.
        let mut next = std::mem::take(&mut self.spare);
        next.offsets.clear();
        next.neighbours.clear();
        next.offsets.push(0u32);
        let copy_rows = |a: usize, b: usize, next: &mut Csr| {
            let (s, e) = (old.offsets[a] as usize, old.offsets[b] as usize);
            let base = next.neighbours.len();
            next.neighbours.extend_from_slice(&old.neighbours[s..e]);
            next.offsets.extend(old.offsets[a + 1..=b].iter().map(|&o| (o as usize - s + base) as u32));
        };
        let mut row = 0usize;
        for (t, list) in &edits {
            let t = *t as usize;
            if row < t {
                copy_rows(row, t, &mut next);
            }
            next.neighbours.extend_from_slice(list);
            if next.neighbours.len() >= u32::MAX as usize {
                return Err(CoreError::TooManyPairs { pairs: next.neighbours.len() as u64, radius: wide });
            }
            next.offsets.push(next.neighbours.len() as u32);
            row = t + 1;
        }
        if row < n1 {
            copy_rows(row, n1, &mut next);
        }
        self.spare = std::mem::replace(&mut self.wide, next);
        self.at = at;
        self.scale = scale;
        self.ids.clear();
        self.ids.extend_from_slice(ids);
        self.reusable = true;
        self.backoff = 0;
        self.refreshes += 1;
        Ok(true)
    }

    /// Keep the wide lists' pairs within `radius`, in order.
    fn filter(
        &mut self,
        positions: &[Vec3],
        radius: f32,
        offsets: &mut Vec<u32>,
        neighbours: &mut Vec<u32>,
    ) -> Result<(), CoreError> {
        let (n, r2) = (positions.len(), radius * radius);
        // The chunks' buffers are kept from call to call: allocating and zeroing them
        // afresh cost as much as the filtering (10⁶ cells: about 67 MB a call).
        let mut chunks = std::mem::take(&mut self.chunks);
        chunks.resize_with(n.div_ceil(CHUNK), Default::default);
        let wide = &self.wide;
        chunks.par_iter_mut().enumerate().for_each(|(c, (ends, flat))| {
            let cells = c * CHUNK..((c + 1) * CHUNK).min(n);
            let start = wide.offsets[cells.start] as usize;
            ends.clear();
            // Branch-free, as in the cell list's query: write each, keep it when it passes.
            // Only the kept part is read: a longer buffer keeps its stale tail.
            let most = wide.offsets[cells.end] as usize - start;
            if flat.len() < most {
                flat.resize(most, 0);
            }
            let mut len = 0;
            for i in cells {
                let p = positions[i];
                for &j in wide.list(i) {
                    flat[len] = j;
                    len += usize::from(distance_2(positions[j as usize], p) <= r2);
                }
                ends.push(len as u32);
            }
        });
        let joined = join_chunks(&chunks, n, radius, offsets, neighbours);
        self.chunks = chunks;
        joined
    }
}

/// The rows (below both lengths) where `old` and `new` hold different ids, in order (the
/// same on any thread count). Whole chunks are compared first: most are equal.
fn changed_rows(old: &[u64], new: &[u64]) -> Vec<usize> {
    let common = old.len().min(new.len());
    old[..common]
        .par_chunks(CHUNK)
        .zip(new[..common].par_chunks(CHUNK))
        .enumerate()
        .flat_map_iter(|(c, (a, b))| {
            let differ = if a == b { 0..0 } else { 0..a.len() };
            differ.filter(move |&k| a[k] != b[k]).map(move |k| c * CHUNK + k)
        })
        .collect()
}

/// Rows that may change between two calls of [`SkinLists`] with the lists kept.
fn changes_allowed(n0: usize, n1: usize) -> usize {
    n0.max(n1) / CHANGED_ROWS_DIVISOR + 16
}

/// Whether the skin's reuse margin (1 % of the radius) is far above the rounding of
/// coordinates up to `scale` (an ulp is at most 2 ε of the largest coordinate).
fn skin_above_rounding(radius: f32, scale: f32) -> bool {
    0.01 * radius.abs() > 64.0 * f32::EPSILON * scale
}

/// The length of a chunk's joined lists: its last cell's end (`flat` may be longer).
fn chunk_len(ends: &[u32]) -> usize {
    ends.last().map_or(0, |&e| e as usize)
}

/// Join per-chunk lists (`ends`: each cell's end in `flat`, chunks of [`CHUNK`] cells in
/// order) into CSR `offsets` (`n + 1`) and `neighbours`, in parallel; an error, for
/// lists found within `radius`, when they hold more pairs than a `u32` offset reaches.
fn join_chunks(
    chunks: &[(Vec<u32>, Vec<u32>)],
    n: usize,
    radius: f32,
    offsets: &mut Vec<u32>,
    neighbours: &mut Vec<u32>,
) -> Result<(), CoreError> {
    // Where each chunk's lists start in the joined array.
    let mut base = Vec::with_capacity(chunks.len() + 1);
    base.push(0usize);
    for (ends, _) in chunks {
        base.push(base.last().copied().unwrap_or(0) + chunk_len(ends));
    }
    let total = base.last().copied().unwrap_or(0);
    if total >= u32::MAX as usize {
        return Err(CoreError::TooManyPairs { pairs: total as u64, radius });
    }
    // Every entry is written below: resized without clearing, so the kept part of the
    // old buffers is not first zeroed (56 MB for 10⁶ cells in 2D).
    offsets.resize(n + 1, 0);
    offsets[0] = 0;
    neighbours.resize(total, 0);
    // Disjoint per-chunk slices of both outputs, filled in parallel.
    let mut parts = Vec::with_capacity(chunks.len());
    let (mut rest_o, mut rest_n): (&mut [u32], &mut [u32]) = (&mut offsets[1..], neighbours);
    for (c, (ends, flat)) in chunks.iter().enumerate() {
        let (o, tail_o) = rest_o.split_at_mut(ends.len());
        let (nb, tail_n) = rest_n.split_at_mut(chunk_len(ends));
        parts.push((base[c] as u32, ends, &flat[..nb.len()], o, nb));
        (rest_o, rest_n) = (tail_o, tail_n);
    }
    parts.into_par_iter().for_each(|(at, ends, flat, o, nb)| {
        for (o, &e) in o.iter_mut().zip(ends) {
            *o = at + e;
        }
        nb.copy_from_slice(flat);
    });
    Ok(())
}

/// Neighbours within `radius` by cell list: [`CellList::new`] then
/// [`CellList::neighbours_into`].
///
/// # Errors
///
/// As [`CellList::neighbours_into`].
pub fn neighbours_cell_list(
    positions: &[Vec3],
    radius: f32,
    offsets: &mut Vec<u32>,
    neighbours: &mut Vec<u32>,
) -> Result<(), CoreError> {
    CellList::new(positions, radius).neighbours_into(offsets, neighbours)
}

/// An `rstar` point carrying its batch index.
pub type IndexedPoint = GeomWithData<[f32; 3], u32>;

/// Bulk-load an `rstar` R-tree of the cells, each point carrying its batch index
/// (for [`neighbours_in_rtree`] and for nearest-neighbour queries).
pub fn rtree(positions: &[Vec3]) -> RTree<IndexedPoint> {
    RTree::bulk_load(positions.iter().enumerate().map(|(i, p)| IndexedPoint::new(p.to_array(), i as u32)).collect())
}

/// Neighbours within `radius` with one `locate_within_distance(p, radius²)` query
/// per cell on a tree built by [`rtree`] from the same `positions`.
pub fn neighbours_in_rtree(
    tree: &RTree<IndexedPoint>,
    positions: &[Vec3],
    radius: f32,
    offsets: &mut Vec<u32>,
    neighbours: &mut Vec<u32>,
) {
    let r2 = radius * radius;
    let lists: Vec<Vec<u32>> = positions
        .par_iter()
        .enumerate()
        .map(|(i, p)| {
            let mut v: Vec<u32> =
                tree.locate_within_distance(p.to_array(), r2).map(|q| q.data).filter(|&j| j as usize != i).collect();
            v.sort_unstable();
            v
        })
        .collect();
    offsets.clear();
    neighbours.clear();
    offsets.push(0);
    for list in &lists {
        neighbours.extend_from_slice(list);
        offsets.push(neighbours.len() as u32);
    }
}

/// Neighbours within `radius` through an `rstar` R-tree, bulk-loaded here
/// ([`rtree`] then [`neighbours_in_rtree`]); the same output as [`CellList`]. Kept as
/// the reference and for comparison.
pub fn neighbours_rstar(positions: &[Vec3], radius: f32, offsets: &mut Vec<u32>, neighbours: &mut Vec<u32>) {
    neighbours_in_rtree(&rtree(positions), positions, radius, offsets, neighbours);
}

/// Reference O(N²) search with the same inclusion rule, for tests.
pub fn neighbours_brute_force(positions: &[Vec3], radius: f32) -> Csr {
    let r2 = radius * radius;
    let mut csr = Csr { offsets: vec![0], neighbours: Vec::new() };
    for (i, &p) in positions.iter().enumerate() {
        for (j, &q) in positions.iter().enumerate() {
            if j != i && distance_2(q, p) <= r2 {
                csr.neighbours.push(j as u32);
            }
        }
        csr.offsets.push(csr.neighbours.len() as u32);
    }
    csr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_exactly_at_the_radius_are_neighbours() {
        let p = [Vec3::ZERO, Vec3::new(3.0, 4.0, 0.0), Vec3::new(3.0, 4.0, 0.0), Vec3::new(10.0, 0.0, 0.0)];
        let csr = CellList::new(&p, 5.0).neighbours().unwrap();
        assert_eq!(csr.list(0), &[1, 2]);
        assert_eq!(csr.list(1), &[0, 2]);
        assert_eq!(csr.list(3), &[] as &[u32]);
    }

    #[test]
    fn a_flat_tissue_has_one_layer_of_bins() {
        let p: Vec<Vec3> = (0..100).map(|i| Vec3::new((i % 10) as f32 * 3.0, (i / 10) as f32 * 3.0, 0.0)).collect();
        let list = CellList::new(&p, 4.0);
        assert_eq!(list.bins()[2], 1);
        assert!(list.edge() >= 4.0);
    }

    #[test]
    fn non_finite_positions_neither_panic_nor_find_neighbours() {
        let p = [Vec3::ZERO, Vec3::splat(f32::NAN), Vec3::new(f32::INFINITY, 0.0, 0.0), Vec3::new(1.0, 0.0, 0.0)];
        let csr = CellList::new(&p, 2.0).neighbours().unwrap();
        assert_eq!(csr.list(0), &[3]);
        assert!(csr.list(1).is_empty() && csr.list(2).is_empty());
    }
}
