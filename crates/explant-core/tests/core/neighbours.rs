//! Neighbour search: the cell list and the R-tree against a brute-force reference.

use explant_core::neighbours::{CellList, Csr, neighbours_brute_force, neighbours_cell_list, neighbours_rstar};
use glam::Vec3;

/// SplitMix64, so the point sets are reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Random cells in a box of side `side` (flat when `dims == 2`), with some cells
/// duplicated, some placed exactly at the radius from another along an axis, and
/// some on a coarse lattice so exact-distance ties are common.
fn cells(rng: &mut Rng, n: usize, dims: usize, side: f32, radius: f32) -> Vec<Vec3> {
    let mut p: Vec<Vec3> = Vec::with_capacity(n);
    while p.len() < n {
        let kind = rng.next() % 8;
        let random = |rng: &mut Rng| {
            Vec3::new(rng.uniform() * side, rng.uniform() * side, if dims == 3 { rng.uniform() * side } else { 0.0 })
        };
        let q = match kind {
            0 if !p.is_empty() => p[(rng.next() % p.len() as u64) as usize],
            1 if !p.is_empty() => {
                let mut q = p[(rng.next() % p.len() as u64) as usize];
                q[(rng.next() % dims as u64) as usize] += radius;
                q
            }
            2 => {
                let step = radius / 2.0;
                let k = |rng: &mut Rng| (rng.next() % 16) as f32 * step;
                Vec3::new(k(rng), k(rng), if dims == 3 { k(rng) } else { 0.0 })
            }
            _ => random(rng),
        };
        p.push(q);
    }
    p
}

fn check(c: &Csr, n: usize) {
    assert_eq!(c.offsets.len(), n + 1);
    assert_eq!(c.offsets[0], 0);
    for i in 0..n {
        let l = c.list(i);
        assert!(l.windows(2).all(|w| w[0] < w[1]), "cell {i}: list not strictly ascending: {l:?}");
        assert!(!l.contains(&(i as u32)), "cell {i} lists itself");
    }
}

fn both(p: &[Vec3], r: f32) -> (Csr, Csr) {
    let (mut a, mut b) = (Csr::default(), Csr::default());
    neighbours_cell_list(p, r, &mut a.offsets, &mut a.neighbours).unwrap();
    neighbours_rstar(p, r, &mut b.offsets, &mut b.neighbours);
    (a, b)
}

#[test]
fn cell_list_and_rstar_match_brute_force_on_random_2d_and_3d_sets() {
    let mut rng = Rng(7);
    let mut ties = 0;
    for case in 0..200 {
        let dims = 2 + case % 2;
        let n = match case % 10 {
            0 => 0,
            1 => 1,
            2 => 2,
            _ => (rng.next() % 400) as usize,
        };
        let radius = [0.0, 0.7, 1.0, 2.5, 10.0, 100.0][(rng.next() % 6) as usize];
        let side = [1.0, 10.0, 40.0][(rng.next() % 3) as usize];
        let p = cells(&mut rng, n, dims, side, radius);
        let reference = neighbours_brute_force(&p, radius);
        check(&reference, n);
        let (cell_list, rstar) = both(&p, radius);
        assert_eq!(cell_list, reference, "cell list, case {case}: {n} cells, {dims}D, radius {radius}, side {side}");
        assert_eq!(rstar, reference, "rstar, case {case}: {n} cells, {dims}D, radius {radius}, side {side}");
        ties += (0..n)
            .flat_map(|i| reference.list(i).iter().map(move |&j| (i, j as usize)))
            .filter(|&(i, j)| (p[i] - p[j]).length_squared() == radius * radius)
            .count();
    }
    assert!(ties > 100, "the sets should exercise cells exactly at the radius ({ties} pairs)");
}

#[test]
fn empty_and_single_cell_sets_have_no_neighbours() {
    for p in [vec![], vec![Vec3::new(1.0, 2.0, 3.0)]] {
        let (a, b) = both(&p, 5.0);
        assert_eq!(a.offsets, vec![0; p.len() + 1]);
        assert!(a.neighbours.is_empty());
        assert_eq!(a, b);
    }
}

