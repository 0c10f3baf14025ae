//! Channel clamps: hold one way information reaches a cell's response at the value its
//! paired control sensed, for path-specific counterfactuals (`explant explain`).
//!
//! A cell's response model reads its own expression and three kinds of signal, all in
//! [`Batch`] after the sense stage: each sensed ligand (`ligand:NAME`, a column of
//! `Batch::sensed`), each contact gene's neighbour mean (`contact:GENE`, a column of
//! `Batch::contact`) and each count of neighbours of a cell type (`neighbours:TYPE`, a
//! column of `Batch::neighbour_types`). These are the [`Channel`]s. Cutting one channel
//! while leaving the rest of the perturbed run alone asks *how much of the perturbation's
//! effect travelled along this path* (Pearl's path-specific effect; for a simulator the
//! counterfactual is measured, not inferred).
//!
//! How: the driver steps the control first at each tick, takes its [`ChannelValues`]
//! (the signals its sense stage found, by cell id) and hands them to the clamped run with
//! [`Simulation::clamp_channels`](crate::Simulation::clamp_channels); in that run a system
//! right after `sense`, inside the sense stage, overwrites the clamped columns of every
//! cell that has a twin in the control (the same [`CellId`](crate::CellId): ids are
//! lineage-true, so the twin is the same cell). A cell without a twin (a grafted cell, a
//! daughter of a division only this run made) keeps its own values: there is no control
//! value for it to sense. Only the response model reads these columns, so mechanics,
//! secretion and fate are untouched, and the clamp changes only what the model is told.
//!
//! The copy is a serial loop over rows with a binary search over the control's sorted
//! ids, so it gives the same result on any thread count.

use std::sync::Arc;

use bevy_ecs::prelude::*;

use crate::CoreError;
use crate::components::{Batch, Failure, Settings};
use crate::schedule::TickContext;

/// One way information reaches a cell's response (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// A sensed ligand, by ligand index: `ligand:NAME`.
    Ligand(usize),
    /// The neighbour mean of a contact gene, by gene index: `contact:GENE`.
    Contact(usize),
    /// The count of neighbours of a cell type, by type index: `neighbours:TYPE`.
    Neighbours(usize),
}

impl Channel {
    /// Every channel of `scene`: its ligands, its contact genes, its cell types, in the
    /// scene's order.
    pub fn all(scene: &explant_scene::Scene) -> Vec<Channel> {
        let ligands = (0..scene.ligands.len()).map(Channel::Ligand);
        let contact = scene.genes.iter().enumerate().filter(|(_, g)| scene.contact.genes.contains(g)).map(|(k, _)| k);
        let types = (0..scene.cell_types.len()).map(Channel::Neighbours);
        ligands.chain(contact.map(Channel::Contact)).chain(types).collect()
    }

    /// The channel's name, as the teacher's edges write their sources: `ligand:WNT3A`,
    /// `contact:DLL1`, `neighbours:organiser`.
    pub fn name(self, scene: &explant_scene::Scene) -> String {
        match self {
            Channel::Ligand(l) => format!("ligand:{}", scene.ligands[l].name),
            Channel::Contact(g) => format!("contact:{}", scene.genes[g]),
            Channel::Neighbours(t) => format!("neighbours:{}", scene.cell_types[t].name),
        }
    }

    /// The channel named `name` (as [`Channel::name`] writes it) in `scene`.
    ///
    /// # Errors
    ///
    /// A message naming the channel and what `scene` offers, when it has no such channel.
    pub fn parse(name: &str, scene: &explant_scene::Scene) -> Result<Channel, String> {
        match Channel::all(scene).into_iter().find(|c| c.name(scene) == name) {
            Some(c) => Ok(c),
            None => {
                let known: Vec<String> = Channel::all(scene).iter().map(|c| format!("`{}`", c.name(scene))).collect();
                Err(format!("the scene has no channel `{name}` (its channels: {})", known.join(", ")))
            }
        }
    }

    /// The column of this channel in its `Batch` array and that array's width.
    fn column(self, settings: &Settings) -> (usize, usize) {
        match self {
            Channel::Ligand(l) => (l, settings.ligands),
            Channel::Contact(g) => (g, settings.genes),
            Channel::Neighbours(t) => (t, settings.cell_types),
        }
    }
}

