use super::*;

pub(super) fn parse(text: &str) -> Result<FeatureStore, FeatureError> {
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

/// The line, column and detail of the (first) fault `text` is refused with.
pub(super) fn parse_err(text: &str) -> (u64, usize, String) {
    match parse(text) {
        Err(FeatureError::Parse {
            line,
            column,
            detail,
            ..
        }) => (line, column, detail),
        Err(FeatureError::Rows { mut faults, .. }) => {
            let first = faults.remove(0);
            (first.line, first.column, first.detail)
        }
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
pub(super) fn write_parquet(
    tag: &str,
    batch: &arrow_array::RecordBatch,
) -> (std::path::PathBuf, std::path::PathBuf) {
    write_parquet_with(tag, batch, None)
}

/// [`write_parquet`] with the writer's properties (a compression codec).
#[cfg(feature = "offline")]
fn write_parquet_with(
    tag: &str,
    batch: &arrow_array::RecordBatch,
    props: Option<::parquet::file::properties::WriterProperties>,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("f.parquet");
    let mut w = ::parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        props,
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

/// A warehouse export's timestamps and dates beside the features: the snapshot loads without
/// them, and says which it left out.
#[cfg(feature = "offline")]
#[test]
fn a_parquet_column_of_another_type_is_left_out_by_name() {
    use arrow_array::{
        ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    };
    use std::sync::Arc;
    let batch = RecordBatch::try_from_iter([
        (
            "customer_id",
            Arc::new(StringArray::from(vec!["A", "B"])) as ArrayRef,
        ),
        (
            "updated_at",
            Arc::new(TimestampMicrosecondArray::from(vec![1_i64, 2])) as ArrayRef,
        ),
        (
            "arpu",
            Arc::new(Float64Array::from(vec![1.5, 2.5])) as ArrayRef,
        ),
        ("born", Arc::new(Date32Array::from(vec![3, 4])) as ArrayRef),
        (
            "plan",
            Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef,
        ),
    ])
    .unwrap();
    let (dir, path) = write_parquet("nb-pq-left-out", &batch);
    let store = FeatureStore::load(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(store.columns(), [Box::from("arpu"), Box::from("plan")]);
    let left: Vec<_> = store.left_out().collect();
    assert_eq!(left, [("updated_at", "Timestamp(µs)"), ("born", "Date32")]);
    assert_eq!(store.row("B").unwrap()[0], 2.5);
    let plan = store.dictionary(1).unwrap();
    assert_eq!(plan.value_of(store.row("A").unwrap()[1]), Some("x"));
}

/// A warehouse's `NUMERIC` exports as a decimal column: read as the numbers a CSV of the same
/// export gives, exact values included.
#[cfg(feature = "offline")]
#[test]
fn parquet_decimal_columns_read_as_the_csv_numbers() {
    use arrow_array::{ArrayRef, Decimal128Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let ids = Arc::new(StringArray::from(vec!["C1", "C2", "C3"])) as ArrayRef;
    let arpu = Decimal128Array::from(vec![Some(8521), None, Some(-5)])
        .with_precision_and_scale(10, 2)
        .unwrap();
    let batch = RecordBatch::try_from_iter(vec![
        ("customer_id", ids),
        ("arpu", Arc::new(arpu) as ArrayRef),
    ])
    .unwrap();
    let (dir, path) = write_parquet("pq-decimal-test", &batch);
    let s = FeatureStore::load(&path).unwrap();
    let csv = parse("customer_id,arpu\nC1,85.21\nC2,\nC3,-0.05\n").unwrap();
    for id in ["C1", "C2", "C3"] {
        assert_eq!(
            s.row(id).unwrap()[0].to_bits(),
            csv.row(id).unwrap()[0].to_bits(),
            "{id}"
        );
        let exact = |st: &FeatureStore| st.exact_row(id).unwrap().f64(0).to_bits();
        assert_eq!(exact(&s), exact(&csv), "{id}");
    }
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
    // A Parquet file (by its first bytes, whatever its name) is refused, not read as CSV.
    let path = dir.join("features.pq");
    std::fs::write(&path, b"PAR1\x15\x04customer_id,x\nC1,1\n").unwrap();
    let e = match FeatureStore::load(&path) {
        Ok(_) => panic!("a Parquet snapshot loaded in the lean build"),
        Err(e) => e.to_string(),
    };
    // A folder of parts (a Spark export) is Parquet too: refused the same way.
    let folder = match FeatureStore::load(&dir) {
        Ok(_) => panic!("a Parquet folder loaded in the lean build"),
        Err(e) => e.to_string(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        e.starts_with(&path.display().to_string()) && e.contains("the `offline` feature"),
        "{e}"
    );
    assert!(
        folder.starts_with(&dir.display().to_string()) && folder.contains("the `offline` feature"),
        "{folder}"
    );
}

/// What warehouses and dataframe libraries write loads: every standard codec, a column without
/// a value tonight (type `null`), half floats and every decimal width.
#[cfg(feature = "offline")]
#[test]
fn parquet_codecs_null_columns_and_every_numeric_width_load() {
    use ::parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
    use ::parquet::file::properties::WriterProperties;
    use arrow_array::types::{Decimal256Type, Decimal32Type, Decimal64Type, Float16Type};
    use arrow_array::{ArrayRef, ArrowPrimitiveType, Float16Array, NullArray, PrimitiveArray};
    use arrow_array::{RecordBatch, StringArray};
    use std::sync::Arc;
    type I256 = <Decimal256Type as ArrowPrimitiveType>::Native;
    type F16 = <Float16Type as ArrowPrimitiveType>::Native;
    let d32 = PrimitiveArray::<Decimal32Type>::from(vec![Some(8521), None])
        .with_precision_and_scale(9, 2)
        .unwrap();
    let d64 = PrimitiveArray::<Decimal64Type>::from(vec![Some(-5_i64), Some(1)])
        .with_precision_and_scale(18, 2)
        .unwrap();
    let d256 = PrimitiveArray::<Decimal256Type>::from(vec![Some(I256::from_i128(8521)), None])
        .with_precision_and_scale(76, 2)
        .unwrap();
    let batch = RecordBatch::try_from_iter_with_nullable(vec![
        (
            "customer_id",
            Arc::new(StringArray::from(vec!["C1", "C2"])) as ArrayRef,
            false,
        ),
        ("promo_code", Arc::new(NullArray::new(2)) as ArrayRef, true),
        (
            "half",
            Arc::new(Float16Array::from(vec![Some(F16::from_f32(1.5)), None])) as ArrayRef,
            true,
        ),
        ("d32", Arc::new(d32) as ArrayRef, true),
        ("d64", Arc::new(d64) as ArrayRef, true),
        ("d256", Arc::new(d256) as ArrayRef, true),
    ])
    .unwrap();
    let csv = parse(
        "customer_id,promo_code:num,half,d32,d64,d256\nC1,,1.5,85.21,-0.05,85.21\nC2,,,,0.01,\n",
    )
    .unwrap();
    let codecs = [
        Compression::UNCOMPRESSED,
        Compression::SNAPPY,
        Compression::GZIP(GzipLevel::default()),
        Compression::LZ4,
        Compression::LZ4_RAW,
        Compression::BROTLI(BrotliLevel::default()),
        Compression::ZSTD(ZstdLevel::default()),
    ];
    for codec in codecs {
        let props = WriterProperties::builder().set_compression(codec).build();
        let (dir, path) = write_parquet_with("pq-codecs", &batch, Some(props));
        let s = FeatureStore::load(&path).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(s.columns(), csv.columns(), "{codec:?}");
        assert_eq!(s.left_out().count(), 0, "{codec:?}");
        for id in ["C1", "C2"] {
            let (a, b) = (s.exact_row(id).unwrap(), csv.exact_row(id).unwrap());
            for c in 0..s.columns().len() {
                assert_eq!(
                    a.f64(c).to_bits(),
                    b.f64(c).to_bits(),
                    "{codec:?} {id} column {c}"
                );
            }
        }
    }
}

/// A page whose CRC-32 (what Spark and parquet-mr write in every page header) does not match
/// its bytes is refused, not read as other numbers.
#[cfg(feature = "offline")]
#[test]
fn a_parquet_page_that_fails_its_checksum_is_refused() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/parquet/checksummed.parquet"
    );
    let good = FeatureStore::load(std::path::Path::new(fixture)).unwrap();
    assert_eq!(good.exact_row("C1").unwrap().f64(0), 34.93);
    let mut bytes = std::fs::read(fixture).unwrap();
    // The page's values, in order (statistics elsewhere hold 34.93 alone).
    let values: Vec<u8> = [34.93_f64, 12.5, 7.25]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let at = bytes.windows(24).position(|w| w == values).unwrap();
    bytes[at + 6] ^= 0x10;
    let dir = std::env::temp_dir().join(format!("pq-crc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let damaged = dir.join("damaged.parquet");
    std::fs::write(&damaged, &bytes).unwrap();
    let e = FeatureStore::load(&damaged).err().map(|e| e.to_string());
    std::fs::remove_dir_all(&dir).ok();
    let e = e.expect("a damaged page loaded");
    assert!(e.contains("checksum"), "{e}");
}

/// A warehouse's BIGINT key and a pandas category of ids are customer ids as their text.
#[cfg(feature = "offline")]
#[test]
fn parquet_integer_and_dictionary_ids_are_read_as_their_text() {
    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, DictionaryArray, Float64Array, Int64Array, RecordBatch};
    use arrow_array::{UInt64Array, UInt8Array};
    use std::sync::Arc;
    let arpu = || Arc::new(Float64Array::from(vec![1.5, 2.5])) as ArrayRef;
    let dict: DictionaryArray<Int32Type> = vec!["C9", "C1"].into_iter().collect();
    let cases: [(ArrayRef, [&str; 2]); 4] = [
        (Arc::new(Int64Array::from(vec![1001, -5])), ["1001", "-5"]),
        (
            Arc::new(UInt64Array::from(vec![u64::MAX, 0])),
            ["18446744073709551615", "0"],
        ),
        (Arc::new(UInt8Array::from(vec![7, 8])), ["7", "8"]),
        (Arc::new(dict), ["C9", "C1"]),
    ];
    for (ids, want) in cases {
        let batch =
            RecordBatch::try_from_iter(vec![("customer_id", ids), ("arpu", arpu())]).unwrap();
        let (dir, path) = write_parquet("pq-int-ids", &batch);
        let s = FeatureStore::load(&path).unwrap_or_else(|e| panic!("{want:?}: {e}"));
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(s.row(want[0]).unwrap()[0], 1.5, "{want:?}");
        assert_eq!(s.row(want[1]).unwrap()[0], 2.5, "{want:?}");
    }
}
