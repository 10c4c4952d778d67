//! Parquet exports as data tools write them: their names, and types an Arrow reader lacks.

use super::tests::write_parquet;
use super::FeatureStore;

/// A polars `Int128` column beside the features (16 fixed bytes, which the file's Arrow
/// schema calls Int128, a type Arrow readers do not read): the file loads by its Parquet
/// types, the column left out by name.
#[test]
fn a_polars_int128_column_is_left_out_by_name() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/parquet/polars_int128.parquet"
    );
    let store = FeatureStore::load(std::path::Path::new(fixture)).unwrap();
    assert_eq!(store.columns(), [Box::from("arpu")]);
    let left: Vec<_> = store.left_out().collect();
    assert_eq!(left, [("lifetime_bytes", "FixedSizeBinary(16)")]);
    assert_eq!(store.exact_row("C2").unwrap().f64(0), 12.5);
}

/// A Parquet export's names are read as a CSV header's: spaces around a name are not part of
/// it, and an id column in another case or not first says so as the CSV loader does (pandas'
/// `set_index("customer_id")` writes it last; Snowflake writes names in upper case).
#[test]
fn parquet_column_names_are_read_as_a_csv_header() {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let ids = || Arc::new(StringArray::from(vec!["C1", "C2"])) as ArrayRef;
    let arpu = || Arc::new(Float64Array::from(vec![1.5, 2.5])) as ArrayRef;
    let batch =
        RecordBatch::try_from_iter([(" customer_id", ids()), ("segment ", arpu())]).unwrap();
    let (dir, path) = write_parquet("nb-pq-names", &batch);
    let store = FeatureStore::load(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(store.columns(), [Box::from("segment")]);
    assert_eq!(store.row("C2").unwrap()[0], 2.5);
    for (columns, said) in [
        (
            [("CUSTOMER_ID", ids()), ("arpu", arpu())],
            "the first column is `CUSTOMER_ID`: name it `customer_id`, in lower case",
        ),
        (
            [("arpu", arpu()), ("customer_id", ids())],
            "the first column is `arpu`; `customer_id` is column 2: put it first",
        ),
        (
            [("id", ids()), ("arpu", arpu())],
            "the first column must be `customer_id`, not `id`",
        ),
    ] {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let (dir, path) = write_parquet("nb-pq-first", &batch);
        let e = FeatureStore::load(&path).err().unwrap().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.ends_with(said), "{e}");
    }
}

/// What pandas writes beside a frame's columns when its index is not a plain range
/// (`__index_level_0__`) is left out by name, as a column named `name:skip` is (a free-text
/// column holding more values than a text column may, which would refuse the file).
#[test]
fn pandas_index_and_columns_named_skip_are_left_out() {
    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let n = 70_000;
    let ids: Vec<String> = (0..n).map(|i| format!("C{i}")).collect();
    let emails: Vec<String> = (0..n).map(|i| format!("c{i}@example.com")).collect();
    let batch = RecordBatch::try_from_iter([
        ("customer_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        (
            "arpu",
            Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64))) as ArrayRef,
        ),
        (
            "email:SKIP",
            Arc::new(StringArray::from(emails)) as ArrayRef,
        ),
        (
            "__index_level_0__",
            Arc::new(Int64Array::from_iter_values(0..n as i64)) as ArrayRef,
        ),
    ])
    .unwrap();
    let (dir, path) = write_parquet("nb-pq-skip", &batch);
    let store = FeatureStore::load(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(store.columns(), [Box::from("arpu")]);
    assert_eq!(store.row("C7").unwrap()[0], 7.0);
    let left: Vec<_> = store.left_out().collect();
    assert_eq!(
        left,
        [
            ("email", super::SKIPPED),
            ("__index_level_0__", super::PANDAS_INDEX)
        ]
    );
    let warnings = store.column_warnings();
    assert!(
        warnings
            .iter()
            .any(|(k, w)| k == "columns.__index_level_0__" && w.contains("index=False")),
        "{warnings:?}"
    );
    assert_eq!(
        crate::model::Schema::unknown(&store, "email"),
        "unknown feature `email`: the snapshot leaves it out (`:skip`)"
    );
}

/// A `.parquet` (or `.nbf`) file that is empty or is not one is named as such, not read as a
/// CSV without a header.
#[test]
fn an_empty_or_foreign_file_named_parquet_says_so() {
    let dir = std::env::temp_dir().join(format!("nb-pq-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "a.parquet",
            &b""[..],
            "empty file (0 bytes), not Parquet: the export wrote nothing",
        ),
        (
            "b.parquet",
            &b"customer_id,x\nC1,1\n"[..],
            "not Parquet: it begins with \"cust\", not PAR1",
        ),
        (
            "c.NBF",
            &b""[..],
            "empty file (0 bytes), not a .nbf snapshot",
        ),
    ];
    for (name, bytes, said) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let e = FeatureStore::load(&path).err().unwrap().to_string();
        assert!(e.contains(said), "{name}: {e}");
    }
    // Any other name is read by its content: CSV text in a `.csv.txt` loads.
    let path = dir.join("f.csv.txt");
    std::fs::write(&path, "customer_id,x\nC1,1\n").unwrap();
    assert_eq!(FeatureStore::load(&path).unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
