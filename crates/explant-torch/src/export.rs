//! `explant eval --export DIR`: the cells behind every score, in the input format of the
//! field's scorer, `cell-eval` (Arc Institute; `cell-eval run -ar real.h5ad -ap
//! pred_<predictor>.h5ad`).
//!
//! For each group of cells of `explant eval` (the knocked-out cells, each distance band,
//! the far cells) one folder holds `real.h5ad` (the teacher's cells) and one
//! `pred_<predictor>.h5ad` per predictor: single cells, `obs['target_gene']` the held-out
//! gene knocked out in the cell's run or `non-targeting` for a control cell,
//! `obs['celltype']`, `obs['cell_id']` (the cell's id in its run), genes as `var_names`,
//! and the expression in `X` as float64.
//!
//! The cells of a knockout are those `explant eval` scores: the group's cells of that
//! knockout's run that have a control twin (the same id in the unperturbed run). The
//! control cells are the twins of the group's cells over all held-out knockouts, each
//! once: `cell-eval` compares every perturbation with one control population, where
//! `explant eval` compares each knockout's cells with exactly their own twins. The two
//! agree where each knockout's twins are that whole population (typically the
//! knocked-out cells, when the knockouts do not change who divides) and differ where they
//! are not (a band holds different cells in different knockouts' runs). [`Export::scores`]
//! gives explant's scores both ways, per knockout: `pooled` on exactly the cells of the
//! files (what `cell-eval` must reproduce), and `paired` as `explant eval` reports them.

use std::path::{Path, PathBuf};

use explant_core::CellTable;
use explant_core::effects::match_ids;
use explant_core::score::{Response, de_overlap, discrimination, mae, pearson};
use explant_scene::Scene;

use crate::TorchError;
use crate::eval::{Runs, group_names, group_of, row};

/// The label of control cells in `obs['target_gene']` (`cell-eval`'s default).
pub const CONTROL_LABEL: &str = "non-targeting";

/// Cells of one run set (the truth's or a predictor's) in one group.
#[derive(Debug, Clone, Default)]
pub struct CellSet {
    /// Per cell: index into [`Export::labels`] (a held-out gene, or `non-targeting`).
    pub target: Vec<u32>,
    /// Per cell: index into [`Export::cell_types`].
    pub cell_types: Vec<u32>,
    /// Per cell: its id in its run.
    pub ids: Vec<u64>,
    /// `N × G` expression, row-major.
    pub expression: Vec<f64>,
}

/// One group's cells: the truth's and each predictor's.
#[derive(Debug, Clone)]
pub struct GroupExport {
    /// The group as `explant eval` names it (`perturbed`, `0-15 um`, `far (>= 30 um)`).
    pub group: String,
    /// Its folder in the export (`perturbed`, `band-0-15um`, `far-30um`).
    pub folder: String,
    /// The teacher's cells (`real.h5ad`).
    pub real: CellSet,
    /// Each predictor's cells (`pred_<name>.h5ad`), where it has cells for every knockout.
    pub predictions: Vec<(String, CellSet)>,
}

/// explant's scores of one predictor for one held-out knockout in one group.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportScore {
    /// The group's folder.
    pub folder: String,
    /// The group as `explant eval` names it.
    pub group: String,
    /// The predictor.
    pub predictor: String,
    /// The held-out gene.
    pub perturbation: String,
    /// `pooled` (against all the group's control cells, as in the files and in
    /// `cell-eval`) or `paired` (against each cell's own twin, as `explant eval`).
    pub control: &'static str,
    /// Control cells compared with.
    pub control_cells: usize,
    /// MAE of the pseudobulk (`cell-eval`'s `mae`).
    pub mae: f64,
    /// Pearson correlation of the deltas (`pearson_delta`).
    pub pearson_delta: f64,
    /// Discrimination score, L1, target gene left out (`discrimination_score_l1`).
    pub pds: f64,
    /// DE overlap (`overlap_at_N`).
    pub de_overlap: f64,
}

