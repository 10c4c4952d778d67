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
