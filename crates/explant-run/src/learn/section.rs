//! Reading a spatial section for `explant learn`: positions, cell types, the gene panel
//! (named genes, or the most variable ones) and its expression, normalised; and the
//! ligand–receptor pairs the panel holds.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use explant_io::{Coordinates, ImportRequest, read_tissue, read_var_names};

use crate::RunError;

/// Genes read from the file at a time while ranking the whole transcriptome.
const GENE_CHUNK: usize = 2048;

/// Which genes the model covers.
#[derive(Debug, Clone, PartialEq)]
pub enum GenePanel {
    /// These genes, in this order.
    Names(Vec<String>),
    /// The `n` genes of highest variance after normalisation.
    MostVariable(usize),
}

/// How the stored values are turned into the expression the model sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Normalise {
    /// Counts (every value a non-negative integer) are normalised to 10⁴ per cell and
    /// log1p-transformed; anything else is taken as already normalised.
    #[default]
    Auto,
    /// Always normalise to 10⁴ per cell and take log1p.
    Log1p,
    /// Use the values as stored.
    None,
}

/// A section read for learning: `cells` rows in the file's order.
#[derive(Debug, Clone)]
pub struct Section {
    /// The file.
    pub path: PathBuf,
    /// Number of cells or spots.
    pub cells: usize,
    /// Positions in µm (the file's coordinates times the scale), `z = 0` in 2D.
    pub positions: Vec<[f32; 3]>,
    /// 2 or 3.
    pub dims: usize,
    /// Each cell's label in the cell type column, as stored.
    pub labels: Vec<String>,
    /// The gene panel, in model order (as spelled in the file).
    pub genes: Vec<String>,
    /// Expression of the panel, `cells × genes` row-major, normalised.
    pub expression: Vec<f32>,
    /// What normalisation was applied, in words.
    pub transform: String,
    /// Genes in the file.
    pub genes_in_file: usize,
}

/// What to read.
#[derive(Debug, Clone)]
pub struct SectionRequest<'a> {
    /// The `.h5ad` file.
    pub path: &'a Path,
    /// Where the coordinates are.
    pub coordinates: Coordinates,
    /// `obs` column of the cell types.
    pub cell_type_key: &'a str,
    /// µm per coordinate unit.
    pub scale: f32,
    /// The panel before ligand–receptor genes are added.
    pub panel: &'a GenePanel,
    /// Genes added to the panel (from ligand–receptor pairs), in order.
    pub extra: &'a [String],
    /// Normalisation.
    pub normalise: Normalise,
}

/// Per-gene statistics of the whole file after normalisation, for ranking genes and
/// choosing ligand–receptor pairs.
#[derive(Debug, Clone, Default)]
pub struct GeneStats {
    /// Gene names, file order.
    pub names: Vec<String>,
    /// Mean of the normalised expression.
    pub mean: Vec<f64>,
    /// Variance of the normalised expression.
    pub variance: Vec<f64>,
}

fn option(option: &str, message: String) -> RunError {
    RunError::Option { option: option.into(), message }
}

fn io(path: &Path) -> impl Fn(explant_io::IoError) -> RunError + '_ {
    move |e| RunError::Invalid(format!("section `{}`: {}", path.display(), crate::error_chain(&e)))
}

/// Read `genes` of the file (positions and labels too), unnormalised.
fn read_genes(
    req: &SectionRequest<'_>,
    genes: &[String],
    labels: bool,
) -> Result<explant_io::ImportedTissue, RunError> {
    let dims = match &req.coordinates {
        Coordinates::ObsColumns(c) => c.len(),
        Coordinates::Obsm(_) => 2,
    };
    let request = ImportRequest {
        coordinates: req.coordinates.clone(),
        cell_type_column: labels.then(|| req.cell_type_key.to_string()),
        genes,
        dims,
    };
    read_tissue(req.path, &request).map_err(io(req.path))
}

/// Whether every value is a non-negative whole number (raw counts).
fn looks_like_counts(values: &[f32]) -> bool {
    values.iter().all(|&v| v >= 0.0 && v.fract() == 0.0) && values.iter().any(|&v| v > 0.0)
}