#[test]
fn coincident_cells_are_neighbours_of_each_other() {
    let p = vec![Vec3::ONE; 4];
    let (a, b) = both(&p, 0.0);
    assert_eq!(a.list(2), &[0, 1, 3]);
    assert_eq!(a, b);
}

#[test]
fn a_tiny_radius_over_a_wide_spread_keeps_the_grid_small() {
    let mut rng = Rng(3);
    let p = cells(&mut rng, 500, 3, 1.0e4, 1.0e-3);
    let list = CellList::new(&p, 1.0e-3);
    let [x, y, z] = list.bins();
    assert!(x * y * z <= 2 * p.len() + 8);
    assert_eq!(list.neighbours().unwrap(), neighbours_brute_force(&p, 1.0e-3));
}

#[test]
fn neighbour_lists_are_identical_on_one_and_two_threads() {
    let mut rng = Rng(11);
    for dims in [2, 3] {
        // Enough cells for several parallel chunks.
        let p = cells(&mut rng, 20_000, dims, if dims == 3 { 60.0 } else { 300.0 }, 2.5);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| both(&p, 2.5))
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one.0, two.0);
        assert_eq!(one.1, two.1);
        assert_eq!(one.0, one.1);
        assert!(one.0.neighbours.len() > p.len(), "the set should be dense enough to have neighbours");
    }
}

#[test]
fn skin_lists_equal_a_fresh_search_as_cells_move_divide_and_jump() {
    use explant_core::neighbours::{SKIN, SkinLists};
    let mut rng = Rng(23);
    for dims in [2, 3] {
        let radius = 2.5;
        let side = if dims == 3 { 40.0 } else { 160.0 };
        let mut p = cells(&mut rng, 3000, dims, side, radius);
        let mut ids: Vec<u64> = (0..p.len() as u64).collect();
        let mut lists = SkinLists::default();
        let (mut offsets, mut neighbours) = (Vec::new(), Vec::new());
        for step in 0..40 {
            // Small moves (well inside the skin) most steps; a few cells jump further than
            // the skin allows at some steps; rows change (a swap, a cell added) at others;
            // one cell is briefly not finite.
            let small = 0.02 * SKIN * radius;
            for q in p.iter_mut() {
                let d = Vec3::new(
                    rng.uniform() - 0.5,
                    rng.uniform() - 0.5,
                    if dims == 3 { rng.uniform() - 0.5 } else { 0.0 },
                );
                *q += d * small;
            }
            match step {
                10 | 25 => p[7] += Vec3::new(SKIN * radius, 0.0, 0.0),
                15 => {
                    p.swap(3, 900);
                    ids.swap(3, 900);
                }
                20 => {
                    p.push(p[11] + Vec3::new(0.3, 0.0, 0.0));
                    ids.push(1_000_000 + step);
                }
                30 => p[5].x = f32::NAN,
                31 => p[5].x = 1.0,
                _ => {}
            }
            lists.neighbours_into(&ids, &p, radius, &mut offsets, &mut neighbours).unwrap();
            let got = Csr { offsets: offsets.clone(), neighbours: neighbours.clone() };
            let want = neighbours_brute_force(&p, radius);
            assert!(got == want, "{dims}D step {step}: skin lists differ from a fresh search");
        }
        assert!(lists.reuses >= 20, "{dims}D: the lists should mostly be reused ({} reuses)", lists.reuses);
        // Jumps and row changes refresh a few cells; the NaN forces builds.
        assert!(lists.refreshes >= 4, "{dims}D: {} refreshes", lists.refreshes);
        assert!(lists.builds >= 4, "{dims}D: the first two calls and the NaN build ({} builds)", lists.builds);
    }
}

#[test]
fn a_cell_moving_just_past_the_skin_is_caught() {
    use explant_core::neighbours::{SKIN, SkinLists};
    // Two cells just beyond the wide radius, then moved together by more than the skin
    // allows in one step: reusing the wide lists would miss the pair.
    let radius = 10.0;
    let far = radius * (1.0 + SKIN) + 0.5;
    let mut p = vec![Vec3::ZERO, Vec3::new(far, 0.0, 0.0), Vec3::new(50.0, 50.0, 0.0)];
    let ids = [0, 1, 2];
    let mut lists = SkinLists::default();
    let (mut o, mut nb) = (Vec::new(), Vec::new());
    lists.neighbours_into(&ids, &p, radius, &mut o, &mut nb).unwrap(); // exact build (new cells)
    lists.neighbours_into(&ids, &p, radius, &mut o, &mut nb).unwrap(); // wide build
    assert!(nb.is_empty());
    p[1].x = radius - 0.1;
    lists.neighbours_into(&ids, &p, radius, &mut o, &mut nb).unwrap();
    assert_eq!((o.as_slice(), nb.as_slice()), ([0u32, 1, 2, 2].as_slice(), [1u32, 0].as_slice()));
}

