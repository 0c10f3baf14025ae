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
//! `ligand:NAME from TYPE` ([`Channel::LigandFrom`]) holds only the part of a sensed
//! ligand that cells of TYPE secreted: a run split by [`SourceSplit`] tracks each
//! type's part of the field (exact, by the linearity of transport in the sources; see
//! `explant_run::explain`), and the clamp replaces the cell's own part by the control's,
//! `sensed − own part + control's part`, leaving the rest of the ligand alone.
//!
//! The copy is a serial loop over rows with a binary search over the control's sorted
//! ids, so it gives the same result on any thread count.

use std::sync::Arc;

use bevy_ecs::prelude::*;

use explant_field::{Boundary, ChannelParams, DiffusionBackend, Field};

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
    /// The part of a sensed ligand that cells of one type secreted, by ligand and type
    /// index: `ligand:NAME from TYPE` (see [`SourceSplit`](crate::SourceSplit)).
    LigandFrom(usize, usize),
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

    /// The `ligand:NAME from TYPE` channels of `scene`, ligands then types in the scene's
    /// order: one for each cell type that can secrete the ligand, i.e. whose cells can
    /// carry its `secreted_by` gene. A type can, unless it starts without the gene (no
    /// positive `baseline`) *and* the teacher holds the gene off in it (a type `bias` of
    /// the gene at most [`HELD_OFF`], so its production rate is below
    /// `σ(−20) ≈ 2·10⁻⁹` of its maximum for any input the scene can give it). The
    /// test is conservative: a type it keeps may secrete nothing (its channel then
    /// carries exactly 0), but a type it drops can never secrete.
    pub fn from_types(scene: &explant_scene::Scene) -> Vec<Channel> {
        let mut out = Vec::new();
        for (l, ligand) in scene.ligands.iter().enumerate() {
            for (t, ty) in scene.cell_types.iter().enumerate() {
                let starts = ty.baseline.get(&ligand.secreted_by).is_some_and(|&x| x > 0.0);
                let held_off = ty.bias.get(&ligand.secreted_by).is_some_and(|&b| b <= HELD_OFF);
                if starts || !held_off {
                    out.push(Channel::LigandFrom(l, t));
                }
            }
        }
        out
    }

    /// The channel's name, as the teacher's edges write their sources: `ligand:WNT3A`,
    /// `contact:DLL1`, `neighbours:organiser`; `ligand:IFNG from tcell`.
    pub fn name(self, scene: &explant_scene::Scene) -> String {
        match self {
            Channel::Ligand(l) => format!("ligand:{}", scene.ligands[l].name),
            Channel::Contact(g) => format!("contact:{}", scene.genes[g]),
            Channel::Neighbours(t) => format!("neighbours:{}", scene.cell_types[t].name),
            Channel::LigandFrom(l, t) => {
                format!("ligand:{} from {}", scene.ligands[l].name, scene.cell_types[t].name)
            }
        }
    }

    /// The channel named `name` (as [`Channel::name`] writes it) in `scene`.
    ///
    /// # Errors
    ///
    /// A message naming the channel and what `scene` offers, when it has no such channel.
    pub fn parse(name: &str, scene: &explant_scene::Scene) -> Result<Channel, String> {
        let every: Vec<Channel> = Channel::all(scene)
            .into_iter()
            .chain(
                (0..scene.ligands.len())
                    .flat_map(|l| (0..scene.cell_types.len()).map(move |t| Channel::LigandFrom(l, t))),
            )
            .collect();
        match every.iter().find(|c| c.name(scene) == name) {
            Some(&c) => Ok(c),
            None => {
                let known: Vec<String> = Channel::all(scene).iter().map(|c| format!("`{}`", c.name(scene))).collect();
                Err(format!("the scene has no channel `{name}` (its channels: {})", known.join(", ")))
            }
        }
    }

    /// The column of this channel in its `Batch` array and that array's width (for
    /// `ligand:NAME from TYPE`, the ligand's column of `Batch::sensed`).
    fn column(self, settings: &Settings) -> (usize, usize) {
        match self {
            Channel::Ligand(l) | Channel::LigandFrom(l, _) => (l, settings.ligands),
            Channel::Contact(g) => (g, settings.genes),
            Channel::Neighbours(t) => (t, settings.cell_types),
        }
    }
}

