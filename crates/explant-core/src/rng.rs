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
    fn keys_give_independent_streams() {
        let a = bits(1, 2, 3, Purpose::Placement, 0);
        assert_eq!(a, bits(1, 2, 3, Purpose::Placement, 0));
        assert_ne!(a, bits(1, 2, 3, Purpose::Division, 0));
        assert_ne!(a, bits(1, 3, 2, Purpose::Placement, 0));
        assert_ne!(a, bits(2, 2, 3, Purpose::Placement, 0));
    }
}
