//! A CSV snapshot's faults, every one of them, at their lines.

use super::tests::parse;
use super::*;

/// The faults `text` is refused with, as (line, column, detail), and their count.
fn parse_faults(text: &str) -> (Vec<(u64, usize, String)>, u64) {
    match parse(text) {
        Err(FeatureError::Rows { faults, total, .. }) => (
            faults
                .into_iter()
                .map(|f| (f.line, f.column, f.detail))
                .collect(),
            total,
        ),
        other => panic!("expected several faults, got {other:?}"),
    }
}

#[test]
fn every_fault_of_a_file_is_reported_with_its_line() {
    for nl in ["\n", "\r\n"] {
        let text = [
            "customer_id,a,b",
            "C1,1,2",
            "C2,NaN,2",
            "C1,3,4",
            "C4,inf,1e40",
            "C5,1",
            ",3,3",
            "C7,1,2",
            "",
        ]
        .join(nl);
        let (faults, total) = parse_faults(&text);
        let places: Vec<(u64, usize)> = faults.iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(
            places,
            [(3, 2), (4, 1), (5, 2), (5, 3), (6, 1), (7, 1)],
            "{nl:?}: {faults:?}"
        );
        assert_eq!(total, 6);
        assert!(
            faults[1].2.contains("duplicate customer_id `C1`"),
            "{faults:?}"
        );
        assert!(faults[3].2.contains("`b`") && faults[3].2.contains("1e40"));
        assert!(faults[5].2.contains("empty customer_id"));
    }
    // A column that turns to text takes its non-finite numbers as values: no fault for them,
    // while the other columns' faults are still all found.
    let (faults, total) = parse_faults("customer_id,a,b:num\nC1,NaN,x\nC2,gold,y\n");
    assert_eq!(total, 2, "{faults:?}");
    assert_eq!((faults[0].0, faults[0].1), (2, 3));
    assert_eq!((faults[1].0, faults[1].1), (3, 3));
    // The header's faults come together, before any row is read.
    let (faults, _) = parse_faults("customer_id,a:strng,a,b,b,\nC1,1,2,3,4,5\n");
    let places: Vec<(u64, usize)> = faults.iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(places, [(1, 2), (1, 5), (1, 6)], "{faults:?}");
}

#[test]
fn a_file_with_many_faults_lists_the_first_and_counts_all() {
    let mut text = String::from("customer_id,a:num\n");
    for i in 0..250 {
        text += &format!("C{i},x{i}\n");
    }
    let (faults, total) = parse_faults(&text);
    assert_eq!(total, 250);
    assert_eq!(faults.len(), csv_load::MAX_LISTED_FAULTS);
    assert_eq!(faults.first().map(|f| f.0), Some(2));
    assert_eq!(faults.last().map(|f| f.0), Some(101));
    let e = parse(&text).err().unwrap();
    let located = e.located();
    assert_eq!(located.len(), 101);
    assert_eq!(located[0].0, "t.csv:2:2");
    assert!(located[100]
        .1
        .contains("150 more faults not listed (250 in all)"));
    assert!(e
        .to_string()
        .starts_with("250 faults; t.csv:2:2: column `a`"));
    assert!(e.to_string().ends_with("(the first 100 listed)"));
}
