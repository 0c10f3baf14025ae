//! Lineage-true cell ids: a cell's id is a function of where it sits in the lineage
//! tree, not of the order in which a run happened to make its cells, so a run and its
//! paired control (the same scene and seed without perturbations) give the same id to
//! the same cell, and different ids to different cells, however differently they divide.
//!
//! - A founder (generated or imported) is `0..N` in the order the tissue lists it.
//! - At a division the mother keeps her id, her generation goes up by one, and the
//!   daughter's id is [`daughter_id`]`(mother, g)`, where `g` is the mother's generation
//!   just before the division. A cell's generation rises by exactly one at each of its
//!   divisions, so `(mother, g)` names one division of one cell: the first daughter of
//!   cell 17 born at generation 0 is `daughter_id(17, 0)` in every run that has her.
//! - The `k`-th cell of a graft (the scene's perturbation number `p`) is
//!   [`graft_id`]`(p, k)`, in a namespace of its own: a control has no grafts, so no
//!   cell of it shares an id with a grafted cell or its progeny.
//!
//! Both hashes are SplitMix64's finaliser (Steele, Lea & Flood 2014) over a tag and the
//! two keys, with the top bit cleared: every id fits the signed 64-bit `parent` column
//! and prints as a plain non-negative `obs_names` entry. They do not depend on the seed,
//! the tick, the thread count or the order in which cells are visited.
//!
//! Two different cells could still hash to the same id (a chance of about `n / 2^63` per
//! birth among `n` living cells: one in ten million for a million births into a million
//! cells). The fate stage checks every new id against the living cells and the other
//! new cells of the step before it changes anything, and stops the run with
//! [`crate::CoreError::IdCollision`] when one is taken. It does not resolve the clash by
//! picking another id: the control may not have the other cell, so it would name the
//! newborn differently and pair it with nothing or with the wrong cell, silently.

/// Cleared top bit: ids are below `2^63`.
const MASK: u64 = u64::MAX >> 1;
/// Tags that keep the daughter and graft namespaces apart.
const DAUGHTER: u64 = 0x6461_7567_6874_6572; // "daughter"
const GRAFT: u64 = 0x0000_0067_7261_6674; // "graft"

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash(tag: u64, a: u64, b: u64) -> u64 {
    mix(mix(mix(tag) ^ a) ^ b) & MASK
}

/// The id of the daughter born when cell `mother` divides at generation `generation`
/// (her generation just before the division).
pub fn daughter_id(mother: u64, generation: u32) -> u64 {
    hash(DAUGHTER, mother, u64::from(generation))
}

/// The id of the `k`-th cell added by the scene's perturbation number `perturbation`
/// (a graft).
pub fn graft_id(perturbation: usize, k: usize) -> u64 {
    hash(GRAFT, perturbation as u64, k as u64)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_fit_a_signed_column_and_a_lineage_tree_has_no_repeats() {
        // Four generations of full binary division from 1000 founders, plus 10 grafts
        // of 100: every id distinct, non-negative as i64, and distinct from founders.
        let mut seen: HashSet<u64> = (0..1000).collect();
        let mut cells: Vec<(u64, u32)> = (0..1000).map(|id| (id, 0)).collect();
        for _ in 0..4 {
            let mut next = Vec::new();
            for &(id, g) in &cells {
                let d = daughter_id(id, g);
                assert!(i64::try_from(d).is_ok(), "{d}");
                assert!(seen.insert(d), "daughter {d} of {id} repeats an id");
                next.push((id, g + 1));
                next.push((d, g + 1));
            }
            cells = next;
        }
        for p in 0..10 {
            for k in 0..100 {
                assert!(seen.insert(graft_id(p, k)));
            }
        }
        assert_eq!(seen.len(), 1000 * 16 + 1000);
    }

    #[test]
    fn ids_depend_on_both_keys_and_the_namespace() {
        assert_eq!(daughter_id(17, 0), daughter_id(17, 0));
        assert_ne!(daughter_id(17, 0), daughter_id(17, 1));
        assert_ne!(daughter_id(17, 0), daughter_id(18, 0));
        assert_ne!(daughter_id(0, 1), daughter_id(1, 0));
        assert_ne!(daughter_id(3, 4), graft_id(3, 4));
        assert_ne!(graft_id(0, 1), graft_id(1, 0));
    }
}
