use thiserror::Error;

/// Errors from building or running a simulation.
///
/// The CLI prints an error and then each cause of its chain, so a message never
/// interpolates an error it also marks as its `#[source]`: the wrapped backend and model
/// errors are `transparent` (their own message, their own causes), the others carry
/// text only.
#[derive(Debug, Error)]
pub enum CoreError {
    /// The diffusion backend failed.
    #[error(transparent)]
    Field(#[from] explant_field::FieldError),
    /// The response model failed or does not fit the scene.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A ligand's initial condition could not be built.
    #[error("ligand `{ligand}`: initial condition from `{}`: {message}", path.display())]
    Initial {
        /// The ligand.
        ligand: String,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The imported tissue does not fit the scene.
    #[error("tissue from `{}`: {message}", path.display())]
    Tissue {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The ligand field is too large for the ADI scheme's source list (u32 indices).
    #[error(
        "grid.scheme = \"adi\": the ligand field has {values} values, more than the 4294967295 the scheme's source list can index; use a coarser grid, fewer ligands or `implicit`"
    )]
    FieldTooLarge {
        /// Values in the field (ligands × voxels).
        values: usize,
    },
    /// A saved state does not fit the scene it is restored into.
    #[error("the checkpoint does not fit the scene: {0}")]
    Checkpoint(String),
    /// The population would grow past the scene's cell limit (`tissue.max_cells`, or the
    /// default derived from the available memory).
    #[error(
        "tick {tick} (t = {time} min): the population would grow to {cells} cells, past {limit}: raise `tissue.max_cells` or make the cells divide less (a cycle as short as a few ticks doubles the population that often)"
    )]
    TooManyCells {
        /// Tick at which the fate stage stopped.
        tick: u64,
        /// Simulated time.
        time: f64,
        /// The population the stage would have made.
        cells: usize,
        /// The limit and where it comes from.
        limit: explant_scene::CellLimit,
    },
    /// A new cell's lineage id (see `explant_core::lineage`) is already held by a living
    /// cell or by another cell made in the same step: two cells would be told apart by
    /// nothing, so the run stops before the step changes anything.
    #[error(
        "tick {tick} (t = {time} min): the id `{id}` of {cell} is already taken by {holder}; lineage ids are 63-bit hashes and two cells hashed alike (a chance of about one in 10^7 for a million births among a million cells): run again with another `seed`"
    )]
    IdCollision {
        /// Tick at which the fate stage stopped.
        tick: u64,
        /// Simulated time.
        time: f64,
        /// The id.
        id: u64,
        /// The new cell, e.g. ``the daughter of cell `17` at generation 2``.
        cell: String,
        /// Who holds it: a living cell, or another new cell of the step.
        holder: String,
    },
    /// A channel clamp (`explant explain`) was given values it cannot use.
    #[error("channel clamp: {0}")]
    Clamp(String),
    /// More neighbour pairs than the neighbour lists' `u32` offsets reach.
    #[error(
        "{pairs} neighbour pairs lie within {radius} µm of each other, more than neighbour lists hold \
         (2^32 − 1): lower `contact.radius` or the number of cells"
    )]
    TooManyPairs {
        /// Pairs found (at least).
        pairs: u64,
        /// The search radius, µm.
        radius: f32,
    },
    /// The state became NaN, infinite or ran away.
    #[error("tick {tick} (t = {time} min): {what}")]
    Unstable {
        /// Tick at which it was detected.
        tick: u64,
        /// Simulated time.
        time: f64,
        /// What was found.
        what: String,
    },
}

/// Errors of a response model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The model's names do not match the scene's.
    #[error("model `{model}` does not fit the scene: {what}")]
    Mismatch {
        /// The model's name or path.
        model: String,
        /// What differs, naming the first missing or misplaced entry.
        what: String,
    },
    /// Running the model failed.
    #[error("model `{model}` failed: {message}")]
    Run {
        /// The model's name or path.
        model: String,
        /// What went wrong.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    /// As the CLI prints it: the message, then each cause.
    fn printed(e: &dyn Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut cause = e.source();
        while let Some(c) = cause {
            out.push(c.to_string());
            cause = c.source();
        }
        out
    }

    #[test]
    fn every_cause_of_an_error_is_printed_once() {
        let errors = [
            CoreError::Field(explant_field::FieldError::BadTimeStep { dt: -1.0 }),
            CoreError::Model(ModelError::Run { model: "m.pt".into(), message: "out of memory".into() }),
            CoreError::Model(ModelError::Mismatch { model: "m.pt".into(), what: "gene `A` is missing".into() }),
            CoreError::Initial { ligand: "L".into(), path: "l.npy".into(), message: "bad shape".into() },
            CoreError::Tissue { path: "t.h5ad".into(), message: "no cells".into() },
            CoreError::Unstable { tick: 3, time: 1.5, what: "expression of gene `A` is `NaN`".into() },
            CoreError::IdCollision {
                tick: 3,
                time: 1.5,
                id: 9,
                cell: "cell 2 of graft `perturbations[0]`".into(),
                holder: "a living cell".into(),
            },
            CoreError::TooManyCells {
                tick: 3,
                time: 1.5,
                cells: 10,
                limit: explant_scene::CellLimit { cells: 5, origin: explant_scene::memory::LimitOrigin::Scene },
            },
        ];
        for e in &errors {
            let lines = printed(e);
            for (k, line) in lines.iter().enumerate() {
                for earlier in &lines[..k] {
                    assert!(!earlier.contains(line.as_str()), "{line:?} is printed twice in {lines:?}");
                }
            }
        }
    }
}
