//! `explant learn`: a response model learned from a spatial section
//! (`explant_run::learn`), with its held-out table printed.

use anyhow::Result;
use explant_io::Coordinates;
use explant_run::learn::{ContactGenes, GenePanel, LearnOptions, Normalise};

use crate::cli::{LearnArgs, NormaliseChoice};

/// Learn, write the scene and print the held-out table.
pub fn learn(args: LearnArgs) -> Result<()> {
    let genes = match args.genes.trim().parse::<usize>() {
        Ok(0) => anyhow::bail!("option `--genes`: needs at least one gene, got 0"),
        Ok(n) => GenePanel::MostVariable(n),
        Err(_) => {
            GenePanel::Names(args.genes.split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect())
        }
    };
    let coordinates = if args.coords.is_empty() {
        Coordinates::Obsm(args.spatial_key.clone())
    } else {
        Coordinates::ObsColumns(args.coords.clone())
    };
    let contact_genes = match args.contact_genes.trim() {
        "all" => ContactGenes::All,
        "lr" => ContactGenes::LigandReceptor,
        "none" => ContactGenes::None,
        list => {
            ContactGenes::Names(list.split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect())
        }
    };
    let options = LearnOptions {
        section: args.section.clone(),
        out: args.out.clone(),
        cell_type_key: args.cell_type_key.clone(),
        coordinates,
        genes,
        lr: args.lr.clone(),
        lr_pairs: args.lr_pairs,
        scale: args.scale,
        folds: args.folds,
        tau: args.tau,
        ligand_range: args.ligand_range,
        ligand_decay: args.ligand_decay,
        contact_radius: args.contact_radius,
        normalise: match args.normalise {
            NormaliseChoice::Auto => Normalise::Auto,
            NormaliseChoice::Log1p => Normalise::Log1p,
            NormaliseChoice::None => Normalise::None,
        },
        contact_genes,
        intrinsic: !args.no_intrinsic,
        force: args.force,
        threads: args.threads,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        truth: args.truth.clone(),
    };
    let report = explant_run::learn::learn(&options, &mut |phase| eprintln!("learn: {phase}"))?;
    for note in &report.notes {
        println!("{note}");
    }
    println!();
    println!("held-out on {} spatial blocks (every cell predicted by a model that never saw its block):", args.folds);
    println!("{:<18} {:<16} {:>10} {:>10} {:>14}", "model", "genes", "MAE", "mean R²", "MAE / nbr avg");
    for r in &report.heldout {
        println!(
            "{:<18} {:<16} {:>10.4} {:>10.3} {:>14.3}",
            r.model, r.genes, r.mae, r.mean_r2, r.mae_vs_neighbour_average
        );
    }
    let s = &report.steady;
    println!();
    println!(
        "steady state: settled in {} ticks{}; the scene starts {:.4} (MAE) from the section, whose intrinsic offsets \
         average {:.4}; the written scene moves at most {:.2e} in {} ticks",
        s.settle_ticks,
        if s.converged { "" } else { " (NOT converged)" },
        s.mae_from_observed,
        s.intrinsic_mae,
        s.drift,
        s.check_ticks
    );
    if let Some(r) = &report.recovery {
        println!();
        println!("teacher wiring recovered: {} of {} ligand and contact edges", r.recovered, r.edges);
        for d in &r.details {
            println!("  {d}");
        }
    }
    println!();
    println!("wrote {}", args.out.display());
    println!("run it:  explant run {} --out RUN_DIR", args.out.join("scene.toml").display());
    Ok(())
}
