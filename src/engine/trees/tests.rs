use super::*;

fn split(
    feature: u32,
    threshold: f64,
    left: u32,
    right: u32,
    default_left: bool,
    missing: MissingType,
) -> RawNode {
    RawNode::Split {
        feature,
        threshold,
        left,
        right,
        default_left,
        missing,
    }
}

fn stump(flavor: Flavor, missing: MissingType, default_left: bool, threshold: f64) -> TreeEnsemble {
    let tree = RawTree {
        label: "t".into(),
        nodes: vec![
            split(0, threshold, 1, 2, default_left, missing),
            RawNode::Leaf { value: -1.0 },
            RawNode::Leaf { value: 1.0 },
        ],
        allowed_unreachable: 0,
    };
    TreeEnsemble::build(flavor, 0.0, &[tree], &[3]).expect("valid stump")
}

const LGB: Flavor = Flavor::LightGbm { sigmoid: 1.0 };

/// [`TreeEnsemble::build_with`] over numeric columns and one class.
fn build_cols(
    flavor: Flavor,
    base_margin: f64,
    trees: &[RawTree],
    columns: &[u32],
    choice: Choice,
) -> Result<TreeEnsemble, TreeLoadError> {
    let features: Vec<Feature> = columns.iter().map(|&c| Feature::value(c)).collect();
    TreeEnsemble::build_with(
        flavor,
        Classes::binary(base_margin),
        trees,
        &features,
        choice,
    )
}

#[test]
fn xgboost_is_strict_less_than_and_nan_follows_default() {
    let e = stump(Flavor::XgBoost, MissingType::NaN, true, 0.5);
    let row = |x: f32| [0.0, 0.0, 0.0, x];
    assert_eq!(e.margin(&row(0.4)), -1.0);
    assert_eq!(e.margin(&row(0.5)), 1.0); // equal goes right
    assert_eq!(e.margin(&row(f32::NAN)), -1.0);
    assert_eq!(e.margin(&[0.0]), -1.0); // short row = missing
    let e = stump(Flavor::XgBoost, MissingType::NaN, false, 0.5);
    assert_eq!(e.margin(&row(f32::NAN)), 1.0);
    assert_eq!(e.columns(), &[3]);
}

#[test]
fn lightgbm_missing_types() {
    let row = |x: f32| [0.0, 0.0, 0.0, x];
    // None: NaN reads as 0.0 and is compared; default_left is ignored.
    let e = stump(LGB, MissingType::None, false, 0.5);
    assert_eq!(e.margin(&row(f32::NAN)), -1.0);
    assert_eq!(e.margin(&row(0.5)), -1.0); // equal goes left
    let e = stump(LGB, MissingType::None, true, -0.5);
    assert_eq!(e.margin(&row(f32::NAN)), 1.0);
    // Zero: 0 and NaN go the default way, whatever the threshold says.
    let e = stump(LGB, MissingType::Zero, false, 0.5);
    assert_eq!(e.margin(&row(0.0)), 1.0);
    assert_eq!(e.margin(&row(f32::NAN)), 1.0);
    assert_eq!(e.margin(&row(1e-36)), 1.0);
    assert_eq!(e.margin(&row(0.25)), -1.0);
    // NaN: only NaN goes the default way; zero is compared.
    let e = stump(LGB, MissingType::NaN, false, 0.5);
    assert_eq!(e.margin(&row(f32::NAN)), 1.0);
    assert_eq!(e.margin(&row(0.0)), -1.0);
    assert_eq!(e.margin(&[]), 1.0); // out of range = NaN
                                    // Tiny values are read as exact 0.0, as LightGBM's dense predict path does.
    let e = stump(LGB, MissingType::None, false, -LIGHTGBM_ZERO_THRESHOLD);
    assert_eq!(e.margin(&row(-1e-35)), 1.0);
    assert_eq!(e.margin(&row(-1e-34)), -1.0);
}