/// The signals one simulation's sense stage found at one tick, for a set of channels,
/// by cell id.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelValues {
    /// The tick whose sense stage found them.
    pub tick: u64,
    /// The channels, in the order of the columns of `values`.
    pub channels: Vec<Channel>,
    /// Cell ids, ascending.
    pub ids: Vec<u64>,
    /// `ids.len() × channels.len()`, row-major.
    pub values: Vec<f32>,
}

impl ChannelValues {
    /// The values of `channels` in `batch` (as its last sense stage left it, at `tick`),
    /// sorted by cell id.
    pub(crate) fn of_batch(batch: &Batch, settings: &Settings, channels: &[Channel], tick: u64) -> Self {
        let n = batch.cells.min(batch.ids.len());
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| batch.ids[i]);
        let mut values = Vec::with_capacity(n * channels.len());
        for &i in &order {
            for &c in channels {
                values.push(read(batch, settings, c, i));
            }
        }
        Self { tick, channels: channels.to_vec(), ids: order.iter().map(|&i| batch.ids[i]).collect(), values }
    }
}

/// The value of channel `c` for row `i` of the batch (0 where the sense stage left the
/// array empty, as for a model that reads no neighbour counts).
fn read(batch: &Batch, settings: &Settings, c: Channel, i: usize) -> f32 {
    let (k, width) = c.column(settings);
    let array = match c {
        Channel::Ligand(_) => &batch.sensed,
        Channel::Contact(_) => &batch.contact,
        Channel::Neighbours(_) => &batch.neighbour_types,
    };
    array.get(i * width + k).copied().unwrap_or(0.0)
}

/// The clamp of a simulation: the channels held at a control's values, and the control's
/// values for the current tick (see the module docs). Empty: nothing is clamped.
#[derive(Resource, Debug, Clone, Default)]
pub struct ChannelClamp {
    /// The clamped channels, as indices into `values.channels`.
    pub(crate) which: Vec<usize>,
    /// The control's values of this tick (shared between the runs that read them).
    pub(crate) values: Option<Arc<ChannelValues>>,
}

impl ChannelClamp {
    /// Hold `channels` at `values` (which must hold every one of them).
    ///
    /// # Errors
    ///
    /// [`CoreError::Clamp`] naming a channel `values` does not hold.
    pub fn new(channels: &[Channel], values: Arc<ChannelValues>) -> Result<Self, CoreError> {
        let which = channels
            .iter()
            .map(|c| {
                values.channels.iter().position(|v| v == c).ok_or_else(|| {
                    CoreError::Clamp(format!("channel {c:?} is clamped but the control's values do not include it"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { which, values: Some(values) })
    }
}

/// The last system of the sense stage: overwrite the clamped columns of every cell with a
/// twin in the control by the control's value. Values of another tick than this one are
/// refused (a driver that forgot to step the control first), so a stale signal never
/// passes silently.
pub(crate) fn apply_clamp(
    ctx: TickContext,
    clamp: Res<ChannelClamp>,
    mut batch: ResMut<Batch>,
    mut failure: ResMut<Failure>,
) {
    let Some(values) = clamp.values.as_deref() else { return };
    if clamp.which.is_empty() {
        return;
    }
    if values.tick != ctx.clock.tick {
        failure.0 = Some(CoreError::Clamp(format!(
            "the control's signals are of tick {} but this is tick {}: step the control first, then pass its \
             values",
            values.tick, ctx.clock.tick
        )));
        return;
    }
    let settings = &*ctx.settings;
    let width = values.channels.len();
    let b = &mut *batch;
    for i in 0..b.cells {
        let Ok(row) = values.ids.binary_search(&b.ids[i]) else { continue };
        for &w in &clamp.which {
            let c = values.channels[w];
            let (k, cols) = c.column(settings);
            let array = match c {
                Channel::Ligand(_) => &mut b.sensed,
                Channel::Contact(_) => &mut b.contact,
                Channel::Neighbours(_) => &mut b.neighbour_types,
            };
            if let Some(v) = array.get_mut(i * cols + k) {
                *v = values.values[row * width + w];
            }
        }
    }
}
