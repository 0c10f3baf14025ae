//! Checkpoints of a run (`checkpoint.explant` in its directory): the exact state of the
//! simulation and of its paired control, with what is needed to go on from there
//! (the scene text as run, the options, the wall time so far), so `explant resume`
//! finishes a killed run with outputs identical to an uninterrupted one.
//!
//! The file is written whole to a temporary name, flushed to disk and renamed over the
//! previous checkpoint, so a kill at any moment leaves the last complete checkpoint in
//! place. Its layout: a magic line, a format number, the explant version that wrote it,
//! the run's settings and scene, each simulation's [`SimState`] bytes, and an FNV-1a 64
//! checksum of everything before it. A checkpoint from another explant version, of
//! another scene than the run directory's, or damaged, is refused with the reason.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use explant_core::{Decoder, Encoder, SimState};

use crate::manifest::fnv1a64;
use crate::{DiffusionChoice, RunError, VERSION};

/// First bytes of every checkpoint.
const MAGIC: &[u8] = b"explant checkpoint\n";
/// Version of the layout below (independent of the explant version, which must match too).
/// 2: no id counter (ids are lineage hashes, `explant_core::lineage`).
const FORMAT: u32 = 2;

/// A run's state at one tick, as saved and read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The explant version that wrote it.
    pub explant_version: String,
    /// The scene file the run was started from (absolute), for relative paths in it.
    pub scene_path: PathBuf,
    /// The scene text as run (model overrides applied).
    pub scene_text: String,
    /// Where diffusion was asked to run.
    pub diffusion: DiffusionChoice,
    /// The diffusion backend that ran (its name).
    pub diffusion_backend: String,
    /// Worker threads of the model (0: its default).
    pub threads: usize,
    /// Whether figures are skipped at the end.
    pub no_figures: bool,
    /// Checkpoint interval, ticks.
    pub every_ticks: u64,
    /// The command line that started the run.
    pub command_line: Vec<String>,
    /// Wall seconds of the tick loop up to this checkpoint.
    pub wall_seconds: f64,
    /// The perturbed simulation.
    pub sim: SimState,
    /// The paired control, when the run has one.
    pub control: Option<SimState>,
}

impl Checkpoint {
    /// Ticks completed at this checkpoint.
    pub fn tick(&self) -> u64 {
        self.sim.tick
    }

    /// The scene text's fingerprint, as the manifest writes it.
    pub fn scene_fnv1a64(&self) -> String {
        format!("{:016x}", fnv1a64(self.scene_text.as_bytes()))
    }