/// A type bias of a gene at or below this holds the gene off in the type's cells
/// ([`Channel::from_types`]).
pub const HELD_OFF: f32 = -20.0;

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
    if let Channel::LigandFrom(l, t) = c {
        return from_part(batch, l, t, i).unwrap_or(0.0);
    }
    let (k, width) = c.column(settings);
    let array = match c {
        Channel::Ligand(_) | Channel::LigandFrom(..) => &batch.sensed,
        Channel::Contact(_) => &batch.contact,
        Channel::Neighbours(_) => &batch.neighbour_types,
    };
    array.get(i * width + k).copied().unwrap_or(0.0)
}

/// Row `i`'s sensed part of ligand `l` that type `t` secreted, when the run splits it.
fn from_part(batch: &Batch, l: usize, t: usize, i: usize) -> Option<f32> {
    let p = batch.split_pairs.iter().position(|&(pl, pt)| pl == l && pt == t)?;
    batch.sensed_from.get(i * batch.split_pairs.len() + p).copied()
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
    if let Some(c) = clamp.which.iter().map(|&w| values.channels[w]).find(|c| match *c {
        Channel::LigandFrom(l, t) => !b.split_pairs.contains(&(l, t)),
        _ => false,
    }) {
        failure.0 = Some(CoreError::Clamp(format!(
            "channel {c:?} is clamped but this run does not split that ligand by source type: call \
             `Simulation::split_sources` before the first step"
        )));
        return;
    }
    // The `from TYPE` parts first: a whole-ligand clamp of the same ligand, if any, wins.
    let mut order: Vec<usize> = clamp.which.clone();
    order.sort_by_key(|&w| !matches!(values.channels[w], Channel::LigandFrom(..)));
    for i in 0..b.cells {
        let Ok(row) = values.ids.binary_search(&b.ids[i]) else { continue };
        for &w in &order {
            let c = values.channels[w];
            let (k, cols) = c.column(settings);
            if let Channel::LigandFrom(l, t) = c {
                // sensed − own part of type t + the control's part of type t.
                let own = from_part(b, l, t, i).unwrap_or(0.0);
                if let Some(v) = b.sensed.get_mut(i * cols + k) {
                    *v = *v - own + values.values[row * width + w];
                }
                continue;
            }
            let array = match c {
                Channel::Ligand(_) | Channel::LigandFrom(..) => &mut b.sensed,
                Channel::Contact(_) => &mut b.contact,
                Channel::Neighbours(_) => &mut b.neighbour_types,
            };
            if let Some(v) = array.get_mut(i * cols + k) {
                *v = values.values[row * width + w];
            }
        }
    }
}

/// The ligand fields split by the cell type that secreted them, for the
/// `ligand:NAME from TYPE` channels (see the module docs): one field per tracked
/// (ligand, type) pair, started at 0, stepped by the same linear map as the ligand's
/// field, with only that type's cells as sources. Empty (no pairs): nothing is split.
#[derive(Resource, Default)]
pub struct SourceSplit {
    /// The (ligand, cell type) pairs, one channel of `field` each.
    pub(crate) pairs: Vec<(usize, usize)>,
    /// Each pair's field, channel-major.
    pub(crate) field: Option<Field>,
    /// Each pair's transport: its ligand's, with every fixed boundary value set to 0 (the
    /// boundary is a source of the whole field, of no type's part).
    pub(crate) params: Vec<ChannelParams>,
    /// The backend that steps `field` (the same kind and scheme as the ligands').
    pub(crate) diffuser: Option<Box<dyn DiffusionBackend>>,
    /// What was added to `field` since the last step, as [`crate::Ligands::added`].
    pub(crate) added: Vec<(u32, f32)>,
}

impl SourceSplit {
    /// Track `pairs` of `field`'s grid with transport `ligand_params` (by ligand).
    pub(crate) fn new(
        pairs: Vec<(usize, usize)>,
        grid: explant_field::Grid,
        ligand_params: &[ChannelParams],
        diffuser: Box<dyn DiffusionBackend>,
    ) -> Self {
        let params = pairs
            .iter()
            .map(|&(l, _)| {
                let mut p = ligand_params[l].clone();
                for f in &mut p.boundary {
                    if let Boundary::Fixed { value } = f {
                        *value = 0.0;
                    }
                }
                p
            })
            .collect();
        let field = Some(Field::zeros(grid, pairs.len()));
        Self { pairs, field, params, diffuser: Some(diffuser), added: Vec::new() }
    }

    /// The channel of `field` that holds type `t`'s part of ligand `c`, if tracked.
    pub(crate) fn channel_of(&self, c: usize, t: usize) -> Option<usize> {
        self.pairs.iter().position(|&p| p == (c, t))
    }
}