/// Totals per cell over every gene, and per-gene mean and variance after normalisation.
fn scan(req: &SectionRequest<'_>, var: &[String], log1p: bool) -> Result<(Vec<f64>, GeneStats), RunError> {
    let mut totals: Vec<f64> = Vec::new();
    if log1p {
        for chunk in var.chunks(GENE_CHUNK) {
            let t = read_genes(req, chunk, false)?;
            totals.resize(t.cells, 0.0);
            for (i, row) in t.expression.chunks(chunk.len()).enumerate() {
                totals[i] += row.iter().map(|&v| f64::from(v)).sum::<f64>();
            }
        }
    }
    let mut stats = GeneStats { names: var.to_vec(), ..Default::default() };
    for chunk in var.chunks(GENE_CHUNK) {
        let t = read_genes(req, chunk, false)?;
        let n = t.cells.max(1) as f64;
        let mut sum = vec![0.0f64; chunk.len()];
        let mut sq = vec![0.0f64; chunk.len()];
        for (i, row) in t.expression.chunks(chunk.len()).enumerate() {
            for (k, &v) in row.iter().enumerate() {
                let y = transform(f64::from(v), totals.get(i).copied(), log1p);
                sum[k] += y;
                sq[k] += y * y;
            }
        }
        for k in 0..chunk.len() {
            let m = sum[k] / n;
            stats.mean.push(m);
            stats.variance.push((sq[k] / n - m * m).max(0.0));
        }
    }
    Ok((totals, stats))
}

fn transform(v: f64, total: Option<f64>, log1p: bool) -> f64 {
    match (log1p, total) {
        (true, Some(t)) if t > 0.0 => (v / t * 1e4).ln_1p(),
        (true, _) => 0.0,
        (false, _) => v,
    }
}

/// Read the section: the panel's expression (normalised), positions in µm and labels;
/// and the statistics of every gene when the panel is chosen by variance.
///
/// # Errors
///
/// When the file cannot be read, a named gene is not in it (with the closest name), the
/// panel is empty, or the cell type column or coordinates are missing.
pub fn read_section(req: &SectionRequest<'_>) -> Result<(Section, Option<GeneStats>), RunError> {
    let var = read_var_names(req.path).map_err(io(req.path))?;
    if var.is_empty() {
        return Err(RunError::Invalid(format!("section `{}` has no genes (`var` is empty)", req.path.display())));
    }
    // Normalisation: decided on a sample of the file's values.
    let sample = read_genes(req, &var[..var.len().min(GENE_CHUNK)], false)?;
    let counts = looks_like_counts(&sample.expression);
    let log1p = match req.normalise {
        Normalise::Auto => counts,
        Normalise::Log1p => true,
        Normalise::None => false,
    };
    let need_scan = log1p || matches!(req.panel, GenePanel::MostVariable(_));
    let (totals, stats) = if need_scan {
        let (t, s) = scan(req, &var, log1p)?;
        (t, Some(s))
    } else {
        (Vec::new(), None)
    };
    let lower: HashMap<String, usize> = var.iter().enumerate().rev().map(|(i, v)| (v.to_lowercase(), i)).collect();
    let find = |name: &str| var.iter().position(|v| v == name).or_else(|| lower.get(&name.to_lowercase()).copied());
    let mut genes: Vec<String> = Vec::new();
    match req.panel {
        GenePanel::Names(names) => {
            for name in names {
                let Some(k) = find(name) else {
                    return Err(option(
                        "--genes",
                        format!(
                            "gene `{name}` is not in `{}` ({} genes){}",
                            req.path.display(),
                            var.len(),
                            explant_scene::suggest(name, &var)
                        ),
                    ));
                };
                genes.push(var[k].clone());
            }
        }
        GenePanel::MostVariable(n) => {
            let s = stats.as_ref().expect("scanned for a variance panel");
            let mut order: Vec<usize> = (0..var.len()).filter(|&k| s.variance[k] > 0.0).collect();
            order.sort_by(|&a, &b| s.variance[b].total_cmp(&s.variance[a]).then(a.cmp(&b)));
            genes.extend(order.into_iter().take(*n).map(|k| var[k].clone()));
        }
    }
    for e in req.extra {
        if let Some(k) = find(e) {
            genes.push(var[k].clone());
        }
    }
    let mut seen = BTreeSet::new();
    genes.retain(|g| seen.insert(g.clone()));
    if genes.is_empty() {
        return Err(option("--genes", "the gene panel is empty (no gene of the file varies)".into()));
    }
    let read = read_genes(req, &genes, true)?;
    let g = genes.len();
    let mut expression = read.expression;
    if log1p {
        for (i, row) in expression.chunks_mut(g).enumerate() {
            for v in row {
                *v = transform(f64::from(*v), totals.get(i).copied(), true) as f32;
            }
        }
    }
    let dims = match &req.coordinates {
        Coordinates::ObsColumns(c) => c.len(),
        Coordinates::Obsm(_) => 2,
    };
    let positions = read.positions.iter().map(|p| [p[0] * req.scale, p[1] * req.scale, p[2] * req.scale]).collect();
    let transform = if log1p {
        format!("log1p of counts per 10⁴ ({})", if counts { "the file holds counts" } else { "asked for" })
    } else if counts {
        "as stored (counts, not normalised: `--normalise none`)".into()
    } else {
        "as stored (the file's values are not whole counts, so taken as already normalised)".into()
    };
    Ok((
        Section {
            path: req.path.to_path_buf(),
            cells: read.cells,
            positions,
            dims,
            labels: read.cell_types.unwrap_or_default(),
            genes,
            expression,
            transform,
            genes_in_file: var.len(),
        },
        stats,
    ))
}