/// Every group's cells, and explant's scores on them.
#[derive(Debug, Clone)]
pub struct Export {
    /// Gene names (`var_names`).
    pub genes: Vec<String>,
    /// Cell type names (categories of `obs['celltype']`).
    pub cell_types: Vec<String>,
    /// The held-out genes, then `non-targeting` (categories of `obs['target_gene']`).
    pub labels: Vec<String>,
    /// One entry per group where the truth has cells for every held-out knockout.
    pub groups: Vec<GroupExport>,
    /// explant's scores per group, predictor and knockout, pooled and paired.
    pub scores: Vec<ExportScore>,
}

/// One run set's cells in one group: per knockout, (perturbed-run row, control row)
/// pairs; and the pooled control rows (each twin once, in control order).
struct Selection {
    pairs: Vec<Vec<(usize, usize)>>,
    pool: Vec<usize>,
}

impl Selection {
    /// The cells of group `k` in `runs`; `None` unless every knockout has some.
    fn of(runs: &Runs, bands: &[f32], k: usize) -> Option<Self> {
        let pairs: Vec<Vec<(usize, usize)>> = runs
            .perturbed
            .iter()
            .map(|(t, d)| {
                let groups = group_of(t, d, bands);
                let matched = match_ids(t, &runs.control);
                (0..t.ids.len()).filter(|&i| groups[i] == k).filter_map(|i| matched[i].map(|j| (i, j))).collect()
            })
            .collect::<Vec<Vec<_>>>();
        if pairs.iter().any(Vec::is_empty) {
            return None;
        }
        let mut pool: Vec<usize> = pairs.iter().flatten().map(|c| c.1).collect();
        pool.sort_unstable();
        pool.dedup();
        Some(Self { pairs, pool })
    }

    /// The cells as the files hold them: each knockout's, then the pooled control.
    fn cells(&self, runs: &Runs, g: usize) -> CellSet {
        let mut out = CellSet::default();
        let mut push = |t: &CellTable, i: usize, label: usize| {
            out.target.push(label as u32);
            out.cell_types.push(t.cell_types[i]);
            out.ids.push(t.ids[i]);
            out.expression.extend(row(t, i, g).iter().map(|&v| f64::from(v)));
        };
        for (p, pairs) in self.pairs.iter().enumerate() {
            for &(i, _) in pairs {
                push(&runs.perturbed[p].0, i, p);
            }
        }
        for &j in &self.pool {
            push(&runs.control, j, self.pairs.len());
        }
        out
    }

    /// Per knockout, the response against the pooled control (`pooled`) or against the
    /// twins (`paired`), with the number of control cells.
    fn responses(&self, runs: &Runs, g: usize, pooled: bool) -> Vec<(Response, usize)> {
        let pool: Vec<&[f32]> = self.pool.iter().map(|&j| row(&runs.control, j, g)).collect();
        self.pairs
            .iter()
            .enumerate()
            .filter_map(|(p, pairs)| {
                let cells: Vec<&[f32]> = pairs.iter().map(|c| row(&runs.perturbed[p].0, c.0, g)).collect();
                let twins: Vec<&[f32]> = pairs.iter().map(|c| row(&runs.control, c.1, g)).collect();
                let control = if pooled { &pool } else { &twins };
                Response::of(&cells, control).map(|r| (r, control.len()))
            })
            .collect()
    }
}

