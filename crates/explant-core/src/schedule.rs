//! The tick as a `bevy_ecs` schedule: the [`Stage`] sets chained in order, the
//! conditions under which each runs, and the per-stage timers.
//!
//! Why here and not in the stage bodies: every stage skips once a failure is recorded,
//! and some run only every few ticks (`time.mechanics_dt`, `time.state_dt`). Written as
//! run conditions on the stage's set, the rule is stated once, where the order is, and
//! the bodies hold only their physics. Set conditions are evaluated when the executor
//! reaches the set (after the stages before it have run), so a failure in one stage
//! stops the later stages of the same tick, as before. Likewise, each stage is timed by
//! a system before and after its body, inside its set, so a stage that does not run
//! adds no time (rapier's `src/counters/stages_counters.rs`).

use std::time::Instant;

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::SingleThreadedExecutor;
use bevy_ecs::system::{ScheduleSystem, SystemParam};

use crate::Stage;
use crate::components::{Clock, Failure, Settings, StageTimers};
use crate::residency::sync_host;
use crate::{clamp, life, mechanics, recording, stages};

/// What every stage reads: the run's fixed settings and the clock.
#[derive(SystemParam)]
pub(crate) struct TickContext<'w> {
    /// Fixed per-run settings.
    pub settings: Res<'w, Settings>,
    /// The clock (advanced only by the record stage, at the end of the tick).
    pub clock: Res<'w, Clock>,
}

impl TickContext<'_> {
    /// Simulated minutes at the start of this tick.
    pub fn time(&self) -> f32 {
        self.clock.time() as f32
    }

    /// The mechanics (and fate) step, minutes: `mechanics_every` ticks.
    pub fn mechanics_dt(&self) -> f32 {
        self.clock.dt * self.settings.mechanics_every as f32
    }

    /// The cell-state (respond) step, minutes: `state_every` ticks.
    pub fn state_dt(&self) -> f32 {
        self.clock.dt * self.settings.state_every as f32
    }

    /// Whether mechanics and fate run at this tick.
    pub fn mechanics_due(&self) -> bool {
        self.clock.tick.is_multiple_of(self.settings.mechanics_every)
    }

    /// Whether the response model runs at this tick.
    pub fn state_due(&self) -> bool {
        self.clock.tick.is_multiple_of(self.settings.state_every)
    }
}

/// Run condition of every stage: no stage has failed in this tick.
fn no_failure(failure: Res<Failure>) -> bool {
    failure.0.is_none()
}

/// Run condition of mechanics and fate: every `mechanics_every` ticks.
fn mechanics_due(ctx: TickContext) -> bool {
    ctx.mechanics_due()
}

/// Run condition of respond: every `state_every` ticks.
fn state_due(ctx: TickContext) -> bool {
    ctx.state_due()
}

/// Run condition of sense: whenever mechanics or the response model will read the
/// neighbours and signals it finds.
fn sense_due(ctx: TickContext) -> bool {
    ctx.mechanics_due() || ctx.state_due()
}

/// Run condition of perturb: the scene plans perturbations.
fn perturbations_planned(ctx: TickContext) -> bool {
    !ctx.settings.perturbations.is_empty()
}

/// When the running stage began (set by [`start_stage`], read by [`stop_stage`]).
#[derive(Resource, Debug, Clone, Copy)]
pub(crate) struct StageStart(pub Instant);

impl Default for StageStart {
    fn default() -> Self {
        Self(Instant::now())
    }
}

/// The first system of every stage's set: note the time.
fn start_stage(mut start: ResMut<StageStart>) {
    start.0 = Instant::now();
}

/// The last system of `stage`'s set: add the time since [`start_stage`] to its timer.
fn stop_stage(stage: Stage) -> impl FnMut(Res<StageStart>, ResMut<StageTimers>) {
    move |start, mut timers| timers.add(stage, start.0.elapsed())
}

/// Add `body` to `stage`'s set, between the systems that time it.
fn add_stage<M>(schedule: &mut Schedule, stage: Stage, body: impl IntoScheduleConfigs<ScheduleSystem, M>) {
    schedule.add_systems((start_stage, body, stop_stage(stage)).chain().in_set(stage));
}

/// The schedule of one tick: the stages of [`Stage`] in order, single-threaded (the
/// stages parallelise inside with rayon), each skipped once a failure is recorded and
/// run at its own cadence.
pub(crate) fn tick() -> Schedule {
    let mut schedule = Schedule::default();
    schedule.set_executor(SingleThreadedExecutor::new());
    schedule.configure_sets(
        (
            Stage::Secrete,
            Stage::Diffuse,
            Stage::Sense,
            Stage::Respond,
            Stage::Perturb,
            Stage::Mechanics,
            Stage::Fate,
            Stage::Record,
        )
            .chain(),
    );
    for stage in Stage::ALL {
        schedule.configure_sets(stage.run_if(no_failure));
    }
    schedule.configure_sets(Stage::Sense.run_if(sense_due));
    schedule.configure_sets(Stage::Respond.run_if(state_due));
    schedule.configure_sets(Stage::Perturb.run_if(perturbations_planned));
    schedule.configure_sets(Stage::Mechanics.run_if(mechanics_due));
    schedule.configure_sets(Stage::Fate.run_if(mechanics_due));
    add_stage(&mut schedule, Stage::Secrete, stages::secrete);
    add_stage(&mut schedule, Stage::Diffuse, stages::diffuse);
    // A channel clamp (`explant explain`) overwrites the signals sense found, before respond reads them.
    add_stage(&mut schedule, Stage::Sense, (stages::sense, clamp::apply_clamp).chain());
    add_stage(&mut schedule, Stage::Respond, stages::respond);
    add_stage(&mut schedule, Stage::Perturb, stages::perturb);
    add_stage(&mut schedule, Stage::Mechanics, mechanics::mechanics);
    add_stage(&mut schedule, Stage::Fate, life::fate);
    add_stage(
        &mut schedule,
        Stage::Record,
        (
            stages::advance_clock,
            // A field kept on the device comes back to the host to be recorded.
            sync_host.run_if(recording::record_due),
            recording::record.run_if(recording::record_due),
        )
            .chain(),
    );
    schedule
}