#[test]
fn skin_lists_kept_across_divisions_deaths_and_row_swaps_equal_a_fresh_search() {
    use explant_core::neighbours::{SKIN, SkinLists};
    // A tissue that divides and dies at every step, as the PhysiCell-sized tumour does:
    // daughters appended, the dead swap-removed (the last row takes the dead row), a few
    // cells pushed past the skin, small moves for the rest, and now and then every row
    // re-sorted. After every step the lists must equal a fresh brute-force search.
    let mut rng = Rng(41);
    for dims in [2, 3] {
        let radius = 2.5;
        let side = if dims == 3 { 30.0 } else { 120.0 };
        let mut p = cells(&mut rng, 2000, dims, side, radius);
        let mut ids: Vec<u64> = (0..p.len() as u64).collect();
        let mut next_id = 10_000u64;
        let mut lists = SkinLists::default();
        let (mut offsets, mut neighbours) = (Vec::new(), Vec::new());
        let jitter = |rng: &mut Rng, scale: f32| {
            Vec3::new(rng.uniform() - 0.5, rng.uniform() - 0.5, if dims == 3 { rng.uniform() - 0.5 } else { 0.0 })
                * scale
        };
        for step in 0..60u64 {
            // Moves of up to 0.05 of the skin a step: over the steps many cells drift past
            // half the skin and are refreshed one by one (a laxer limit misses pairs).
            for q in p.iter_mut() {
                *q += jitter(&mut rng, 0.1 * SKIN * radius);
            }
            // Three divisions, two deaths, a few cells pushed past the skin.
            for _ in 0..3 {
                let mother = (rng.next() % p.len() as u64) as usize;
                let d = jitter(&mut rng, 0.4 * radius);
                p.push(p[mother] + d);
                p[mother] -= d;
                ids.push(next_id);
                next_id += 1;
            }
            for _ in 0..2 {
                let dead = (rng.next() % p.len() as u64) as usize;
                p.swap_remove(dead);
                ids.swap_remove(dead);
            }
            for _ in 0..4 {
                let k = (rng.next() % p.len() as u64) as usize;
                p[k] += jitter(&mut rng, 4.0 * SKIN * radius);
            }
            // Every 20th step the rows are re-sorted (a permutation of every row).
            if step % 20 == 19 {
                let order = CellList::new(&p, radius).order().to_vec();
                p = order.iter().map(|&i| p[i as usize]).collect();
                ids = order.iter().map(|&i| ids[i as usize]).collect();
            }
            lists.neighbours_into(&ids, &p, radius, &mut offsets, &mut neighbours).unwrap();
            let got = Csr { offsets: offsets.clone(), neighbours: neighbours.clone() };
            let want = neighbours_brute_force(&p, radius);
            assert!(want.neighbours.len() > 2 * p.len(), "{dims}D: the tissue should be crowded");
            assert!(got == want, "{dims}D step {step}: kept lists differ from a fresh search");
        }
        // Most steps kept the wide lists by refreshing a few cells; the re-sorts (and the
        // first two calls) built them anew.
        assert!(lists.refreshes >= 50, "{dims}D: {} refreshes", lists.refreshes);
        assert!(lists.builds <= 8, "{dims}D: {} builds", lists.builds);
    }
}

