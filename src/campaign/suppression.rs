//! Suppression lists: who must never be contacted (opt-outs, do-not-contact registers). One
//! customer id a line; blank lines, `#` comments (a line of its own, or after an id and a
//! space) and a `customer_id` header are skipped, a byte-order mark and CRLF line ends (a
//! spreadsheet's export) are taken, and an id in double or single quotes is taken without
//! them (in double quotes, spaces included).
//!
//! A miss here texts someone who said stop, so what cannot be read as one id a line is refused
//! with its line, never skipped: a CSV export with more columns (`customer_id,reason`), a file
//! that is not UTF-8 (UTF-16 from Windows). `campaign check` reads the files as `run` does, and
//! the run says how many ids no customer of the snapshot has (a list of another base, another
//! id format). The lists' content goes into the run's identity, so shards read with different
//! lists are not merged.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::CampaignError;

/// The ids of a campaign's suppression lists, and what identifies their content.
#[derive(Debug, Default)]
pub struct Suppression {
    /// Every id listed, across the files.
    pub ids: HashSet<Box<str>, foldhash::fast::RandomState>,
    /// CRC-32 of the files' bytes in order: shards must have read the same lists.
    pub crc: u32,
}

/// The ids of one list's text, or the first line that is not one id.
pub fn parse(bytes: &[u8]) -> Result<Vec<&str>, String> {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err("the file is UTF-16: save it as UTF-8 (one id a line)".into());
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("the file is not UTF-8 text ({e}): save it as UTF-8"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let shown: String = line.chars().take(60).collect();
        // A comment after the id and a space (`C0000545 # asked by phone`).
        let comment = line
            .char_indices()
            .find(|&(i, c)| c == '#' && line[..i].ends_with(char::is_whitespace));
        let bare = comment.map_or(line, |(i, _)| line[..i].trim_end());
        let quoted = ['"', '\'']
            .iter()
            .find_map(|&q| bare.strip_prefix(q).and_then(|l| l.strip_suffix(q)));
        let id = match quoted {
            Some(inner) if !inner.contains(['"', '\'']) => inner,
            _ => bare,
        };
        let refuse = |what: &str| {
            format!(
                "line {}: `{shown}` holds {what}: a suppression list is one customer id a line \
                 (export the id column alone)",
                n + 1
            )
        };
        if let Some(sep) = id
            .chars()
            .find(|c| matches!(c, ',' | ';' | '\t' | '"' | '\''))
        {
            return Err(refuse(if matches!(sep, '"' | '\'') {
                "a quote"
            } else {
                "a separator"
            }));
        }
        // The header, quoted (pandas' QUOTE_ALL) or commented or not.
        if id == "customer_id" {
            continue;
        }
        if quoted.is_none() && id.contains(char::is_whitespace) {
            return Err(refuse(
                "a space (an id with a space in it is written in double quotes)",
            ));
        }
        ids.push(id);
    }
    Ok(ids)
}

impl Suppression {
    /// Warns of the listed ids no customer of `store` has: another base's list, or another id
    /// format (`c0000528` for `C0000528`), whose silent miss would text someone who said stop.
    /// Returns how many.
    pub fn warn_unknown(&self, store: &crate::features::FeatureStore) -> usize {
        let unknown: Vec<&str> = self
            .ids
            .iter()
            .filter(|id| store.row(id).is_none())
            .map(|id| &**id)
            .collect();
        if !unknown.is_empty() {
            let mut first: Vec<&str> = unknown.iter().take(3).copied().collect();
            first.sort_unstable();
            tracing::warn!(
                unknown = unknown.len(),
                listed = self.ids.len(),
                examples = %first.join(", "),
                "suppression: ids no customer of the snapshot has, {} of {} listed (ids must match exactly, letter case included)",
                unknown.len(),
                self.ids.len()
            );
        }
        unknown.len()
    }
}

/// Reads every list of a campaign.
pub fn read(files: &[PathBuf]) -> Result<Suppression, CampaignError> {
    let mut out = Suppression::default();
    let mut crc = crc32fast::Hasher::new();
    for path in files {
        let bytes = crate::files::read_regular(path, u64::MAX).map_err(|source| {
            CampaignError::Suppression {
                path: path.clone(),
                source,
            }
        })?;
        crc.update(&bytes);
        let ids = parse(&bytes).map_err(|detail| bad(path, detail))?;
        out.ids.extend(ids.into_iter().map(Box::from));
    }
    out.crc = crc.finalize();
    Ok(out)
}

fn bad(path: &Path, detail: String) -> CampaignError {
    CampaignError::Suppression {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, detail),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, Suppression};

    #[test]
    fn ids_the_snapshot_lacks_are_counted() {
        let store =
            crate::features::FeatureStore::from_csv_bytes(b"customer_id,a\nC1,1\nC2,2\n", "s")
                .unwrap();
        let listed = Suppression {
            ids: ["C1", "c2", "C3"].into_iter().map(Box::from).collect(),
            crc: 0,
        };
        assert_eq!(listed.warn_unknown(&store), 2);
    }

    #[test]
    fn a_spreadsheets_export_is_read_as_written() {
        let text = b"\xef\xbb\xbfC0000004\r\nC0000005\r\n\r\n# opt-outs\n\"C0000006\"\n";
        assert_eq!(parse(text).unwrap(), ["C0000004", "C0000005", "C0000006"]);
        // A comment after the id, single quotes, an id with a space in double quotes.
        let text = b"C0000545 # asked by phone\n'C0000546'\t# web form\n\"ACME 7\"\nC#1\n";
        assert_eq!(
            parse(text).unwrap(),
            ["C0000545", "C0000546", "ACME 7", "C#1"]
        );
        assert_eq!(
            parse(b"\xef\xbb\xbfcustomer_id\nC1\n").unwrap(),
            ["C1"],
            "a header after a BOM"
        );
        for header in ["\"customer_id\"", "customer_id # header"] {
            assert_eq!(
                parse(format!("{header}\nC1\n").as_bytes()).unwrap(),
                ["C1"],
                "{header}"
            );
        }
    }

    #[test]
    fn what_is_not_one_id_a_line_is_refused_with_its_line() {
        let e = parse(b"customer_id,reason\nC0000528,STOP\n").unwrap_err();
        assert!(
            e.starts_with("line 1: `customer_id,reason` holds a separator"),
            "{e}"
        );
        let e = parse(b"C1\nC2;x\n").unwrap_err();
        assert!(e.starts_with("line 2: `C2;x` holds a separator"), "{e}");
        let e = parse(b"C1\n\"C2\nC3\n").unwrap_err();
        assert!(e.starts_with("line 2: `\"C2` holds a quote"), "{e}");
        let e = parse(b"C1\nC2 stop\n").unwrap_err();
        assert!(e.starts_with("line 2: `C2 stop` holds a space"), "{e}");
        let e = parse(b"'C1\n").unwrap_err();
        assert!(e.starts_with("line 1: `'C1` holds a quote"), "{e}");
        let utf16: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain("C1\n".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert!(parse(&utf16).unwrap_err().starts_with("the file is UTF-16"));
        assert!(parse(b"C1\n\xc3\x28\n")
            .unwrap_err()
            .starts_with("the file is not UTF-8"));
    }
}
