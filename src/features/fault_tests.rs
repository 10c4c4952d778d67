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
        assert!(
            faults[0].2.ends_with(
                "`NaN` is not a number: an export's word for a missing value? \
                 `--features-null NaN` reads it as one"
            ),
            "{faults:?}"
        );
        assert!(faults[5].2.contains("empty customer_id"));
    }
    // A column that turns to text takes its non-finite numbers as values: no fault for them,
    // while the other columns' faults are still all found.
    let (faults, total) = parse_faults("customer_id,a,b:num\nC1,NaN,x\nC2,gold,y\n");
    assert_eq!(total, 2, "{faults:?}");
    assert_eq!((faults[0].0, faults[0].1), (2, 3));
    assert_eq!((faults[1].0, faults[1].1), (3, 3));
    // A repeat names the data row of its first copy, counting the rows before it that took no
    // id (an empty id, a ragged row).
    let (faults, _) = parse_faults("customer_id,a\n,1\nC5,1,2\nC1,2\nC1,3\n");
    assert!(
        faults[2]
            .2
            .contains("duplicate customer_id `C1` (first seen on data row 3)"),
        "{faults:?}"
    );
    // The header's faults come together, before any row is read.
    let (faults, _) = parse_faults("customer_id,a:strng,a,b,b,\nC1,1,2,3,4,5\n");
    let places: Vec<(u64, usize)> = faults.iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(places, [(1, 2), (1, 5), (1, 6)], "{faults:?}");
    // A column kept and left out under one name, either way round.
    let (faults, _) = parse_faults("customer_id,seg,seg:skip,x:skip,x\nC1,1,2,3,4\n");
    let places: Vec<(u64, usize)> = faults.iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(places, [(1, 3), (1, 5)], "{faults:?}");
    assert!(faults[0].2.contains("duplicate column `seg`"), "{faults:?}");
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

/// A Parquet file's faults: every one, by data row and column, in file order (ids, strings
/// and numbers of one row together), a dictionary value at fault on each row that uses it,
/// and a column out of distinct values told once.
#[cfg(feature = "offline")]
#[test]
fn every_fault_of_a_parquet_file_is_reported_with_its_row() {
    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, DictionaryArray, Float64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let long = "x".repeat(csv_load::MAX_STRING_BYTES + 1);
    let plan: DictionaryArray<Int32Type> = vec![
        "gold",
        long.as_str(),
        "gold",
        long.as_str(),
        "silver",
        "gold",
    ]
    .into_iter()
    .collect();
    let batch = RecordBatch::try_from_iter(vec![
        (
            "customer_id",
            Arc::new(StringArray::from(vec![
                Some("C1"),
                Some("C2"),
                None,
                Some("C1"),
                Some(""),
                Some("C6"),
            ])) as ArrayRef,
        ),
        ("plan", Arc::new(plan) as ArrayRef),
        (
            "arpu",
            Arc::new(Float64Array::from(vec![1.0, 1e300, 2.0, 3.0, 4.0, -1e300])) as ArrayRef,
        ),
    ])
    .unwrap();
    let (dir, path) = super::tests::write_parquet("nb-pq-faults", &batch);
    let Err(e) = FeatureStore::load(&path) else {
        panic!("a file with faults loaded");
    };
    std::fs::remove_dir_all(&dir).ok();
    let FeatureError::Values { faults, total, .. } = &e else {
        panic!("expected several faults, got {e:?}");
    };
    let places: Vec<&str> = faults
        .iter()
        .map(|f| f.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        places,
        [
            "row 2, column `plan`",
            "row 2, column `arpu`",
            "row 3, column `customer_id`",
            "row 4, column `customer_id`",
            "row 4, column `plan`",
            "row 5, column `customer_id`",
            "row 6, column `arpu`",
        ],
        "{faults:#?}"
    );
    assert_eq!(*total, 7);
    assert!(faults[3].contains("duplicate customer_id `C1` (first seen on data row 1)"));
    assert!(faults[2].contains("null customer_id") && faults[5].contains("empty customer_id"));
    let located = e.located();
    assert_eq!(located.len(), 7);
    assert_eq!(located[0].0, path.display().to_string());
    assert!(e.to_string().starts_with("7 faults; "), "{e}");

    // Past the listed hundred, the rest are counted.
    let ids: Vec<Option<&str>> = (0..250).map(|_| None).collect();
    let batch = RecordBatch::try_from_iter(vec![(
        "customer_id",
        Arc::new(StringArray::from(ids)) as ArrayRef,
    )])
    .unwrap();
    let (dir, path) = super::tests::write_parquet("nb-pq-many-faults", &batch);
    let Err(e) = FeatureStore::load(&path) else {
        panic!("250 null ids loaded");
    };
    std::fs::remove_dir_all(&dir).ok();
    let located = e.located();
    assert_eq!(located.len(), 101);
    assert!(located[0]
        .1
        .starts_with("row 1, column `customer_id`: null"));
    assert!(located[100]
        .1
        .contains("150 more faults not listed (250 in all)"));
}

