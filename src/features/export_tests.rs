//! What exports from warehouses and dataframe libraries write into a CSV snapshot, and how
//! each reads: values as written, kinds decided by the whole column, and the export mistakes
//! named for what they are.

use super::tests::{parse, parse_err as fault};
use super::*;

/// The text of `column` for `id`.
fn text(s: &FeatureStore, id: &str, column: &str) -> Option<String> {
    let c = s.column(column).unwrap();
    let code = s.row(id).unwrap()[c];
    s.dictionary(c).unwrap().value_of(code).map(str::to_owned)
}

#[test]
fn ids_and_text_keep_their_spaces_and_numbers_may_have_blanks_around_them() {
    let s = parse("customer_id,seg,a\n\" C1 \",\" gold \", 12 \nC1,gold,\t3\nC2,gold ,\n").unwrap();
    assert_eq!(s.len(), 3, "` C1 ` and `C1` are two customers");
    assert_eq!(text(&s, " C1 ", "seg").as_deref(), Some(" gold "));
    assert_eq!(text(&s, "C1", "seg").as_deref(), Some("gold"));
    assert_eq!(text(&s, "C2", "seg").as_deref(), Some("gold "));
    assert_eq!(s.row(" C1 ").unwrap()[1], 12.0);
    assert_eq!(s.row("C1").unwrap()[1], 3.0);
    assert!(s.row("C2").unwrap()[1].is_nan());
}

#[test]
fn a_columns_kind_does_not_depend_on_the_order_of_its_rows() {
    // `NaN`, `inf` and `1e39` are words in a text column, wherever they come.
    for first in ["NaN", "inf", "1e39"] {
        let a = parse(&format!("customer_id,name\nC1,1\nC2,{first}\nC3,x\n")).unwrap();
        let b = parse(&format!("customer_id,name\nC1,x\nC2,{first}\nC3,1\n")).unwrap();
        assert_eq!(text(&a, "C2", "name").as_deref(), Some(first));
        assert_eq!(text(&b, "C2", "name").as_deref(), Some(first));
        assert_eq!(text(&a, "C1", "name").as_deref(), Some("1"));
        assert_eq!(text(&b, "C3", "name").as_deref(), Some("1"));
    }
    // In a column of numbers they are faults, with the line of the first.
    let (line, column, detail) = fault("customer_id,a\nC1,1\nC2,NaN\nC3,inf\n");
    assert_eq!((line, column), (3, 2), "{detail}");
    assert!(detail.contains("`NaN`"), "{detail}");
}

#[test]
fn a_kind_in_the_header_is_str_or_num_in_any_case_and_nothing_else() {
    let s = parse("customer_id,zip:STR,n:Num\nC1,007,1\n").unwrap();
    assert_eq!(text(&s, "C1", "zip").as_deref(), Some("007"));
    assert_eq!(s.row("C1").unwrap()[1], 1.0);
    for (header, kind) in [("zip:string", "string"), ("plan:text", "text")] {
        let (line, column, detail) = fault(&format!("customer_id,a,{header}\nC1,1,007\n"));
        assert_eq!((line, column), (1, 3), "{detail}");
        assert!(
            detail.contains(&format!("`:{kind}` is not a kind")),
            "{detail}"
        );
    }
    // A name with a colon and no kind after it is a name.
    assert!(parse("customer_id,a:2\nC1,1\n")
        .unwrap()
        .column("a:2")
        .is_some());
}

#[test]
fn a_header_without_customer_id_first_says_what_the_file_starts_with() {
    let cases: [(&[u8], &str); 7] = [
        (
            b"a,customer_id\n1,C1\n",
            "`customer_id` is column 2: put it first",
        ),
        (
            b"Customer_ID,a\nC1,1\n",
            "name it `customer_id`, in lower case",
        ),
        (b"customer_id;a\nC1;1\n", "separated by semicolons"),
        (b"customer_id\ta\nC1\t1\n", "separated by tabs"),
        (b"\xff\xfec\x00,\x00", "UTF-16"),
        (b"\x1f\x8b\x08\x00", "gzip-compressed"),
        (b"id,a\nC1,1\n", "must be `customer_id`, not `id`"),
    ];
    for (bytes, says) in cases {
        match FeatureStore::from_csv_bytes(bytes, "t.csv") {
            Err(FeatureError::Parse {
                line: 1, detail, ..
            }) => {
                assert!(detail.contains(says), "{detail}")
            }
            other => panic!("{says}: {other:?}"),
        }
    }
}

