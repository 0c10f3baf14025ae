//! What a cell costs in memory, and how many cells a run may hold.
//!
//! The figures are measured, not summed from struct sizes: the peak resident set
//! (`VmHWM`) of `explant run` on the same scene at two population sizes, whose slope is
//! the memory one more cell costs over the whole run (its components, its row of the
//! expression matrix, the model's batch, neighbour lists, the recording and the snapshot
//! writer's copies). `BENCHMARKS.md` ("Memory per cell") gives the command, the machine
//! and the commit of the measurement; remeasure when the cell's data changes.
//!
//! A scene may set `tissue.max_cells`; without it the limit is the number of cells whose
//! measured cost fits in half of the memory the machine has available when the run
//! starts (Linux `MemAvailable`), or in half of [`FALLBACK_MEMORY_BYTES`] where that
//! cannot be read. Half leaves room for the ligand fields and the rest of the machine; a
//! scene with perturbations runs a paired control beside it, so each of the two gets half
//! of that half.

use std::fmt;

/// Measured memory per cell that does not depend on the number of genes, bytes.
pub const BYTES_PER_CELL: f64 = 612.0;

/// Measured memory per cell per gene of the scene, bytes.
pub const BYTES_PER_CELL_PER_GENE: f64 = 15.3;

/// Memory assumed available where the machine does not say (not Linux), bytes: 8 GiB.
pub const FALLBACK_MEMORY_BYTES: u64 = 8 << 30;

/// Measured peak memory of one cell of a scene with `genes` genes, bytes.
pub fn bytes_per_cell(genes: usize) -> f64 {
    BYTES_PER_CELL + BYTES_PER_CELL_PER_GENE * genes as f64
}

/// `MemAvailable` of `/proc/meminfo`, bytes; `None` where it cannot be read.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

/// The `MemAvailable:  N kB` line of a `/proc/meminfo` text, in bytes.
fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line["MemAvailable:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// The most cells a run may hold, and where the number comes from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellLimit {
    /// The limit.
    pub cells: usize,
    /// Why: the scene's `tissue.max_cells`, or the memory it was derived from.
    pub origin: LimitOrigin,
}

/// Where a [`CellLimit`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitOrigin {
    /// The scene sets `tissue.max_cells`.
    Scene,
    /// Half of the machine's available memory (bytes) at this cost per cell.
    Available {
        /// `MemAvailable`, bytes.
        bytes: u64,
        /// The measured cost of one cell of the scene, bytes.
        per_cell: u64,
        /// Simulations sharing the memory (2 with a paired control).
        simulations: usize,
    },
    /// Half of [`FALLBACK_MEMORY_BYTES`] (the available memory could not be read).
    Fallback,
}

impl CellLimit {
    /// The limit when the scene does not set one: half of `available` bytes (or of
    /// [`FALLBACK_MEMORY_BYTES`]), shared by `simulations` simulations (2 with a paired
    /// control), divided by the measured cost of a cell with `genes` genes.
    pub fn from_memory(available: Option<u64>, genes: usize, simulations: usize) -> Self {
        let per_cell = bytes_per_cell(genes);
        let (bytes, origin) = match available {
            Some(b) => (b, LimitOrigin::Available { bytes: b, per_cell: per_cell.round() as u64, simulations }),
            None => (FALLBACK_MEMORY_BYTES, LimitOrigin::Fallback),
        };
        let share = bytes as f64 / 2.0 / simulations.max(1) as f64;
        let cells = (share / per_cell).floor().max(1.0) as usize;
        Self { cells, origin }
    }
}

impl fmt::Display for CellLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        match self.origin {
            LimitOrigin::Scene => write!(f, "`tissue.max_cells` = {}", self.cells),
            LimitOrigin::Available { bytes, per_cell, simulations } => write!(
                f,
                "`tissue.max_cells` = {} (not set; derived from half of the {:.1} GiB available at {per_cell} bytes per cell{})",
                self.cells,
                gib(bytes),
                if simulations > 1 { ", shared with the paired control" } else { "" }
            ),
            LimitOrigin::Fallback => write!(
                f,
                "`tissue.max_cells` = {} (not set; derived from half of an assumed {:.0} GiB, as the available memory could not be read)",
                self.cells,
                gib(FALLBACK_MEMORY_BYTES)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(parse_mem_available(text), Some(8_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: lots kB\n"), None);
    }

    #[test]
    fn the_default_limit_fits_the_measured_cost_in_half_the_available_memory() {
        let available = 16u64 << 30;
        let limit = CellLimit::from_memory(Some(available), 7, 1);
        let used = limit.cells as f64 * bytes_per_cell(7);
        assert!(used <= available as f64 / 2.0, "{used} bytes");
        assert!(used + bytes_per_cell(7) > available as f64 / 2.0, "the largest such count");
        assert!(limit.to_string().contains("16.0 GiB"), "{limit}");
        let fallback = CellLimit::from_memory(None, 7, 1);
        assert_eq!(fallback.origin, LimitOrigin::Fallback);
        assert_eq!(fallback.cells, (FALLBACK_MEMORY_BYTES as f64 / 2.0 / bytes_per_cell(7)) as usize);
        let paired = CellLimit::from_memory(Some(available), 7, 2);
        assert_eq!(paired.cells, (available as f64 / 4.0 / bytes_per_cell(7)) as usize);
        assert!(paired.to_string().contains("shared with the paired control"), "{paired}");
    }
}