#[test]
fn refuses_bad_structure() {
    let leaf = RawNode::Leaf { value: 0.0 };
    let mk = |nodes: Vec<RawNode>| RawTree {
        label: "trees[0]".into(),
        nodes,
        allowed_unreachable: 0,
    };
    let bad_child = mk(vec![
        split(0, 1.0, 1, 5, false, MissingType::NaN),
        leaf.clone(),
        leaf.clone(),
    ]);
    let err = TreeEnsemble::build(Flavor::XgBoost, 0.0, &[bad_child], &[0]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "trees[0] node 0: right child 5 is out of range (3 nodes)"
    );
    let cycle = mk(vec![
        split(0, 1.0, 1, 2, false, MissingType::NaN),
        split(0, 1.0, 0, 2, false, MissingType::NaN),
        leaf.clone(),
    ]);
    let err = TreeEnsemble::build(Flavor::XgBoost, 0.0, &[cycle], &[0]).unwrap_err();
    assert!(err.to_string().contains("reached twice"), "{err}");
    let orphan = mk(vec![leaf.clone(), leaf.clone()]);
    let err = TreeEnsemble::build(Flavor::XgBoost, 0.0, &[orphan], &[0]).unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
    let nan = mk(vec![RawNode::Leaf { value: f64::NAN }]);
    assert!(TreeEnsemble::build(Flavor::XgBoost, 0.0, &[nan], &[0]).is_err());
    let feat = mk(vec![
        split(7, 1.0, 1, 2, false, MissingType::NaN),
        leaf.clone(),
        leaf.clone(),
    ]);
    let err = TreeEnsemble::build(Flavor::XgBoost, 0.0, &[feat], &[0]).unwrap_err();
    assert!(err.to_string().contains("feature index 7"), "{err}");
    let big = mk(vec![leaf.clone(); MAX_NODES_PER_TREE + 1]);
    assert!(TreeEnsemble::build(Flavor::XgBoost, 0.0, &[big], &[0]).is_err());
}

#[test]
fn refuses_leaves_whose_sum_overflows_the_margin() {
    let leaves = |v: f64| RawTree {
        label: "t".into(),
        nodes: vec![
            split(0, 0.5, 1, 2, true, MissingType::NaN),
            RawNode::Leaf { value: v },
            RawNode::Leaf { value: -v },
        ],
        allowed_unreachable: 0,
    };
    // A tree of leaves +-MAX / 4 is fine; two of +-MAX / 1.5 can sum past MAX.
    let quarter = f64::from(f32::MAX) / 4.0;
    assert!(TreeEnsemble::build(Flavor::XgBoost, 0.0, &[leaves(quarter)], &[0]).is_ok());
    let big = leaves(f64::from(f32::MAX) / 1.5);
    let err = TreeEnsemble::build(Flavor::XgBoost, 0.0, &[big.clone(), big], &[0]);
    assert!(err.unwrap_err().to_string().contains("summed in (f32"));
    let lgb = Flavor::LightGbm { sigmoid: 1.0 };
    assert!(TreeEnsemble::build(lgb, 0.0, &[leaves(f64::MAX / 4.0)], &[0]).is_ok());
    let f64_big = leaves(f64::MAX / 1.5);
    let err = TreeEnsemble::build(lgb, 0.0, &[f64_big.clone(), f64_big], &[0]);
    assert!(err.unwrap_err().to_string().contains("summed in (f64"));
}

