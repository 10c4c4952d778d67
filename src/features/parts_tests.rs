//! A folder of Parquet parts, as Spark writes one, read as one snapshot.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};

use super::snapshots::content_crc;
use super::FeatureStore;

fn part(dir: &Path, name: &str, batch: &RecordBatch) {
    let mut w = ::parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(dir.join(name)).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

fn rows(ids: &[&str], arpu: &[f64], plan: &[&str]) -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "customer_id",
            Arc::new(StringArray::from(ids.to_vec())) as ArrayRef,
        ),
        (
            "arpu",
            Arc::new(Float64Array::from(arpu.to_vec())) as ArrayRef,
        ),
        (
            "plan",
            Arc::new(StringArray::from(plan.to_vec())) as ArrayRef,
        ),
    ])
    .unwrap()
}

/// A fresh folder named for the test.
fn folder(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nb-parts-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn refusal(dir: &Path) -> String {
    match FeatureStore::load(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_spark_folder_loads_as_one_snapshot_in_part_order() {
    let dir = folder("spark");
    part(
        &dir,
        "part-00001-x.snappy.parquet",
        &rows(&["C3"], &[3.5], &["5g"]),
    );
    part(
        &dir,
        "part-00000-x.snappy.parquet",
        &rows(&["C1", "C2"], &[1.5, 2.5], &["basic", "5g"]),
    );
    // What Spark writes beside its parts is passed over.
    std::fs::write(dir.join("_SUCCESS"), b"").unwrap();
    std::fs::write(dir.join(".part-00000-x.snappy.parquet.crc"), b"crc").unwrap();
    let s = FeatureStore::load(&dir).unwrap();
    assert_eq!(s.len(), 3);
    let one = FeatureStore::from_csv_bytes(
        b"customer_id,arpu,plan\nC1,1.5,basic\nC2,2.5,5g\nC3,3.5,5g\n",
        "one.csv",
    )
    .unwrap();
    assert_eq!(s.dictionary(1), one.dictionary(1));
    for (row, id) in ["C1", "C2", "C3"].iter().enumerate() {
        assert_eq!(s.row(id), one.row(id), "{id}");
        assert_eq!(s.row_at(row), one.row_at(row), "rows in part order");
    }
    // A server opens it the same way, and its version is its parts' content.
    let opened = FeatureStore::open(&dir, None).unwrap();
    assert_eq!(opened.len(), 3);
    let before = content_crc(&dir).unwrap();
    assert_eq!(content_crc(&dir).unwrap(), before);
    part(
        &dir,
        "part-00001-x.snappy.parquet",
        &rows(&["C3"], &[4.5], &["5g"]),
    );
    assert_ne!(content_crc(&dir).unwrap(), before);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn faults_in_a_folder_name_the_part_and_its_row() {
    let dir = folder("faults");
    part(
        &dir,
        "part-00000.parquet",
        &rows(&["", "C1", "C2"], &[0.0, 1.0, 2.0], &["z", "a", "b"]),
    );
    part(
        &dir,
        "part-00001.parquet",
        &rows(
            &["C3", "C1", "C4"],
            &[3.0, 4.0, f64::INFINITY],
            &["c", "d", "e"],
        ),
    );
    let e = refusal(&dir);
    assert!(e.contains(&format!("{}: part", dir.display())), "{e}");
    assert!(
        e.contains("part `part-00000.parquet`, row 1, column `customer_id`: empty customer_id"),
        "{e}"
    );
    assert!(
        e.contains(
            "part `part-00001.parquet`, row 2, column `customer_id`: duplicate customer_id `C1` \
             (first seen on part `part-00000.parquet`, data row 2)"
        ),
        "{e}"
    );
    assert!(
        e.contains("part `part-00001.parquet`, row 3, column `arpu`: `inf` is not a finite number"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn parts_that_disagree_on_their_columns_are_refused_naming_both() {
    let dir = folder("unlike");
    part(&dir, "a.parquet", &rows(&["C1"], &[1.0], &["x"]));
    let numbers_for_plan = RecordBatch::try_from_iter([
        (
            "customer_id",
            Arc::new(StringArray::from(vec!["C2"])) as ArrayRef,
        ),
        ("arpu", Arc::new(Int64Array::from(vec![2])) as ArrayRef),
        ("plan", Arc::new(Int64Array::from(vec![7])) as ArrayRef),
    ])
    .unwrap();
    part(&dir, "b.parquet", &numbers_for_plan);
    let e = refusal(&dir);
    // A part whose ids are floats is refused as the first part would be, not row by row.
    let c = dir.join("c");
    std::fs::create_dir(&c).unwrap();
    part(&c, "a.parquet", &rows(&["C1"], &[1.0], &["x"]));
    let float_ids = RecordBatch::try_from_iter([
        (
            "customer_id",
            Arc::new(Float64Array::from(vec![2.0])) as ArrayRef,
        ),
        ("arpu", Arc::new(Float64Array::from(vec![2.0])) as ArrayRef),
        ("plan", Arc::new(StringArray::from(vec!["y"])) as ArrayRef),
    ])
    .unwrap();
    part(&c, "b.parquet", &float_ids);
    let ids = refusal(&c);
    assert!(
        ids.contains(
            "part `b.parquet` differs from `a.parquet`: column `customer_id`: expected strings \
             or integers, found Float64"
        ),
        "{ids}"
    );
    // Integers where the first part has floats are the same kind; text against numbers is not.
    assert!(
        e.contains(
            "part `b.parquet` differs from `a.parquet`: column `plan` holds text (Utf8) there, \
             numbers (Int64) here"
        ),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A part where a column holds no value, which pandas and polars then write with the type
/// `null`, takes the other parts' kind for it (in any part: the first's too); two parts that
/// say different kinds still differ, named against the part that said the kind first.
#[test]
fn a_part_whose_column_has_the_null_type_takes_the_other_parts_kind() {
    use arrow_array::NullArray;
    let dir = folder("null-part");
    let nulls = |ids: &[&str]| {
        RecordBatch::try_from_iter_with_nullable([
            (
                "customer_id",
                Arc::new(StringArray::from(ids.to_vec())) as ArrayRef,
                false,
            ),
            (
                "arpu",
                Arc::new(NullArray::new(ids.len())) as ArrayRef,
                true,
            ),
            (
                "plan",
                Arc::new(NullArray::new(ids.len())) as ArrayRef,
                true,
            ),
        ])
        .unwrap()
    };
    part(&dir, "a.parquet", &nulls(&["C1", "C2"]));
    part(&dir, "b.parquet", &rows(&["C3"], &[3.5], &["gold"]));
    part(&dir, "c.parquet", &nulls(&["C4"]));
    let store = FeatureStore::load(&dir).unwrap();
    let (arpu, plan) = (store.column("arpu").unwrap(), store.column("plan").unwrap());
    assert!(store.dictionary(plan).is_some(), "plan holds text");
    assert!(store.dictionary(arpu).is_none(), "arpu holds numbers");
    for id in ["C1", "C2", "C4"] {
        let row = store.row(id).unwrap();
        assert!(row[arpu].is_nan() && row[plan].is_nan(), "{id}: {row:?}");
    }
    let c3 = store.row("C3").unwrap();
    assert_eq!(c3[arpu], 3.5);
    assert_eq!(
        store.dictionary(plan).unwrap().get(c3[plan] as u32),
        Some("gold")
    );
    // Numbers in a fourth part, where the second said text: refused against the second.
    let numbers_for_plan = RecordBatch::try_from_iter([
        (
            "customer_id",
            Arc::new(StringArray::from(vec!["C5"])) as ArrayRef,
        ),
        ("arpu", Arc::new(Float64Array::from(vec![5.0])) as ArrayRef),
        ("plan", Arc::new(Int64Array::from(vec![7])) as ArrayRef),
    ])
    .unwrap();
    part(&dir, "d.parquet", &numbers_for_plan);
    let e = refusal(&dir);
    assert!(
        e.contains(
            "part `d.parquet` differs from `b.parquet`: column `plan` holds text (Utf8) there, \
             numbers (Int64) here"
        ),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_folder_still_being_written_or_holding_folders_or_nothing_is_refused() {
    let dir = folder("shapes");
    assert!(refusal(&dir).contains("no parts"), "empty");
    std::fs::write(dir.join("_SUCCESS"), b"").unwrap();
    assert!(refusal(&dir).contains("no parts"), "only markers");
    part(&dir, "p0.parquet", &rows(&["C1"], &[1.0], &["x"]));
    std::fs::create_dir(dir.join("_temporary")).unwrap();
    assert!(refusal(&dir).contains("a job is still writing this folder"));
    std::fs::remove_dir(dir.join("_temporary")).unwrap();
    std::fs::create_dir(dir.join("date=2026-12-01")).unwrap();
    let e = refusal(&dir);
    assert!(
        e.contains("`date=2026-12-01` is a folder")
            && e.contains("give the folder of one partition"),
        "{e}"
    );
    std::fs::remove_dir(dir.join("date=2026-12-01")).unwrap();
    let fifo = dir.join("p1.parquet");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo (coreutils) failed");
    let e = refusal(&dir);
    assert!(e.contains("not a regular file (a FIFO)"), "{e}");
    std::fs::remove_file(&fifo).unwrap();
    std::fs::write(dir.join("notes.txt"), b"customer_id,x\nC9,1\n").unwrap();
    let e = refusal(&dir);
    assert!(
        e.contains("`notes.txt` is not a Parquet file: a folder is read as a snapshot only"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