/// A ligand–receptor pair of single genes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LrPair {
    /// The ligand's gene.
    pub ligand: String,
    /// The receptor's gene.
    pub receptor: String,
}

/// What [`read_lr_table`] kept and left out.
#[derive(Debug, Clone, Default)]
pub struct LrTable {
    /// Single-gene pairs, in file order, without duplicates.
    pub pairs: Vec<LrPair>,
    /// Pairs left out because the ligand or receptor is a complex (`A_B`).
    pub complexes: usize,
    /// Which rows were kept, in words (e.g. `resource == "consensus"`).
    pub filter: String,
}

/// Read a ligand–receptor table: a CSV with columns `ligand` and `receptor`, or
/// `source_genesymbol` and `target_genesymbol` (OmniPath/LIANA); where a `resource`
/// column exists and has `consensus` rows, only those. Complexes (subunits joined with
/// `_`) are left out: the engine's receptor is one gene.
///
/// # Errors
///
/// When the file cannot be read or has neither pair of columns.
pub fn read_lr_table(path: &Path) -> Result<LrTable, RunError> {
    let bad = |message: String| option("--lr", format!("`{}`: {message}", path.display()));
    let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |names: &[&str]| names.iter().find_map(|n| headers.iter().position(|h| h == *n));
    let (Some(l), Some(r)) = (col(&["ligand", "source_genesymbol"]), col(&["receptor", "target_genesymbol"])) else {
        return Err(bad(format!(
            "needs columns `ligand` and `receptor` (or `source_genesymbol` and `target_genesymbol`); it has {}",
            headers.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", ")
        )));
    };
    let resource = col(&["resource"]);
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().map_err(|e| bad(e.to_string()))?;
    let consensus = resource.is_some_and(|c| rows.iter().any(|r| r.get(c) == Some("consensus")));
    let mut out = LrTable {
        filter: if consensus { "rows with `resource == \"consensus\"`".into() } else { "every row".into() },
        ..Default::default()
    };
    let mut seen = BTreeSet::new();
    for row in &rows {
        if consensus && resource.and_then(|c| row.get(c)) != Some("consensus") {
            continue;
        }
        let (Some(lig), Some(rec)) = (row.get(l).map(str::trim), row.get(r).map(str::trim)) else { continue };
        if lig.is_empty() || rec.is_empty() {
            continue;
        }
        if lig.contains('_') || rec.contains('_') {
            out.complexes += 1;
            continue;
        }
        let pair = LrPair { ligand: lig.to_string(), receptor: rec.to_string() };
        if seen.insert(pair.clone()) {
            out.pairs.push(pair);
        }
    }
    Ok(out)
}
