use super::*;

fn parse(text: &str) -> Result<FeatureStore, FeatureError> {
    FeatureStore::from_csv_bytes(text.as_bytes(), "t.csv")
}

#[test]
fn loads_rows_and_missing_values() {
    let s = parse("customer_id,a,b\nC1,1.5,\nC2,,2\n").unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s.columns().len(), 2);
    assert_eq!(s.column("b"), Some(1));
    let r1 = s.row("C1").unwrap();
    assert_eq!(r1[0], 1.5);
    assert!(r1[1].is_nan());
    let r2 = s.row("C2").unwrap();
    assert!(r2[0].is_nan());
    assert_eq!(r2[1], 2.0);
    assert!(s.row("C3").is_none());
    assert_eq!(s.id_at(1), Some("C2"));
}

fn parse_err(text: &str) -> (u64, usize, String) {
    match parse(text) {
        Err(FeatureError::Parse {
            line,
            column,
            detail,
            ..
        }) => (line, column, detail),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn line_numbers_are_the_same_with_crlf_line_endings() {
    // Python's csv writer and Windows exports end lines with CRLF.
    for nl in ["\n", "\r\n"] {
        let text = ["customer_id,a,b:num", "C1,1,2", "C2,3,4", "C3,5,abc", ""].join(nl);
        let (line, col, _) = parse_err(&text);
        assert_eq!((line, col), (4, 3), "{nl:?}");
        let text = ["customer_id,a", "C1,1", "C2,2", "C1,3", ""].join(nl);
        let (line, _, detail) = parse_err(&text);
        assert_eq!(line, 4, "{nl:?}: {detail}");
        let text = ["customer_id,a", "C1,1", "C2,1,2", ""].join(nl);
        assert_eq!(parse_err(&text).0, 3, "{nl:?}: a ragged row");
    }
}

#[test]
fn refuses_bad_numbers_with_line_and_column() {
    let (line, col, detail) = parse_err("customer_id,a,b:num\nC1,1,2\nC2,3,abc\n");
    assert_eq!((line, col), (3, 3));
    assert!(detail.contains("`b`") && detail.contains("abc"), "{detail}");
    let (_, _, detail) = parse_err("customer_id,a\nC1,inf\n");
    assert!(detail.contains("finite"), "{detail}");
    let (_, _, detail) = parse_err("customer_id,a\nC1,1e39\n");
    assert!(detail.contains("out of range"), "{detail}");
}

#[test]
fn refuses_structural_faults() {
    assert_eq!(parse_err("id,a\nC1,1\n").0, 1);
    assert!(parse_err("customer_id,a,a\n")
        .2
        .contains("duplicate column"));
    let (line, _, detail) = parse_err("customer_id,a\nC1,1\nC1,2\n");
    assert_eq!(line, 3);
    assert!(detail.contains("duplicate customer_id"), "{detail}");
    let (line, _, _) = parse_err("customer_id,a\nC1,1\nC2,1,2\n");
    assert_eq!(line, 3);
    assert!(parse_err("customer_id,a\n,1\n")
        .2
        .contains("empty customer_id"));
    assert!(parse_err("").2.contains("header"));
}

#[test]
fn binary_round_trip_and_damage_detection() {
    let s = parse("customer_id,a,b\nC1,1.5,\nC2,,2\nC3,3,4\n").unwrap();
    let dir = std::env::temp_dir().join(format!("nbf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.nbf");
    write_nbf(&s, &path).unwrap();
    let back = FeatureStore::load(&path).unwrap();
    assert_eq!(back.len(), 3);
    assert_eq!(back.columns(), s.columns());
    for id in ["C1", "C2", "C3"] {
        let (a, b) = (s.row(id).unwrap(), back.row(id).unwrap());
        assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 8] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = FeatureStore::load(&path).unwrap_err().to_string();
    assert!(err.contains("checksum"), "{err}");
    std::fs::write(&path, &bytes[..n / 2]).unwrap();
    let err = FeatureStore::load(&path).unwrap_err().to_string();
    assert!(err.contains("truncated") || err.contains("fit"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn in_memory_binary_form_matches_the_file() {
    let s = parse("customer_id,a,b\nC1,1.5,\nC2,,2\n").unwrap();
    let dir = std::env::temp_dir().join(format!("nbf-mem-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.nbf");
    write_nbf(&s, &path).unwrap();
    let bytes = s.to_nbf_bytes();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    std::fs::remove_dir_all(&dir).unwrap();
    let back = FeatureStore::from_nbf_bytes(&bytes, "mem.nbf").unwrap();
    assert_eq!(back.source(), "mem.nbf");
    assert_eq!(back.to_nbf_bytes(), bytes);
    let err = FeatureStore::from_nbf_bytes(&bytes[..bytes.len() - 1], "mem.nbf").unwrap_err();
    assert!(err.to_string().starts_with("mem.nbf: "), "{err}");
}

#[test]
fn bytes_held_counts_values_and_index() {
    let s = parse("customer_id,a,b\nC1,1,2\nC2,3,4\n").unwrap();
    assert!(s.bytes_held() >= 4 * 4 + 4);
}

#[test]
fn keeps_exact_values_f32_does_not_hold_and_round_trips_them() {
    let s =
        parse("customer_id,n,x,y\nC1,1,85.21,0.5\nC2,2,2710.2932,\nC3,3,0.25,1e-300\n").unwrap();
    // Only the column holding values f32 cannot represent carries residuals.
    assert_eq!(s.exact().columns(), &[1]);
    let r = s.exact_row("C2").unwrap();
    assert_eq!((r.f64(0), r.f64(1)), (2.0, 2710.2932));
    assert!(r.f64(2).is_nan());
    assert!(std::ptr::eq(r.values(), s.row("C2").unwrap()));
    assert_eq!(s.exact_row("C1").unwrap().f64(1), 85.21);
    assert_eq!(s.row("C1").unwrap()[1], 85.21_f32);
    // Below f32's normal range the f32 (here 0) stands for the value.
    assert_eq!(s.exact_row("C3").unwrap().f64(2), 0.0);
    assert_eq!(&s.to_nbf_bytes()[..4], b"NBF4");
    let back4 = FeatureStore::from_nbf_bytes(&s.to_nbf_bytes(), "t.nbf").unwrap();
    assert_eq!(back4.exact(), s.exact());
    // Version 3 files (without the stored index) still load; the damage below is placed in
    // its layout, whose residuals end just before the checksum.
    let bytes = binary::write_v3(&s);
    assert_eq!(&bytes[..4], b"NBF3");
    let back = FeatureStore::from_nbf_bytes(&bytes, "t.nbf").unwrap();
    assert_eq!(back.exact(), s.exact());
    // Version 2 files (written before string columns) still load, residuals included.
    let v2 = binary::write_legacy(&s);
    assert_eq!(&v2[..4], b"NBF2");
    let old = FeatureStore::from_nbf_bytes(&v2, "t.nbf").unwrap();
    assert_eq!(old.exact(), s.exact());
    assert_eq!(old.exact_row("C2").unwrap().f64(1), 2710.2932);
    assert_eq!(back.exact_row("C2").unwrap().f64(1), 2710.2932);
    // Residuals cost 4 bytes per row of an inexact column, nothing for the others.
    assert_eq!(s.exact().residuals().len(), 3);
    // A damaged residual is refused, not misread (the checksum is recomputed to get there).
    let mut bad = bytes[..bytes.len() - 4].to_vec();
    let at = bad.len() - 4;
    bad[at..].copy_from_slice(&(1_i32 << 30).to_le_bytes());
    let crc = crc32fast::hash(&bad);
    bad.extend_from_slice(&crc.to_le_bytes());
    let err = FeatureStore::from_nbf_bytes(&bad, "t.nbf").unwrap_err();
    assert!(err.to_string().contains("residual"), "{err}");
}

#[test]
fn version_1_files_still_load() {
    let s = parse("customer_id,a,b\nC1,1.5,\nC2,,2\n").unwrap();
    assert!(s.exact().is_empty());
    let bytes = binary::write_legacy(&s);
    assert_eq!(&bytes[..4], b"NBF1");
    let back = FeatureStore::from_nbf_bytes(&bytes, "t.nbf").unwrap();
    assert_eq!(back.row("C2").unwrap()[1], 2.0);
    assert_eq!(back.exact_row("C2").unwrap().f64(1), 2.0);
}

#[test]
fn detects_string_columns_and_honours_header_kinds() {
    let s = parse(
        "customer_id,segment,zip:str,tenure:num,arpu,code\n\
         C1,gold,007,12,1.5,10\n\
         C2,,010,,2,20\n\
         C3,bronze,7,3,,A7\n\
         C4,gold,,1,3,\n",
    )
    .unwrap();
    assert_eq!(s.columns().len(), 5);
    assert_eq!(s.column("zip"), Some(1));
    assert_eq!(s.kind(0), ColumnKind::Text { distinct: 2 });
    assert_eq!(s.kind(1), ColumnKind::Text { distinct: 3 });
    assert_eq!(s.kind(2), ColumnKind::Number);
    assert_eq!(s.kind(3), ColumnKind::Number);
    // `code` looked numeric for two rows, then held `A7`: read again as strings, `10` kept
    // as the text it was.
    assert_eq!(s.kind(4), ColumnKind::Text { distinct: 3 });
    let value = |id: &str, c: usize| {
        let cell = s.row(id).unwrap()[c];
        s.dictionary(c)
            .and_then(|d| d.value_of(cell))
            .map(str::to_owned)
    };
    assert_eq!(value("C1", 0).as_deref(), Some("gold"));
    assert_eq!(value("C2", 0), None, "an empty field is missing");
    assert_eq!(value("C1", 1).as_deref(), Some("007"), "leading zeros kept");
    assert_eq!(value("C3", 1).as_deref(), Some("7"));
    assert_eq!(value("C4", 1), None);
    assert_eq!(value("C1", 4).as_deref(), Some("10"));
    assert_eq!(value("C3", 4).as_deref(), Some("A7"));
    assert_eq!(s.row("C1").unwrap()[2], 12.0);
    // Codes follow the sorted dictionary whatever the row order.
    assert_eq!(
        s.dictionary(0).unwrap().iter().collect::<Vec<_>>(),
        ["bronze", "gold"]
    );
    assert_eq!(s.row("C1").unwrap()[0], 1.0);
    // A forced numeric column refuses text with its place.
    let (line, col, detail) = parse_err("customer_id,tenure:num\nC1,1\nC2,ten\n");
    assert_eq!((line, col), (3, 2));
    assert!(
        detail.contains("`tenure`") && detail.contains("not a number"),
        "{detail}"
    );
    // A column of numbers only, or empty only, stays numeric.
    let s = parse("customer_id,a,b\nC1,1,\nC2,2,\n").unwrap();
    assert_eq!(
        (s.kind(0), s.kind(1)),
        (ColumnKind::Number, ColumnKind::Number)
    );
    assert!(parse_err("customer_id,a:str,a\n")
        .2
        .contains("duplicate column"));
}

#[test]
fn refuses_a_column_of_ids_naming_it() {
    let mut text = String::from("customer_id,n,session\n");
    for i in 0..=MAX_DISTINCT {
        text += &format!("C{i},1,s{i}\n");
    }
    let (line, col, detail) = parse_err(&text);
    assert_eq!((line, col), (MAX_DISTINCT as u64 + 2, 3));
    assert!(detail.contains("`session`"), "{detail}");
    assert!(detail.contains("65536 distinct values"), "{detail}");
    assert!(detail.contains("ids and free text"), "{detail}");
    // Exactly the limit loads.
    let cut: String = text
        .lines()
        .take(MAX_DISTINCT + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    let s = parse(&cut).unwrap();
    assert_eq!(
        s.kind(1),
        ColumnKind::Text {
            distinct: MAX_DISTINCT
        }
    );
    let d = s.dictionary(1).unwrap();
    let cell = s.row("C65535").unwrap()[1];
    assert_eq!(d.value_of(cell), Some("s65535"));
    let top = (0..s.len())
        .map(|r| s.row_at(r).unwrap()[1])
        .fold(0.0, f32::max);
    assert_eq!(top, 65535.0, "the last code is exact in f32");
}

#[test]
fn string_columns_round_trip_through_the_binary_form() {
    let s = parse(
        "customer_id,segment,arpu,plan\nC1,gold,85.21,unlimited_5g\nC2,,2,\nC3,bronze,3,basic\n",
    )
    .unwrap();
    let bytes = s.to_nbf_bytes();
    assert_eq!(&bytes[..4], b"NBF4");
    // Sections start at multiples of 8 (the header gives their offsets), for a memory map.
    for k in 0..6 {
        let at = 24 + 8 * k;
        let off = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(off % 8, 0, "section {k} at {off}");
    }
    let values_off = u64::from_le_bytes(bytes[48..56].try_into().unwrap()) as usize;
    let first = f32::from_le_bytes(bytes[values_off..values_off + 4].try_into().unwrap());
    assert_eq!(first, s.row("C1").unwrap()[0], "values lie at their offset");
    let back = FeatureStore::from_nbf_bytes(&bytes, "t.nbf").unwrap();
    for c in 0..3 {
        assert_eq!(back.kind(c), s.kind(c));
        assert_eq!(back.dictionary(c), s.dictionary(c));
    }
    for id in ["C1", "C2", "C3"] {
        let (a, b) = (s.row(id).unwrap(), back.row(id).unwrap());
        assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
    assert_eq!(back.exact_row("C1").unwrap().f64(1), 85.21);
    assert_eq!(back.to_nbf_bytes(), bytes);
    // A cell that is not a code of its dictionary is refused (checksum recomputed to get there).
    let mut bad = bytes[..bytes.len() - 4].to_vec();
    bad[values_off..values_off + 4].copy_from_slice(&7.0_f32.to_le_bytes());
    let crc = crc32fast::hash(&bad);
    bad.extend_from_slice(&crc.to_le_bytes());
    let err = FeatureStore::from_nbf_bytes(&bad, "t.nbf").unwrap_err();
    assert!(err.to_string().contains("`segment`"), "{err}");
    // Every truncation is refused, never a panic.
    for n in 0..bytes.len() {
        assert!(FeatureStore::from_nbf_bytes(&bytes[..n], "t.nbf").is_err());
    }
}

/// Writes `batch` as `<tag>-<pid>/f.parquet` in the temporary folder: (folder, file).
#[cfg(feature = "offline")]
fn write_parquet(
    tag: &str,
    batch: &arrow_array::RecordBatch,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("f.parquet");
    let mut w = ::parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    (dir, path)
}

#[cfg(feature = "offline")]
#[test]
fn parquet_string_and_dictionary_columns() {
    use arrow_array::types::Int32Type;
    use arrow_array::StringArray;
    use arrow_array::{ArrayRef, DictionaryArray, Float64Array, LargeStringArray, RecordBatch};
    use std::sync::Arc;
    let ids = Arc::new(StringArray::from(vec!["C1", "C2", "C3", "C4"])) as ArrayRef;
    let segment: DictionaryArray<Int32Type> =
        vec![Some("gold"), None, Some("bronze"), Some("gold")]
            .into_iter()
            .collect();
    let plan = LargeStringArray::from(vec![Some("basic"), Some(""), None, Some("5g")]);
    let arpu = Float64Array::from(vec![Some(85.21), None, Some(1.0), Some(2.0)]);
    let batch = RecordBatch::try_from_iter(vec![
        ("customer_id", ids),
        ("segment", Arc::new(segment) as ArrayRef),
        ("plan", Arc::new(plan) as ArrayRef),
        ("arpu", Arc::new(arpu) as ArrayRef),
    ])
    .unwrap();
    let (dir, path) = write_parquet("pq-str-test", &batch);
    let s = FeatureStore::load(&path).unwrap();
    let csv = parse(
        "customer_id,segment,plan:str,arpu\nC1,gold,basic,85.21\nC2,,,\nC3,bronze,,1\nC4,gold,5g,2\n",
    )
    .unwrap();
    for c in 0..3 {
        assert_eq!(s.kind(c), csv.kind(c), "column {c}");
        assert_eq!(s.dictionary(c), csv.dictionary(c), "column {c}");
    }
    for id in ["C1", "C2", "C3", "C4"] {
        let (a, b) = (s.row(id).unwrap(), csv.row(id).unwrap());
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{id}"
        );
    }
    // The format is the file's, whatever its name says.
    let renamed = dir.join("F.PARQUET");
    std::fs::copy(&path, &renamed).unwrap();
    assert_eq!(FeatureStore::load(&renamed).unwrap().len(), 4);
    std::fs::remove_dir_all(&dir).ok();
}

/// A double beyond what a 32-bit feature holds is refused as the CSV loader refuses it, with
/// its row and column: it would serve as infinity, every score saturated.
#[cfg(feature = "offline")]
#[test]
fn a_parquet_double_beyond_32_bits_is_refused_with_its_place() {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let batch = RecordBatch::try_from_iter(vec![
        (
            "customer_id",
            Arc::new(StringArray::from(vec!["C1", "C2"])) as ArrayRef,
        ),
        (
            "arpu",
            Arc::new(Float64Array::from(vec![Some(3.0e38), Some(1e300)])) as ArrayRef,
        ),
    ])
    .unwrap();
    let (dir, path) = write_parquet("pq-huge-test", &batch);
    let e = match FeatureStore::load(&path) {
        Ok(_) => panic!("1e300 loaded"),
        Err(e) => e.to_string(),
    };
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        e.contains("row 2, column `arpu`") && e.contains("out of range: features are 32-bit"),
        "{e}"
    );
    let (_, _, detail) = parse_err("customer_id,a\nC1,1e39\n");
    assert!(detail.contains("`1e39` is out of range"), "{detail}");
}

#[cfg(not(feature = "offline"))]
#[test]
fn a_parquet_snapshot_in_the_lean_build_is_refused_naming_the_feature() {
    let dir = std::env::temp_dir().join(format!("nb-lean-parquet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Even a file that would parse as CSV is not read as one.
    let path = dir.join("features.parquet");
    std::fs::write(&path, "customer_id,x\nC1,1\n").unwrap();
    let e = match FeatureStore::load(&path) {
        Ok(_) => panic!("a Parquet snapshot loaded in the lean build"),
        Err(e) => e.to_string(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        e.starts_with(&path.display().to_string()) && e.contains("the `offline` feature"),
        "{e}"
    );
}

/// A fresh folder under the temp dir, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nbf-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Mixed columns: numbers, a number f32 does not hold (residuals), strings, missing cells,
/// and enough ids for the stored index to have collisions to probe past.
fn mixed(rows: usize) -> FeatureStore {
    let mut csv = String::from("customer_id,n,x,segment\n");
    for r in 0..rows {
        let seg = ["gold", "bronze", ""][r % 3];
        let x = if r % 5 == 0 {
            String::new()
        } else {
            format!("{}.2932", r)
        };
        csv.push_str(&format!("C{r:07},{r},{x},{seg}\n"));
    }
    parse(&csv).unwrap()
}

#[test]
fn a_mapped_store_answers_as_the_owned_one_does() {
    let dir = Scratch::new("map");
    let owned = mixed(5_000);
    let src = dir.0.join("f.nbf");
    write_nbf(&owned, &src).unwrap();
    let store = SnapshotStore::new(dir.0.join("snapshots"));
    let mapped = FeatureStore::open(&src, Some(&store)).unwrap();
    let entry = mapped.mapped_file().unwrap().to_owned();
    assert_eq!(
        entry.parent().unwrap(),
        std::fs::canonicalize(store.dir()).unwrap()
    );
    assert_eq!(mapped.source(), src.display().to_string());
    assert_eq!(
        mapped.mapped_bytes() as u64,
        std::fs::metadata(&src).unwrap().len()
    );
    assert_eq!(mapped.len(), owned.len());
    assert_eq!(mapped.columns(), owned.columns());
    assert_eq!(mapped.exact(), owned.exact());
    for c in 0..3 {
        assert_eq!(mapped.dictionary(c), owned.dictionary(c));
    }
    for r in 0..owned.len() {
        let id = owned.id_at(r).unwrap();
        assert_eq!(mapped.id_at(r), Some(id));
        let (a, b) = (owned.exact_row(id).unwrap(), mapped.exact_row(id).unwrap());
        for c in 0..3 {
            assert_eq!(a.f64(c).to_bits(), b.f64(c).to_bits(), "{id} column {c}");
        }
    }
    for miss in ["C9999999", "", "C000000", "C00000001"] {
        assert!(mapped.row(miss).is_none(), "{miss}");
    }
    // Heap: names and dictionaries only; the values, ids and index stay in the page cache.
    assert!(mapped.bytes_held() < 1024, "{}", mapped.bytes_held());
    assert!(owned.bytes_held() > 5_000 * 12);
    // The same bytes back: the writer reads a mapped store as it reads an owned one.
    assert_eq!(mapped.to_nbf_bytes(), std::fs::read(&src).unwrap());
    // A second open of the same content maps the same entry without copying again, and so
    // does a path into the store itself.
    let again = FeatureStore::open(&src, Some(&store)).unwrap();
    assert_eq!(again.mapped_file(), Some(entry.as_path()));
    let direct = FeatureStore::open(&entry, Some(&store)).unwrap();
    assert_eq!(direct.mapped_file(), Some(entry.as_path()));
    // The content's CRC, the trailer's: the whole file's is one constant for every `.nbf`.
    let bytes = std::fs::read(&src).unwrap();
    let body = &bytes[..bytes.len() - 4];
    assert_eq!(mapped.file_crc(), Some(crc32fast::hash(body)));
    assert_eq!(
        bytes[bytes.len() - 4..],
        crc32fast::hash(body).to_le_bytes()
    );
}

#[test]
fn a_mapped_store_survives_its_source_changing_and_the_store_is_read_only() {
    let dir = Scratch::new("map-src");
    let s = mixed(300);
    let src = dir.0.join("f.nbf");
    write_nbf(&s, &src).unwrap();
    let store = SnapshotStore::new(dir.0.join("snapshots"));
    let mapped = FeatureStore::open(&src, Some(&store)).unwrap();
    let entry = mapped.mapped_file().unwrap().to_owned();
    assert!(std::fs::metadata(&entry).unwrap().permissions().readonly());
    // Truncated in place, overwritten in place, deleted: the mapped copy does not change.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&src)
        .unwrap()
        .set_len(10)
        .unwrap();
    let bits = |r: Option<&[f32]>| r.unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(mapped.row("C0000042")), bits(s.row("C0000042")));
    std::fs::write(&src, vec![0xAB; 4096]).unwrap();
    assert_eq!(bits(mapped.row("C0000299")), bits(s.row("C0000299")));
    std::fs::remove_file(&src).unwrap();
    assert_eq!(mapped.id_at(7), Some("C0000007"));
}

#[test]
fn a_damaged_file_is_refused_with_its_path_and_leaves_no_entry() {
    let dir = Scratch::new("map-bad");
    let s = mixed(300);
    let src = dir.0.join("f.nbf");
    write_nbf(&s, &src).unwrap();
    let mut bytes = std::fs::read(&src).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&src, &bytes).unwrap();
    let store = SnapshotStore::new(dir.0.join("snapshots"));
    let err = FeatureStore::open(&src, Some(&store))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(&src.display().to_string()), "{err}");
    assert!(err.contains("checksum"), "{err}");
    let left: Vec<_> = std::fs::read_dir(store.dir()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    // An entry damaged in the store is refused too, and removed so the next load copies again.
    bytes[mid] ^= 0x01;
    std::fs::write(&src, &bytes).unwrap();
    let entry = FeatureStore::open(&src, Some(&store))
        .unwrap()
        .mapped_file()
        .unwrap()
        .to_owned();
    let mut perms = std::fs::metadata(&entry).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&entry, perms).unwrap();
    let mut damaged = std::fs::read(&entry).unwrap();
    damaged[100] ^= 0x80;
    std::fs::write(&entry, &damaged).unwrap();
    let err = FeatureStore::open(&src, Some(&store))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checksum") && err.contains(&*entry.to_string_lossy()),
        "{err}"
    );
    assert!(!entry.exists());
    assert!(FeatureStore::open(&src, Some(&store)).is_ok());
}

#[test]
fn older_versions_and_csv_load_into_memory_even_with_a_store() {
    let dir = Scratch::new("map-old");
    let s = mixed(50);
    let store = SnapshotStore::new(dir.0.join("snapshots"));
    let v3 = dir.0.join("v3.nbf");
    std::fs::write(&v3, binary::write_v3(&s)).unwrap();
    let old = FeatureStore::open(&v3, Some(&store)).unwrap();
    assert!(old.mapped_file().is_none());
    assert_eq!(old.id_at(49), Some("C0000049"));
    assert_eq!(old.row("C0000049").unwrap()[0], 49.0);
    let csv = dir.0.join("f.csv");
    std::fs::write(&csv, "customer_id,a\nC1,1\n").unwrap();
    assert!(FeatureStore::open(&csv, Some(&store))
        .unwrap()
        .mapped_file()
        .is_none());
    assert!(!store.dir().exists(), "nothing was copied");
}

#[test]
fn retain_keeps_what_serves_and_the_previous_one() {
    let dir = Scratch::new("map-gc");
    let store = SnapshotStore::new(dir.0.join("snapshots"));
    let mut entries = Vec::new();
    for n in [10, 20, 30] {
        let src = dir.0.join(format!("f{n}.nbf"));
        write_nbf(&mixed(n), &src).unwrap();
        let m = FeatureStore::open(&src, Some(&store)).unwrap();
        entries.push(m.mapped_file().unwrap().to_owned());
    }
    std::fs::write(store.dir().join("notes.txt"), "not an entry").unwrap();
    // Copies a killed process left: one untouched for longer than a copy pauses, one being
    // written now.
    let left = store.dir().join(".0000abcd-10.nbf.41.1.tmp");
    let busy = store.dir().join(".0000abcd-10.nbf.42.2.tmp");
    std::fs::write(&left, "half a copy").unwrap();
    std::fs::write(&busy, "half a copy").unwrap();
    let long_ago = std::time::SystemTime::now() - super::snapshots::STALE_TMP * 2;
    std::fs::File::options()
        .write(true)
        .open(&left)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    store.retain(&[&entries[2], &entries[1]]);
    assert!(!entries[0].exists());
    assert!(entries[1].exists() && entries[2].exists());
    assert!(store.dir().join("notes.txt").exists());
    assert!(!left.exists() && busy.exists());

    // The node's published snapshot stays whatever a replica keeps of its own loads.
    let published = store.publish(&dir.0.join("f10.nbf")).unwrap();
    store.retain(&[&entries[2]]);
    assert!(published.exists(), "current.nbf's entry was removed");
    assert!(!entries[1].exists());
    assert!(FeatureStore::open(&store.dir().join(super::snapshots::CURRENT), None).is_ok());
}

#[test]
fn a_crafted_index_finds_nothing_rather_than_faulting() {
    // A valid checksum over a table with every slot taken and no id matching: a lookup ends
    // after one pass.
    let s = mixed(20);
    let mut bytes = s.to_nbf_bytes();
    let index_off = u64::from_le_bytes(bytes[64..72].try_into().unwrap()) as usize;
    let slots = u64::from_le_bytes(bytes[index_off..index_off + 8].try_into().unwrap()) as usize;
    let body = bytes.len() - 4;
    for k in 0..slots {
        let at = index_off + 16 + k * 8;
        bytes[at..at + 8].copy_from_slice(&(u64::MAX).to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    let dir = Scratch::new("map-crafted");
    let src = dir.0.join("f.nbf");
    std::fs::write(&src, &bytes).unwrap();
    let m = FeatureStore::open(&src, Some(&SnapshotStore::new(dir.0.join("s")))).unwrap();
    assert!(m.row("C0000001").is_none());
    assert_eq!(m.id_at(1), Some("C0000001"));
}

#[test]
fn publish_points_current_at_the_newest_entry_and_replicas_map_it_in_place() {
    let dir = Scratch::new("map-publish");
    let store = SnapshotStore::new(dir.0.join("snapshots"));
    let current = store.dir().join(snapshots::CURRENT);
    let mut published = Vec::new();
    for n in [10, 20, 30] {
        let src = dir.0.join(format!("f{n}.nbf"));
        write_nbf(&mixed(n), &src).unwrap();
        let entry = store.publish(&src).unwrap();
        assert_eq!(std::fs::canonicalize(&current).unwrap(), entry);
        // A replica given current.nbf maps the entry itself: nothing is copied.
        let before = std::fs::read_dir(store.dir()).unwrap().count();
        let m = FeatureStore::open(&current, Some(&store)).unwrap();
        assert_eq!(m.mapped_file(), Some(entry.as_path()));
        assert_eq!(m.len(), n);
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), before);
        published.push(entry);
    }
    // The newest and the one before it stay; the first is gone.
    assert!(!published[0].exists());
    assert!(published[1].exists() && published[2].exists());
    // An older version cannot be mapped: refused, naming the command that makes one.
    let v3 = dir.0.join("v3.nbf");
    std::fs::write(&v3, binary::write_v3(&mixed(5))).unwrap();
    let err = store.publish(&v3).unwrap_err().to_string();
    assert!(err.contains("features compile"), "{err}");
    assert_eq!(std::fs::canonicalize(&current).unwrap(), published[2]);
}

#[test]
fn an_entry_written_over_through_current_is_replaced_by_the_next_publish() {
    let dir = Scratch::new("map-overwritten");
    let store = SnapshotStore::new(dir.0.join("snapshots"));
    let (a, b) = (dir.0.join("a.nbf"), dir.0.join("b.nbf"));
    write_nbf(&mixed(10), &a).unwrap();
    write_nbf(&mixed(20), &b).unwrap();
    let entry = store.publish(&a).unwrap();
    // The operator's `cp b.nbf store/current.nbf`: through the link, into the entry.
    std::fs::write(
        store.dir().join(super::snapshots::CURRENT),
        std::fs::read(&b).unwrap(),
    )
    .unwrap();
    assert_ne!(std::fs::read(&entry).unwrap(), std::fs::read(&a).unwrap());
    assert_eq!(store.publish(&a).unwrap(), entry);
    assert_eq!(std::fs::read(&entry).unwrap(), std::fs::read(&a).unwrap());
    assert!(FeatureStore::open(&store.dir().join(super::snapshots::CURRENT), None).is_ok());
}

#[test]
fn a_snapshot_is_read_by_its_first_bytes_whatever_its_name() {
    let dir = Scratch::new("by-magic");
    let nbf = dir.0.join("snapshot.NBF");
    write_nbf(&mixed(12), &nbf).unwrap();
    let bin = dir.0.join("snapshot.bin");
    std::fs::copy(&nbf, &bin).unwrap();
    for p in [&nbf, &bin] {
        assert_eq!(FeatureStore::load(p).unwrap().len(), 12, "{}", p.display());
    }
    let store = SnapshotStore::new(dir.0.join("snapshots"));
    assert!(FeatureStore::open(&bin, Some(&store))
        .unwrap()
        .mapped_file()
        .is_some());
    let csv = dir.0.join("export");
    std::fs::write(&csv, "customer_id,x\nC1,1\n").unwrap();
    assert_eq!(FeatureStore::load(&csv).unwrap().len(), 1);
}

#[test]
fn a_replica_that_loses_the_race_to_name_its_copy_maps_the_winners() {
    let dir = Scratch::new("map-race");
    let store = SnapshotStore::new(dir.0.join("snapshots"));
    let src = dir.0.join("f.nbf");
    write_nbf(&mixed(10), &src).unwrap();
    let admitted = store.admit(&src).unwrap();
    // Another replica, starting at the same moment, names its own copy first.
    std::fs::copy(&src, &admitted.entry).unwrap();
    let s = FeatureStore::open_admitted(&store, &admitted, &src).unwrap();
    assert_eq!(s.mapped_file(), Some(admitted.entry.as_path()));
    assert!(!admitted.file.exists(), "this replica's copy stayed");
    assert_eq!(s.len(), 10);
    // The pages mapped are the winner's file, not this replica's unlinked copy.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let tmp = admitted
        .file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(!maps.contains(&tmp), "still mapping {tmp}");
    assert!(maps.contains(&*admitted.entry.to_string_lossy()));
}
