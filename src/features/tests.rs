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
        let text = ["customer_id,a,b", "C1,1,2", "C2,3,4", "C3,5,abc", ""].join(nl);
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
    let (line, col, detail) = parse_err("customer_id,a,b\nC1,1,2\nC2,3,abc\n");
    assert_eq!((line, col), (3, 3));
    assert!(detail.contains("`b`") && detail.contains("abc"), "{detail}");
    let (_, _, detail) = parse_err("customer_id,a\nC1,inf\n");
    assert!(detail.contains("finite"), "{detail}");
    let (_, _, detail) = parse_err("customer_id,a\nC1,1e39\n");
    assert!(detail.contains("finite"), "{detail}");
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
    let bytes = s.to_nbf_bytes();
    assert_eq!(&bytes[..4], b"NBF2");
    let back = FeatureStore::from_nbf_bytes(&bytes, "t.nbf").unwrap();
    assert_eq!(back.exact(), s.exact());
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
fn f32_exact_snapshots_keep_the_version_1_form() {
    let s = parse("customer_id,a,b\nC1,1.5,\nC2,,2\n").unwrap();
    assert!(s.exact().is_empty());
    let bytes = s.to_nbf_bytes();
    assert_eq!(&bytes[..4], b"NBF1");
    let back = FeatureStore::from_nbf_bytes(&bytes, "t.nbf").unwrap();
    assert_eq!(back.row("C2").unwrap()[1], 2.0);
    assert_eq!(back.exact_row("C2").unwrap().f64(1), 2.0);
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
