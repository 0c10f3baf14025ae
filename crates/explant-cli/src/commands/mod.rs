//! One module per subcommand.

pub mod bench;
pub mod check;
pub mod eval;
pub mod model;
pub mod render;
pub mod report;
pub mod run;
pub mod sweep;
