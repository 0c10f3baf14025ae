//! ParaView files of a run (`explant export RUN_DIR --vtk`):
//!
//! - the cells of a snapshot as a VTK XML unstructured grid (`.vtu`): one point and one
//!   `VTK_VERTEX` cell per cell, at its centre (µm), with point data `radius` (µm),
//!   `cell_type` (the index into the run's cell types, `obs['cell_type']`'s categories,
//!   which a comment at the top of the grid spells out: `<!-- cell_type: 0 = tumour, ... -->`), `cell_id` (the lineage id; −1 when the name is not a number) and
//!   one array per gene named by the gene;
//! - the ligand fields of a snapshot as a legacy VTK structured-points file (`.vtk`):
//!   one point per voxel, at its centre, one scalar array per ligand;
//! - a `.pvd` collection per kind that lists the files with their time in minutes, so
//!   ParaView plays them as a time series.
//!
//! Numbers are written in binary by default ([`VtkEncoding::Binary`]: the `.vtu` arrays
//! as VTK's inline base64 of a UInt64 byte count followed by the little-endian values,
//! the legacy `.vtk` as `BINARY` big-endian floats), about half the size of ASCII and
//! quicker to read; or as ASCII ([`VtkEncoding::Ascii`]) in Rust's shortest round-trip
//! form (NaN written `nan`). Either way a reader gets back the float32 values bit for
//! bit. Every file is written to a temporary file and renamed into place.

use std::fmt::Write as _;
use std::path::Path;

use crate::IoError;
use crate::atomic::write_atomically;
use crate::plot::escape as xml_escape;
use crate::read::{RunSnapshot, SnapshotFields};
use crate::report::base64;

/// How numbers are stored in the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VtkEncoding {
    /// Base64 (`.vtu`) and raw big-endian (`.vtk`) binary.
    #[default]
    Binary,
    /// Text.
    Ascii,
}

/// A number array as it goes into a file: its VTK type name and values.
enum Values<'a> {
    F32(&'a mut dyn Iterator<Item = f32>),
    I32(&'a mut dyn Iterator<Item = i32>),
    I64(&'a mut dyn Iterator<Item = i64>),
    U8(&'a mut dyn Iterator<Item = u8>),
}

/// Values separated by spaces, 12 to a line.
fn numbers<T: std::fmt::Display>(values: impl Iterator<Item = T>) -> String {
    let mut s = String::new();
    for (k, v) in values.enumerate() {
        s.push(if k % 12 == 0 { '\n' } else { ' ' });
        let _ = write!(s, "{v}");
    }
    s.push('\n');
    s
}

/// `f32` as VTK's ASCII readers take it (`nan`, `inf`, `-inf` for the non-finite).
fn float(v: f32) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{v}")
    }
}

/// One `<DataArray>` with attributes `attrs` holding `values`, in `encoding`.
fn data_array(s: &mut String, attrs: &str, values: Values<'_>, encoding: VtkEncoding) {
    let (ty, body) = match encoding {
        VtkEncoding::Ascii => match values {
            Values::F32(v) => ("Float32", numbers(v.map(float))),
            Values::I32(v) => ("Int32", numbers(v)),
            Values::I64(v) => ("Int64", numbers(v)),
            Values::U8(v) => ("UInt8", numbers(v)),
        },
        VtkEncoding::Binary => {
            let mut raw: Vec<u8> = vec![0; 8];
            let ty = match values {
                Values::F32(v) => {
                    v.for_each(|x| raw.extend_from_slice(&x.to_le_bytes()));
                    "Float32"
                }
                Values::I32(v) => {
                    v.for_each(|x| raw.extend_from_slice(&x.to_le_bytes()));
                    "Int32"
                }
                Values::I64(v) => {
                    v.for_each(|x| raw.extend_from_slice(&x.to_le_bytes()));
                    "Int64"
                }
                Values::U8(v) => {
                    raw.extend(v);
                    "UInt8"
                }
            };
            let len = (raw.len() - 8) as u64;
            raw[..8].copy_from_slice(&len.to_le_bytes());
            (ty, format!("\n{}\n", base64(&raw)))
        }
    };
    let format = if encoding == VtkEncoding::Ascii { "ascii" } else { "binary" };
    let _ = writeln!(s, "<DataArray type=\"{ty}\" {attrs} format=\"{format}\">{body}</DataArray>");
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    write_atomically(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|source| IoError::Io { path: tmp.to_path_buf(), source })
    })
}