impl Export {
    /// The cells of `truth` and of each of `predictors` (named, in table order) under the
    /// held-out knockouts `perturb`, per group, with explant's scores on them. A
    /// predictor without cells for some knockout in a group is left out of that group
    /// (as `explant eval` leaves out its row), and said in `notes`.
    pub(crate) fn new(
        sc: &Scene,
        perturb: &[String],
        truth: &Runs,
        predictors: &[(&str, &Runs)],
        notes: &mut Vec<String>,
    ) -> Self {
        let g = sc.genes.len();
        let bands = &sc.output.distance_bands;
        let targets: Vec<usize> = perturb.iter().map(|x| sc.gene_index(x).unwrap_or(usize::MAX)).collect();
        let mut labels = perturb.to_vec();
        labels.push(CONTROL_LABEL.into());
        let mut groups = Vec::new();
        let mut scores = Vec::new();
        for (k, group) in group_names(bands).into_iter().enumerate() {
            let Some(real_sel) = Selection::of(truth, bands, k) else { continue };
            let folder = folder_name(k, bands);
            let mut predictions = Vec::new();
            for (name, runs) in predictors {
                let Some(sel) = Selection::of(runs, bands, k) else {
                    notes.push(format!(
                        "export: `{name}` has no cells in group `{group}` for some held-out knockout: left out there"
                    ));
                    continue;
                };
                for (control, pooled) in [("pooled", true), ("paired", false)] {
                    let t = real_sel.responses(truth, g, pooled);
                    let p = sel.responses(runs, g, pooled);
                    let truth_d: Vec<Vec<f64>> = t.iter().map(|r| r.0.delta.clone()).collect();
                    let pred_d: Vec<Vec<f64>> = p.iter().map(|r| r.0.delta.clone()).collect();
                    let pds = discrimination(&pred_d, &truth_d, &targets);
                    for (i, gene) in perturb.iter().enumerate() {
                        scores.push(ExportScore {
                            folder: folder.clone(),
                            group: group.clone(),
                            predictor: (*name).to_string(),
                            perturbation: gene.clone(),
                            control,
                            control_cells: p[i].1,
                            mae: mae(&p[i].0.mean, &t[i].0.mean),
                            pearson_delta: pearson(&p[i].0.delta, &t[i].0.delta),
                            pds: pds[i],
                            de_overlap: de_overlap(&t[i].0.de_genes(), &p[i].0.de_genes()),
                        });
                    }
                }
                predictions.push(((*name).to_string(), sel.cells(runs, g)));
            }
            groups.push(GroupExport { group, folder, real: real_sel.cells(truth, g), predictions });
        }
        Self { genes: sc.genes.clone(), cell_types: sc.cell_type_names(), labels, groups, scores }
    }

    /// Write every group's `real.h5ad` and `pred_<predictor>.h5ad` under `dir` (created if
    /// needed), in one folder per group; returns the files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, TorchError> {
        let mut written = Vec::new();
        for group in &self.groups {
            let folder = dir.join(&group.folder);
            std::fs::create_dir_all(&folder).map_err(|source| TorchError::Write { path: folder.clone(), source })?;
            let files = std::iter::once(("real.h5ad".to_string(), &group.real))
                .chain(group.predictions.iter().map(|(name, cells)| (format!("pred_{name}.h5ad"), cells)));
            for (file, cells) in files {
                let path = folder.join(file);
                self.write_cells(&path, cells)?;
                written.push(path);
            }
        }
        Ok(written)
    }

    fn write_cells(&self, path: &Path, cells: &CellSet) -> Result<(), TorchError> {
        let obs_names: Vec<String> =
            cells.target.iter().zip(&cells.ids).map(|(&t, id)| format!("{}:{id}", self.labels[t as usize])).collect();
        let ids: Vec<i64> = cells.ids.iter().map(|&id| id as i64).collect();
        let obs = [
            explant_io::ObsColumn::Category { name: "target_gene", categories: &self.labels, codes: &cells.target },
            explant_io::ObsColumn::Category {
                name: "celltype",
                categories: &self.cell_types,
                codes: &cells.cell_types,
            },
            explant_io::ObsColumn::Int { name: "cell_id", values: &ids },
        ];
        let m = explant_io::CellMatrix {
            obs_names: &obs_names,
            var_names: &self.genes,
            x: &cells.expression,
            obs: &obs,
            explant_version: env!("CARGO_PKG_VERSION"),
        };
        explant_io::write_cell_matrix(path, &m).map_err(|e| TorchError::Io(Box::new(e)))
    }
}

/// The folder of group `k`: `perturbed`, `band-<a>-<b>um`, `far-<last>um`.
fn folder_name(k: usize, bands: &[f32]) -> String {
    if k == 0 {
        "perturbed".into()
    } else if k < bands.len() {
        format!("band-{}-{}um", bands[k - 1], bands[k])
    } else {
        format!("far-{}um", bands.last().copied().unwrap_or(0.0))
    }
}