#[test]
fn layouts_are_compact_and_depth_first() {
    let tree = RawTree {
        label: "t".into(),
        nodes: vec![
            split(0, 1.0, 2, 1, false, MissingType::NaN),
            RawNode::Leaf { value: 2.0 },
            RawNode::Leaf { value: 1.0 },
        ],
        allowed_unreachable: 0,
    };
    let two = [tree.clone(), tree];
    let e = build_cols(Flavor::XgBoost, 0.0, &two, &[0], Choice::Linked).expect("valid");
    let Layout::Linked(l) = &e.layout else {
        panic!("linked layout asked for")
    };
    assert_eq!((e.n_trees(), e.n_nodes()), (2, 6));
    assert_eq!(std::mem::size_of::<Node>(), 16);
    assert_eq!((l.nodes[0].right, l.nodes[3].right), (2, 5));
    assert_eq!(e.margin(&[0.0]), 2.0);
    assert_eq!(e.margin(&[1.0]), 4.0);
    let p = TreeEnsemble::build(Flavor::XgBoost, 0.0, &two, &[0]).expect("valid");
    assert!(p.is_perfect_layout());
    assert_eq!(std::mem::size_of::<perfect::Block<f32>>(), 64);
    assert_eq!(std::mem::size_of::<perfect::Block<f64>>(), 128);
    assert_eq!((p.margin(&[0.0]), p.margin(&[1.0])), (2.0, 4.0));
}

/// SplitMix64: deterministic trees and rows for the layout comparison.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// A random tree of depth at most `max_depth`, leaves at every depth, nodes numbered in an
/// arbitrary (not depth-first) order.
fn random_tree(rng: &mut Rng, max_depth: u32, label: String, wide: bool) -> RawTree {
    let mut nodes = vec![RawNode::Leaf { value: 0.0 }];
    let mut open = vec![(0_usize, 0_u32)];
    while let Some((i, d)) = open.pop() {
        if d < max_depth && rng.below(5) != 0 {
            let (l, r) = (nodes.len(), nodes.len() + 1);
            nodes.push(RawNode::Leaf { value: 0.0 });
            nodes.push(RawNode::Leaf { value: 0.0 });
            let missing =
                [MissingType::None, MissingType::Zero, MissingType::NaN][rng.below(3) as usize];
            nodes[i] = if rng.below(4) == 0 {
                // A categorical split: a set of codes among 0..8 (one-hot: a set of one).
                let mut categories: Vec<u32> = (0..8).filter(|_| rng.below(3) == 0).collect();
                // Now and then a category beyond the masks' range: the ensemble then takes
                // one indicator input per set instead of masked splits.
                if wide && rng.below(6) == 0 {
                    categories.push(40);
                }
                let categories: Box<[u32]> = categories.into();
                RawNode::Categorical {
                    feature: rng.below(4) as u32,
                    categories,
                    in_set: r as u32,
                    not_in_set: l as u32,
                    missing_in_set: rng.below(2) == 0,
                }
            } else {
                split(
                    rng.below(4) as u32,
                    rng.below(9) as f64 * 0.5 - 2.0,
                    r as u32,
                    l as u32,
                    rng.below(2) == 0,
                    missing,
                )
            };
            open.push((l, d + 1));
            open.push((r, d + 1));
        } else {
            nodes[i] = RawNode::Leaf {
                value: (rng.below(2001) as f64 - 1000.0) / 64.0,
            };
        }
    }
    RawTree {
        label,
        nodes,
        allowed_unreachable: 0,
    }
}