#[test]
fn a_cell_refreshed_far_away_leaves_its_old_neighbours_lists() {
    use explant_core::neighbours::{SKIN, SkinLists};
    // Cell 0 sits among 1 and 2, then jumps beside 3: its wide list and theirs follow it.
    let radius = 10.0;
    let mut p = vec![Vec3::ZERO, Vec3::new(5.0, 0.0, 0.0), Vec3::new(0.0, 5.0, 0.0), Vec3::new(100.0, 0.0, 0.0)];
    let ids = [7, 8, 9, 10];
    let mut lists = SkinLists::default();
    let (mut o, mut nb) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        lists.neighbours_into(&ids, &p, radius, &mut o, &mut nb).unwrap();
    }
    assert_eq!(nb, [1, 2, 0, 2, 0, 1]);
    p[0] = Vec3::new(100.0 - radius * (1.0 - SKIN), 0.0, 0.0);
    lists.neighbours_into(&ids, &p, radius, &mut o, &mut nb).unwrap();
    assert_eq!((o.as_slice(), nb.as_slice()), ([0u32, 1, 2, 3, 4].as_slice(), [3u32, 2, 1, 0].as_slice()));
    assert_eq!(lists.refreshes, 1);
    // Back again: the same lists as at first.
    p[0] = Vec3::ZERO;
    lists.neighbours_into(&ids, &p, radius, &mut o, &mut nb).unwrap();
    assert_eq!(nb, [1, 2, 0, 2, 0, 1]);
    assert_eq!((lists.refreshes, lists.builds), (2, 2));
}

#[test]
fn two_cells_each_moving_under_the_skin_but_together_past_it_are_caught() {
    use explant_core::neighbours::{SKIN, SkinLists};
    // Two cells just beyond the wide radius each move 0.6 of the skin toward the other:
    // each is past half the skin (refreshed), together they close more than the skin.
    // A limit looser than half the skin would keep the old (empty) lists.
    let radius = 10.0;
    let skin = SKIN * radius;
    let gap = radius + skin + 0.01;
    let mut p = vec![Vec3::ZERO, Vec3::new(gap, 0.0, 0.0), Vec3::new(50.0, 50.0, 0.0)];
    let ids = [0, 1, 2];
    let mut lists = SkinLists::default();
    let (mut o, mut nb) = (Vec::new(), Vec::new());
    lists.neighbours_into(&ids, &p, radius, &mut o, &mut nb).unwrap(); // exact build (new cells)
    lists.neighbours_into(&ids, &p, radius, &mut o, &mut nb).unwrap(); // wide build
    assert!(nb.is_empty());
    p[0].x += 0.6 * skin;
    p[1].x -= 0.6 * skin;
    lists.neighbours_into(&ids, &p, radius, &mut o, &mut nb).unwrap();
    assert_eq!((o.as_slice(), nb.as_slice()), ([0u32, 1, 2, 2].as_slice(), [1u32, 0].as_slice()));
    assert_eq!(lists.refreshes, 1);
}

#[test]
fn lists_are_searched_directly_while_too_many_cells_move_and_kept_again_after() {
    use explant_core::neighbours::{SKIN, SkinLists};
    // A third of the cells pushed past the skin at every step: refreshing would rewrite
    // most rows, so the lists are searched directly (and stay exact); once the cells only
    // jiggle and keep their rows, wide lists are built and reused again.
    let mut rng = Rng(77);
    let radius = 2.5;
    let mut p = cells(&mut rng, 1500, 3, 25.0, radius);
    let ids: Vec<u64> = (0..p.len() as u64).collect();
    let mut lists = SkinLists::default();
    let (mut offsets, mut neighbours) = (Vec::new(), Vec::new());
    for step in 0..12 {
        for (k, q) in p.iter_mut().enumerate() {
            let scale = if step < 6 && k % 3 == 0 { 2.0 } else { 0.01 } * SKIN * radius;
            *q += Vec3::new(rng.uniform() - 0.5, rng.uniform() - 0.5, rng.uniform() - 0.5) * scale;
        }
        lists.neighbours_into(&ids, &p, radius, &mut offsets, &mut neighbours).unwrap();
        let got = Csr { offsets: offsets.clone(), neighbours: neighbours.clone() };
        assert!(got == neighbours_brute_force(&p, radius), "step {step}: lists differ from a fresh search");
        if step == 5 {
            assert_eq!(lists.refreshes, 0, "crowded steps must not refresh");
        }
    }
    assert!(lists.reuses >= 4, "{} reuses once the cells settled", lists.reuses);
}
