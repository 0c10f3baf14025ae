//! Initial ligand fields: uniform, a region, or a NumPy `.npy` file.

use std::path::Path;

use explant_field::{Field, Grid};
use explant_scene::{Initial, Scene};

use crate::CoreError;

/// The field at time 0 for every ligand of the scene.
pub(crate) fn field(scene: &Scene, grid: Grid) -> Result<Field, CoreError> {
    let mut field = Field::zeros(grid, scene.ligands.len());
    for (c, l) in scene.ligands.iter().enumerate() {
        let values = field.channel_mut(c);
        match &l.initial {
            Initial::Uniform { value } => values.fill(*value),
            Initial::Region { shape, value, background } => {
                for z in 0..grid.nz {
                    for y in 0..grid.ny {
                        for x in 0..grid.nx {
                            let inside = shape.contains(grid.centre(x, y, z));
                            values[(z * grid.ny + y) * grid.nx + x] = if inside { *value } else { *background };
                        }
                    }
                }
            }
            Initial::File { path } => {
                let err = |message: String| CoreError::Initial { ligand: l.name.clone(), path: path.clone(), message };
                let (shape, data) = read_npy(path).map_err(err)?;
                let want: Vec<usize> =
                    if grid.nz == 1 { vec![grid.ny, grid.nx] } else { vec![grid.nz, grid.ny, grid.nx] };
                if shape != want {
                    return Err(err(format!("array shape is {shape:?}, but the grid needs {want:?} ([nz,] ny, nx)")));
                }
                if let Some(i) = data.iter().position(|v| !v.is_finite() || *v < 0.0) {
                    return Err(err(format!("element {i} is `{}`; concentrations must be finite and ≥ 0", data[i])));
                }
                values.copy_from_slice(&data);
            }
        }
    }
    Ok(field)
}

/// Read a C-order little-endian float32 or float64 NumPy array (format versions 1–3).
pub(crate) fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f32>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a NumPy `.npy` file (no `\\x93NUMPY` magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("unsupported `.npy` format version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or unreadable header")?;
    let field = |key: &str| -> Result<&str, String> {
        let at = header.find(&format!("'{key}'")).ok_or(format!("header has no `{key}`"))?;
        let rest = &header[at + key.len() + 2..];
        Ok(rest.trim_start().trim_start_matches(':').trim_start())
    };
    let descr = field("descr")?;
    let width = if descr.starts_with("'<f4'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        return Err(format!(
            "dtype {} is not supported; save float32 or float64",
            descr.split(',').next().unwrap_or("?")
        ));
    };
    if field("fortran_order")?.starts_with("True") {
        return Err("Fortran-ordered arrays are not supported; save with C order".into());
    }
    let shape_text = field("shape")?;
    let inner = shape_text.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or("malformed `shape`")?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("malformed `shape` entry `{s}`")))
        .collect::<Result<_, _>>()?;
    let count: usize = shape.iter().product();
    let body = &bytes[start + header_len..];
    if body.len() != count * width {
        return Err(format!("expected {count} values of {width} bytes, found {} bytes of data", body.len()));
    }
    let data = if width == 4 {
        body.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    } else {
        body.chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect()
    };
    Ok((shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn reads_float32_and_float64_arrays() {
        let dir = std::env::temp_dir().join(format!("explant-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        let body: Vec<u8> = [1.5f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&p, npy("<f4", "(2, 3)", &body)).unwrap();
        assert_eq!(read_npy(&p).unwrap(), (vec![2, 3], vec![1.5, 2.0, 3.0, 4.0, 5.0, 6.0]));
        let body: Vec<u8> = [0.25f64, 7.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&p, npy("<f8", "(1, 2)", &body)).unwrap();
        assert_eq!(read_npy(&p).unwrap(), (vec![1, 2], vec![0.25, 7.0]));
        std::fs::write(&p, npy("<i8", "(1, 2)", &body)).unwrap();
        assert!(read_npy(&p).unwrap_err().contains("not supported"));
        std::fs::write(&p, npy("<f8", "(3, 2)", &body)).unwrap();
        assert!(read_npy(&p).unwrap_err().contains("expected 6 values"));
        std::fs::write(&p, b"hello").unwrap();
        assert!(read_npy(&p).unwrap_err().contains("not a NumPy"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