/// Write the cells of `snap` to `path` as a `.vtu` file (module docs).
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_cells_vtu(path: &Path, snap: &RunSnapshot, encoding: VtkEncoding) -> Result<(), IoError> {
    let n = snap.cells;
    let g = snap.genes.len();
    let mut s = String::new();
    s.push_str("<?xml version=\"1.0\"?>\n");
    s.push_str(
        "<VTKFile type=\"UnstructuredGrid\" version=\"1.0\" byte_order=\"LittleEndian\" header_type=\"UInt64\">\n",
    );
    s.push_str("<UnstructuredGrid>\n");
    // The type names, so a reader can map `cell_type` back to words (a comment: meshio
    // and older VTK readers refuse string arrays).
    let names: Vec<String> = snap.cell_type_names.iter().map(|n| n.replace("--", "- -")).collect();
    let _ = writeln!(
        s,
        "<!-- cell_type: {} -->",
        names.iter().enumerate().map(|(k, n)| format!("{k} = {n}")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(s, "<Piece NumberOfPoints=\"{n}\" NumberOfCells=\"{n}\">");
    let _ = writeln!(s, "<PointData Scalars=\"radius\">");
    let e = encoding;
    let radii = snap.radii.clone().unwrap_or_else(|| vec![f32::NAN; n]);
    data_array(&mut s, "Name=\"radius\"", Values::F32(&mut radii.iter().copied()), e);
    data_array(&mut s, "Name=\"cell_type\"", Values::I32(&mut snap.cell_types.iter().map(|&t| t as i32)), e);
    let mut ids = snap.obs_names.iter().map(|id| id.parse::<i64>().unwrap_or(-1));
    data_array(&mut s, "Name=\"cell_id\"", Values::I64(&mut ids), e);
    for (k, gene) in snap.genes.iter().enumerate() {
        let mut values = (0..n).map(|i| snap.expression[i * g + k]);
        data_array(&mut s, &format!("Name=\"{}\"", xml_escape(gene)), Values::F32(&mut values), e);
    }
    s.push_str("</PointData>\n<Points>\n");
    let mut coords = snap.positions.iter().flat_map(|p| p.iter().copied());
    data_array(&mut s, "NumberOfComponents=\"3\"", Values::F32(&mut coords), e);
    s.push_str("</Points>\n<Cells>\n");
    data_array(&mut s, "Name=\"connectivity\"", Values::I64(&mut (0..n as i64)), e);
    data_array(&mut s, "Name=\"offsets\"", Values::I64(&mut (1..=n as i64)), e);
    data_array(&mut s, "Name=\"types\"", Values::U8(&mut std::iter::repeat_n(1u8, n)), e);
    s.push_str("</Cells>\n</Piece>\n</UnstructuredGrid>\n</VTKFile>\n");
    write_file(path, s.as_bytes())
}

/// Write the ligand fields to `path` as a legacy `.vtk` structured-points file (module
/// docs); `title` goes on its second line (one line, at most 255 characters).
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_fields_vtk(
    path: &Path,
    fields: &SnapshotFields,
    title: &str,
    encoding: VtkEncoding,
) -> Result<(), IoError> {
    let grid = &fields.grid;
    let voxels = grid.voxels();
    let mut s = String::new();
    s.push_str("# vtk DataFile Version 3.0\n");
    let title: String = title.chars().filter(|c| *c != '\n').take(255).collect();
    let _ = writeln!(s, "{title}");
    s.push_str(if encoding == VtkEncoding::Ascii { "ASCII\n" } else { "BINARY\n" });
    s.push_str("DATASET STRUCTURED_POINTS\n");
    let _ = writeln!(s, "DIMENSIONS {} {} {}", grid.nx, grid.ny, grid.nz);
    let half = grid.dx / 2.0;
    let z0 = if grid.nz == 1 { grid.origin[2] } else { grid.origin[2] + half };
    let _ = writeln!(s, "ORIGIN {} {} {}", grid.origin[0] + half, grid.origin[1] + half, z0);
    let _ = writeln!(s, "SPACING {} {} {}", grid.dx, grid.dx, grid.dx);
    let _ = writeln!(s, "POINT_DATA {voxels}");
    let mut bytes = s.into_bytes();
    for (c, name) in fields.names.iter().enumerate() {
        // Legacy names end at white space.
        let name: String = name.chars().map(|ch| if ch.is_whitespace() { '_' } else { ch }).collect();
        bytes.extend_from_slice(format!("SCALARS {name} float 1\nLOOKUP_TABLE default\n").as_bytes());
        let values = &fields.data[c * voxels..(c + 1) * voxels];
        match encoding {
            VtkEncoding::Ascii => {
                bytes.extend_from_slice(numbers(values.iter().map(|&v| float(v))).trim_start().as_bytes());
            }
            VtkEncoding::Binary => {
                values.iter().for_each(|v| bytes.extend_from_slice(&v.to_be_bytes()));
                bytes.push(b'\n');
            }
        }
    }
    write_file(path, &bytes)
}

/// Write a `.pvd` collection of `files` (name relative to the `.pvd`, time in minutes).
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_pvd(path: &Path, files: &[(String, f64)]) -> Result<(), IoError> {
    let mut s = String::from("<?xml version=\"1.0\"?>\n<VTKFile type=\"Collection\" version=\"0.1\">\n<Collection>\n");
    for (file, time) in files {
        let _ = writeln!(s, "<DataSet timestep=\"{time}\" group=\"\" part=\"0\" file=\"{}\"/>", xml_escape(file));
    }
    s.push_str("</Collection>\n</VTKFile>\n");
    write_file(path, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_names_are_escaped() {
        let v = [0.1f32, 1.0 / 3.0, -2.5e-7, f32::NAN];
        let text = numbers(v.iter().map(|&x| float(x)));
        let back: Vec<f32> = text.split_whitespace().map(|t| t.parse().unwrap()).collect();
        assert_eq!(back[..3], v[..3]);
        assert!(back[3].is_nan());
        assert_eq!(xml_escape("A<&\"B"), "A&lt;&amp;&quot;B", "attribute values are escaped");
    }
}