/// A file that is no snapshot (a password file, `/etc/shadow` given to a feature reload) is
/// refused without quoting it: the refusal goes back to whoever asked, and into the status
/// page and the log.
#[test]
fn a_file_that_is_no_snapshot_is_refused_without_quoting_it() {
    for secret in [
        &b"Sup3rSecret\n"[..],
        b"root:*:20228:0:99999:7:::\ndaemon:*:20228:0:99999:7:::\n",
        b"PATH=/usr/bin\0TOKEN=abc,def\0",
        b"user:x:1000:1000:A User,,,:/home/u:/bin/sh\n",
    ] {
        match FeatureStore::from_csv_bytes(secret, "s") {
            Err(e @ FeatureError::Parse { line: 1, .. }) => {
                let said = e.to_string();
                assert!(said.contains("is this the snapshot file?"), "{said}");
                for part in String::from_utf8_lossy(secret).split([':', '=', ',', '\0', '\n']) {
                    assert!(part.len() < 3 || !said.contains(part), "{part:?} in {said}");
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn part_files_joined_with_their_headers_are_refused_at_the_second_header() {
    let (line, column, detail) = fault("customer_id,seg\nC1,gold\ncustomer_id,seg\nC3,gold\n");
    assert_eq!((line, column), (3, 1), "{detail}");
    assert!(detail.contains("the header again"), "{detail}");
}

#[test]
fn a_file_cut_inside_a_quoted_field_is_refused() {
    for cut in [
        "customer_id,a\nC1,1\nC2,\"1",
        "customer_id,s\nC1,x\nC2,\"half\n",
    ] {
        let (line, _, detail) = fault(cut);
        assert_eq!(line, 3, "{detail}");
        assert!(detail.contains("ends inside a quoted field"), "{detail}");
    }
    // Closed quotes, doubled quotes inside them and a quote inside an unquoted field load.
    let s = parse("customer_id,s\nC1,\"say \"\"hi\"\"\"\nC2,ab\"c\nC3,\"x\"").unwrap();
    assert_eq!(text(&s, "C1", "s").as_deref(), Some("say \"hi\""));
    assert_eq!(text(&s, "C2", "s").as_deref(), Some("ab\"c"));
    assert_eq!(text(&s, "C3", "s").as_deref(), Some("x"));
}

#[test]
fn dataframe_booleans_are_one_and_zero_as_in_parquet() {
    // pandas writes `True`/`False`, polars `true`/`false`.
    let s = parse("customer_id,is_prepaid,b:num\nC1,True,false\nC2,False,TRUE\nC3,,\n").unwrap();
    assert_eq!(s.kind(0), ColumnKind::Number);
    assert_eq!(&s.row("C1").unwrap()[..2], [1.0, 0.0]);
    assert_eq!(&s.row("C2").unwrap()[..2], [0.0, 1.0]);
    assert!(s.row("C3").unwrap()[0].is_nan());
    // Beside other words they are words.
    let t = parse("customer_id,answer\nC1,true\nC2,maybe\n").unwrap();
    assert_eq!(text(&t, "C1", "answer").as_deref(), Some("true"));
}

#[test]
fn a_column_marked_skip_is_left_out_by_name() {
    // An audit column the export carries, one value a customer: more than a text column holds.
    let mut csv = String::from("customer_id,arpu,updated_at:SKIP,seg\n");
    for i in 0..70_000 {
        csv.push_str(&format!("C{i},{i},2026-01-01T00:00:{i:05},gold\n"));
    }
    let s = parse(&csv).unwrap();
    assert_eq!(s.columns(), [Box::from("arpu"), Box::from("seg")]);
    assert_eq!(s.row("C7").unwrap()[0], 7.0);
    assert_eq!(text(&s, "C7", "seg").as_deref(), Some("gold"));
    assert_eq!(s.left_out().collect::<Vec<_>>(), [("updated_at", SKIPPED)]);
    let warnings = s.column_warnings();
    assert_eq!(warnings[0].0, "columns.updated_at");
    assert!(
        warnings[0].1.contains("marked `updated_at:skip`"),
        "{warnings:?}"
    );
    assert_eq!(
        crate::model::Schema::unknown(&s, "updated_at"),
        "unknown feature `updated_at`: the snapshot leaves it out (`:skip`)"
    );
    // Without the mark, the column is refused, and the refusal says how to leave it out.
    let (_, _, detail) = fault(&csv.replacen(":SKIP", "", 1));
    assert!(detail.contains("`name:skip`"), "{detail}");
}