/// The libraries' split rules as they are written (no restating), walked on the raw trees.
fn reference_margin(
    flavor: Flavor,
    base: f64,
    trees: &[RawTree],
    cols: &[u32],
    row: &[f32],
) -> f64 {
    let leaf = |tree: &RawTree| {
        let mut i = 0;
        loop {
            match &tree.nodes[i] {
                RawNode::Leaf { value } => return *value,
                // As `common::Decision` and `Tree::CategoricalDecision` are written.
                RawNode::Categorical {
                    feature,
                    categories,
                    in_set,
                    not_in_set,
                    missing_in_set,
                } => {
                    let x = row
                        .get(cols[*feature as usize] as usize)
                        .copied()
                        .unwrap_or(f32::NAN);
                    let has = |c: i64| u32::try_from(c).is_ok_and(|c| categories.contains(&c));
                    let take_set = match flavor {
                        Flavor::XgBoost if x.is_nan() => *missing_in_set,
                        Flavor::XgBoost => (0.0..16_777_216.0).contains(&x) && has(x as i64),
                        Flavor::LightGbm { .. } => {
                            let mut x = f64::from(x);
                            if x.abs() <= LIGHTGBM_ZERO_THRESHOLD {
                                x = 0.0;
                            }
                            !x.is_nan() && (x as i32) >= 0 && has(i64::from(x as i32))
                        }
                    };
                    i = if take_set { *in_set } else { *not_in_set } as usize;
                }
                &RawNode::Split {
                    feature,
                    threshold,
                    left,
                    right,
                    default_left,
                    missing,
                } => {
                    let x = row[cols[feature as usize] as usize];
                    let go_left = match flavor {
                        Flavor::XgBoost if x.is_nan() => default_left,
                        Flavor::XgBoost => x < threshold as f32,
                        Flavor::LightGbm { .. } => {
                            let mut x = f64::from(x);
                            if x.abs() <= LIGHTGBM_ZERO_THRESHOLD {
                                x = 0.0;
                            }
                            if x.is_nan() && missing != MissingType::NaN {
                                x = 0.0;
                            }
                            if (missing == MissingType::Zero && x == 0.0)
                                || (missing == MissingType::NaN && x.is_nan())
                            {
                                default_left
                            } else {
                                x <= threshold
                            }
                        }
                    };
                    i = if go_left { left } else { right } as usize;
                }
            }
        }
    };
    match flavor {
        Flavor::XgBoost => {
            let mut sum = base as f32;
            trees.iter().for_each(|t| sum += leaf(t) as f32);
            f64::from(sum)
        }
        Flavor::LightGbm { .. } => trees.iter().map(leaf).fold(0.0, |a, v| a + v),
    }
}

#[test]
fn perfect_and_linked_layouts_agree_bit_for_bit() {
    let mut rng = Rng(7);
    for round in 0..45 {
        let depth = (round % 9) as u32;
        // Most rounds fit one chunk of trees walked together; every fifth spans several.
        let n_trees = if round % 5 == 4 {
            60 + rng.below(100) as usize
        } else {
            1 + rng.below(21) as usize
        };
        let trees: Vec<RawTree> = (0..n_trees)
            .map(|t| random_tree(&mut rng, depth, format!("trees[{t}]"), round % 3 == 0))
            .collect();
        for flavor in [Flavor::XgBoost, LGB] {
            let columns = [5, 1, 3, 0];
            let linked = build_cols(flavor, 0.25, &trees, &columns, Choice::Linked);
            let perfect = build_cols(flavor, 0.25, &trees, &columns, Choice::Perfect);
            let (linked, perfect) = (linked.expect("valid"), perfect.expect("valid"));
            assert!(perfect.is_perfect_layout(), "round {round}");
            assert_eq!(linked.columns(), perfect.columns());
            for _ in 0..50 {
                let row: Vec<f32> = (0..6)
                    .map(|_| match rng.below(6) {
                        0 => f32::NAN,
                        1 => 0.0,
                        2 => -0.0,
                        3 => f32::from_bits(rng.below(1 << 31) as u32),
                        4 if rng.below(4) == 0 => 40.0,
                        4 => rng.below(12) as f32 - 1.0,
                        _ => rng.below(11) as f32 * 0.5 - 2.5,
                    })
                    .collect();
                let base = if flavor == Flavor::XgBoost { 0.25 } else { 0.0 };
                let want = reference_margin(flavor, base, &trees, &columns, &row);
                for e in [&linked, &perfect] {
                    assert_eq!(
                        e.margin(&row).to_bits(),
                        want.to_bits(),
                        "round {round}, {flavor:?}, row {row:?}"
                    );
                }
            }
        }
    }
}