/// Words an export writes for a missing value (`--features-null NA,\N`): a field that is
/// exactly one is missing in a column of numbers (which stays numbers, with no warning) and in
/// a text column (no category of that name); anything else about the field keeps it a value.
#[test]
fn null_words_are_missing_values_in_any_column() {
    let nulls = NullWords::new(&["NA", "\\N"]).unwrap();
    let text = "customer_id,arpu,plan\nC1,10.5,basic\nC2,NA,\\N\nC3,\\N,NA\nC4,7,family\n";
    let s = csv_load::parse_csv(text.as_bytes(), Path::new("n.csv"), &nulls).unwrap();
    assert!(s.dictionary(0).is_none(), "arpu stays a column of numbers");
    assert!(s.column_warnings().is_empty(), "{:?}", s.column_warnings());
    let plan = s.dictionary(1).expect("plan is text");
    assert_eq!(plan.len(), 2, "basic and family only");
    for c in ["C2", "C3"] {
        let row = s.row(c).unwrap();
        assert!(row[0].is_nan() && row[1].is_nan(), "{c}: {row:?}");
    }
    assert_eq!(s.row("C4").unwrap()[0], 7.0);
    // Without the words, `NA` turns `arpu` to text.
    let plain = FeatureStore::from_csv_bytes(text.as_bytes(), "n.csv").unwrap();
    assert!(plain.dictionary(0).is_some());
    // A word is matched exactly: ` NA` and `na` are values (here: text).
    let spaced = "customer_id,arpu\nC1,1\nC2, NA\nC3,na\n";
    let s = csv_load::parse_csv(spaced.as_bytes(), Path::new("s.csv"), &nulls).unwrap();
    assert_eq!(
        s.dictionary(0).map(Dictionary::len),
        Some(3),
        "1, ` NA` and `na`"
    );
}

#[test]
fn null_words_that_would_hide_values_are_refused() {
    let refused = |words: &[&str]| NullWords::new(words).unwrap_err();
    assert!(refused(&[""]).contains("empty field is a missing value"));
    assert!(refused(&["0"]).contains("`0` reads as a number"));
    assert!(refused(&[" 1e3 "]).contains("reads as a number"));
    assert!(
        refused(&["true"]).contains("reads as a number"),
        "booleans read as 1 and 0"
    );
    let many: Vec<String> = (0..17).map(|i| format!("w{i}")).collect();
    assert!(NullWords::new(&many).unwrap_err().contains("at most 16"));
    assert!(refused(&["x".repeat(65).as_str()]).contains("longer than 64 bytes"));
    // Words a warehouse writes, `nan` (not a value a snapshot holds) among them.
    assert!(NullWords::new(&["NA", "NULL", "\\N", "nan", "#N/A", "-"]).is_ok());
}

/// The flag a message suggests is one a shell passes through as written, and none for a word
/// the flag would split.
#[test]
fn the_suggested_null_flag_survives_a_shell() {
    assert_eq!(null_flag("NA").as_deref(), Some("--features-null NA"));
    assert_eq!(null_flag("#N/A").as_deref(), Some("--features-null '#N/A'"));
    assert_eq!(null_flag("\\N").as_deref(), Some("--features-null '\\N'"));
    assert_eq!(
        null_flag("it's").as_deref(),
        Some("--features-null 'it'\\''s'")
    );
    assert_eq!(null_flag("1,5"), None);
    let m = turned_message("arpu", 3, "1,5");
    assert!(!m.contains("--features-null"), "{m}");
    assert!(turned_message("arpu", 3, "\\N").contains("`--features-null '\\N'` reads"));
}