    /// The bytes of the file.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.0.extend_from_slice(MAGIC);
        e.u32(FORMAT);
        e.str(&self.explant_version);
        e.str(&self.scene_path.to_string_lossy());
        e.str(&self.scene_text);
        e.u8(match self.diffusion {
            DiffusionChoice::Auto => 0,
            DiffusionChoice::Cpu => 1,
            DiffusionChoice::Gpu => 2,
        });
        e.str(&self.diffusion_backend);
        e.size(self.threads);
        e.bool(self.no_figures);
        e.u64(self.every_ticks);
        e.size(self.command_line.len());
        for a in &self.command_line {
            e.str(a);
        }
        e.f64(self.wall_seconds);
        let sim = self.sim.encode();
        e.size(sim.len());
        e.0.extend_from_slice(&sim);
        e.bool(self.control.is_some());
        if let Some(c) = &self.control {
            let c = c.encode();
            e.size(c.len());
            e.0.extend_from_slice(&c);
        }
        let sum = fnv1a64(&e.0);
        e.u64(sum);
        e.0
    }

    /// Read the bytes of a file written by [`Checkpoint::encode`]; the message says what
    /// is wrong (not a checkpoint, another version, damaged).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if !bytes.starts_with(MAGIC) {
            return Err("it is not an explant checkpoint (its first bytes differ)".into());
        }
        let body = bytes.len().checked_sub(8).filter(|&n| n >= MAGIC.len()).ok_or("it is truncated")?;
        let mut d = Decoder::new(&bytes[MAGIC.len()..]);
        let format = d.u32()?;
        if format != FORMAT {
            return Err(format!("its layout is format {format}; this explant reads format {FORMAT}"));
        }
        let explant_version = d.str()?;
        if explant_version != VERSION {
            return Err(format!(
                "it was written by explant {explant_version}; this is explant {VERSION}: resume with that version, \
                 or run the scene again"
            ));
        }
        let stored = u64::from_le_bytes(bytes[body..].try_into().map_err(|_| "it is truncated")?);
        if fnv1a64(&bytes[..body]) != stored {
            return Err("it is damaged (its checksum does not match its contents)".into());
        }
        let mut d = Decoder::new(&bytes[..body]);
        d.at = MAGIC.len() + 4;
        let _version = d.str()?;
        let scene_path = PathBuf::from(d.str()?);
        let scene_text = d.str()?;
        let diffusion = match d.u8()? {
            0 => DiffusionChoice::Auto,
            1 => DiffusionChoice::Cpu,
            2 => DiffusionChoice::Gpu,
            v => return Err(format!("unknown diffusion choice {v}")),
        };
        let diffusion_backend = d.str()?;
        let threads = d.size()?;
        let no_figures = d.bool()?;
        let every_ticks = d.u64()?;
        let args = d.size()?;
        let command_line = (0..args).map(|_| d.str()).collect::<Result<_, _>>()?;
        let wall_seconds = d.f64()?;
        let state = |d: &mut Decoder| -> Result<SimState, String> {
            let n = d.size()?;
            let end = d.at.checked_add(n).filter(|&e| e <= body).ok_or("a state runs past the end")?;
            let s = SimState::decode(&d.bytes[d.at..end])?;
            d.at = end;
            Ok(s)
        };
        let sim = state(&mut d)?;
        let control = if d.bool()? { Some(state(&mut d)?) } else { None };
        if d.at != body {
            return Err(format!("{} bytes left over before the checksum", body - d.at));
        }
        Ok(Self {
            explant_version,
            scene_path,
            scene_text,
            diffusion,
            diffusion_backend,
            threads,
            no_figures,
            every_ticks,
            command_line,
            wall_seconds,
            sim,
            control,
        })
    }

    /// Write to `path` atomically: a temporary file beside it, flushed to disk, renamed
    /// over it.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), RunError> {
        let tmp = path.with_extension("explant.partial");
        let bytes = self.encode();
        let mut f = std::fs::File::create(&tmp).map_err(RunError::file("create", &tmp))?;
        f.write_all(&bytes).map_err(RunError::file("write", &tmp))?;
        f.sync_all().map_err(RunError::file("write", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(RunError::file("rename", &tmp))?;
        Ok(())
    }

    /// Read the checkpoint at `path`.
    ///
    /// # Errors
    ///
    /// When it cannot be read or is refused (see [`Checkpoint::decode`]).
    pub fn read(path: &Path) -> Result<Self, RunError> {
        let bytes = std::fs::read(path).map_err(RunError::file("read", path))?;
        Self::decode(&bytes).map_err(|message| RunError::Checkpoint { path: path.to_path_buf(), message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let state = SimState {
            tick: 4,
            cells: Vec::new(),
            expression: Vec::new(),
            genes: 2,
            field: vec![0.5; 3],
            exchanged: vec![0.0],
            fired: vec![],
            ablated: vec![],
            injected: vec![0.0],
            pseudobulk: vec![],
            ligand_totals: vec![],
            regional: vec![],
            added: vec![(1, 0.25)],
            restart_tick: 3,
        };
        Checkpoint {
            explant_version: VERSION.into(),
            scene_path: "/s/scene.toml".into(),
            scene_text: "name = \"s\"\n".into(),
            diffusion: DiffusionChoice::Cpu,
            diffusion_backend: "cpu".into(),
            threads: 0,
            no_figures: true,
            every_ticks: 2,
            command_line: vec!["explant".into(), "run".into()],
            wall_seconds: 1.5,
            sim: state.clone(),
            control: Some(state),
        }
    }

    #[test]
    fn a_checkpoint_round_trips_and_damage_or_another_version_is_refused_with_the_reason() {
        let c = sample();
        let bytes = c.encode();
        assert_eq!(Checkpoint::decode(&bytes).unwrap(), c);
        let mut flipped = bytes.clone();
        let k = flipped.len() / 2;
        flipped[k] ^= 1;
        assert!(Checkpoint::decode(&flipped).unwrap_err().contains("damaged"));
        assert!(Checkpoint::decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(Checkpoint::decode(b"PK\x03\x04 not ours").unwrap_err().contains("not an explant checkpoint"));
        let old = Checkpoint { explant_version: "0.0.1".into(), ..sample() };
        let e = Checkpoint::decode(&old.encode()).unwrap_err();
        assert!(e.contains("written by explant 0.0.1") && e.contains(VERSION), "{e}");
    }
}
