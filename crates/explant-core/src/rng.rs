//! Counter-based random numbers: a value is a pure function of
//! (seed, cell id, tick, purpose), so results do not depend on the order in which
//! threads visit cells. The mixer is SplitMix64's finaliser applied to a combination
//! of the keys (Steele, Lea & Flood 2014).

/// What a random number is for; keeps streams of different uses independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// Initial placement jitter.
    Placement = 1,
    /// Daughter placement at division.
    Division = 2,
    /// Noise in state inheritance.
    Inheritance = 3,
    /// Motility.
    Motility = 4,
    /// Entry into apoptosis or necrosis.
    Death = 5,
    /// Cycle length drawn at birth.
    Cycle = 6,
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64 random bits for the key; `k` numbers per key are drawn with `draw`.
pub fn bits(seed: u64, cell: u64, tick: u64, purpose: Purpose, draw: u64) -> u64 {
    let mut h = mix(seed);
    h = mix(h ^ cell);
    h = mix(h ^ tick);
    h = mix(h ^ purpose as u64);
    mix(h ^ draw)
}

/// A uniform number in [0, 1).
pub fn uniform(seed: u64, cell: u64, tick: u64, purpose: Purpose, draw: u64) -> f64 {
    (bits(seed, cell, tick, purpose, draw) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal number (Box–Muller on draws `2·draw` and `2·draw + 1`).
pub fn normal(seed: u64, cell: u64, tick: u64, purpose: Purpose, draw: u64) -> f64 {
    let u1 = uniform(seed, cell, tick, purpose, 2 * draw).max(f64::MIN_POSITIVE);
    let u2 = uniform(seed, cell, tick, purpose, 2 * draw + 1);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A random unit vector: in the xy plane for `dims == 2`, on the sphere for 3.
pub fn unit_vector(seed: u64, cell: u64, tick: u64, purpose: Purpose, dims: usize) -> glam::Vec3 {
    let phi = std::f64::consts::TAU * uniform(seed, cell, tick, purpose, 100);
    if dims == 2 {
        return glam::Vec3::new(phi.cos() as f32, phi.sin() as f32, 0.0);
    }
    let z = 2.0 * uniform(seed, cell, tick, purpose, 101) - 1.0;
    let r = (1.0 - z * z).max(0.0).sqrt();
    glam::Vec3::new((r * phi.cos()) as f32, (r * phi.sin()) as f32, z as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_range_and_roughly_flat() {
        let n = 20_000;
        let mut hist = [0u32; 10];
        for i in 0..n {
            let u = uniform(1, i, 3, Purpose::Placement, 0);
            assert!((0.0..1.0).contains(&u));
            hist[(u * 10.0) as usize] += 1;
        }
        for h in hist {
            assert!((1800..2200).contains(&h), "{hist:?}");
        }
    }

    #[test]
    fn normal_has_unit_moments() {
        let n = 40_000;
        let xs: Vec<f64> = (0..n).map(|i| normal(5, i, 1, Purpose::Inheritance, 0)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "variance {var}");
    }

    #[test]
    fn unit_vectors_are_unit_and_isotropic() {
        let mut sum = glam::Vec3::ZERO;
        for i in 0..10_000 {
            let v = unit_vector(3, i, 0, Purpose::Division, 3);
            assert!((v.length() - 1.0).abs() < 1e-5);
            sum += v;
            assert_eq!(unit_vector(3, i, 0, Purpose::Division, 2).z, 0.0);
        }
        assert!((sum / 10_000.0).length() < 0.03, "{sum}");
    }

    #[test]
    fn keys_give_independent_streams() {
        let a = bits(1, 2, 3, Purpose::Placement, 0);
        assert_eq!(a, bits(1, 2, 3, Purpose::Placement, 0));
        assert_ne!(a, bits(1, 2, 3, Purpose::Division, 0));
        assert_ne!(a, bits(1, 3, 2, Purpose::Placement, 0));
        assert_ne!(a, bits(2, 2, 3, Purpose::Placement, 0));
    }
}
