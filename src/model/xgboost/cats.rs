//! The training categories XGBoost 3.1 and later store in `cats.enc`, read as XGBoost wrote
//! them.
//!
//! A string feature's names are an Arrow string array: `offsets` (n + 1) over `values` (the
//! UTF-8 bytes, as signed chars). XGBoost 3.4 counts the offsets in bytes. XGBoost 3.1 to 3.3
//! built them from a pandas category index with Python's `len`, that is in characters, and
//! copied only `offsets[n]` bytes of the UTF-8 text (`_data_utils.pd_cat_inf`): with non-ASCII
//! names the offsets are characters and the last bytes are missing. Such a file still scores
//! right in XGBoost because a pandas frame given to `predict` is encoded the same way; here a
//! name is what the file keeps of it (its characters, and the bytes that survived), and
//! `model::bind` matches snapshot values against that.
//!
//! Owns: decoding one feature's table, checking a scorer's list for a file with no table, and
//! the warning for such a file whose categorical feature reads numbers. Must not: bind to the snapshot.

use super::schema::Enc;
use crate::engine::trees::{RawNode, RawTree, TreeLoadError};
use crate::model::bind::{Categories, CutName, Given, Resolve};
use crate::model::ColumnInfo;

/// The first XGBoost release that counts string offsets in bytes.
const BYTE_OFFSETS_SINCE: [i64; 3] = [3, 4, 0];

/// One categorical feature's categories from its `enc` entry (`version`: the file's writer).
pub(super) fn decode(enc: &Enc, version: &[i64], loc: &str) -> Result<Categories, TreeLoadError> {
    if enc.offsets.is_empty() {
        return Ok(if enc.values.is_empty() {
            Categories::Codes
        } else {
            Categories::Numbers(enc.values.clone())
        });
    }
    let bytes: Vec<u8> = enc.values.iter().map(|&b| b as i64 as u8).collect();
    let bad = |why: String| {
        TreeLoadError::format(
            loc,
            format!(
                "the file's category table is inconsistent ({why}): re-save the model with \
                 the XGBoost that trained it, or train on category names XGBoost can store"
            ),
        )
    };
    let offsets: Vec<usize> = enc
        .offsets
        .iter()
        .map(|&o| usize::try_from(o))
        .collect::<Result<_, _>>()
        .map_err(|_| bad("a negative offset".into()))?;
    if offsets[0] != 0 || offsets.windows(2).any(|w| w[0] > w[1]) {
        return Err(bad(format!("offsets {:?} do not rise from 0", enc.offsets)));
    }
    let last = offsets[offsets.len() - 1];
    if last != bytes.len() {
        return Err(bad(format!(
            "offsets end at {last}, but `values` holds {} bytes",
            bytes.len()
        )));
    }
    let by_bytes = bytes.is_ascii() || version >= &BYTE_OFFSETS_SINCE[..];
    if by_bytes {
        let mut names = Vec::with_capacity(offsets.len() - 1);
        for w in offsets.windows(2) {
            let name = std::str::from_utf8(&bytes[w[0]..w[1]])
                .map_err(|_| bad(format!("bytes {}..{} are not UTF-8", w[0], w[1])))?;
            names.push(name.to_owned());
        }
        return Ok(Categories::Strings(names));
    }
    by_characters(&bytes, &offsets, &bad)
}

/// Reads offsets counted in characters over the first `offsets[n]` bytes of the UTF-8 text.
fn by_characters(
    bytes: &[u8],
    offsets: &[usize],
    bad: &dyn Fn(String) -> TreeLoadError,
) -> Result<Categories, TreeLoadError> {
    // The text ends early (its last bytes were not written), possibly inside a character.
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(e) => {
            return Err(bad(format!(
                "byte {} is not UTF-8 in a table written with character offsets",
                e.valid_up_to()
            )))
        }
    };
    // Byte position of each character boundary the text holds.
    let mut starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    starts.push(text.len());
    let at = |c: usize| starts.get(c).copied();
    let mut names = Vec::with_capacity(offsets.len() - 1);
    for w in offsets.windows(2) {
        let (a, b) = (w[0], w[1]);
        let known = match (at(a), at(b)) {
            (Some(x), Some(y)) => bytes[x..y].to_vec(),
            // Cut off: what survives, a partial character included.
            (Some(x), None) => bytes[x..].to_vec(),
            (None, _) => Vec::new(),
        };
        names.push(CutName {
            known,
            chars: b - a,
        });
    }
    Ok(Categories::Cut(names))
}

/// Refuses a scorer's `categories` list for a codes-only feature that names fewer categories
/// than the codes its splits test: the unnamed codes would match no customer, silently.
pub(super) fn short_lists(
    names: &[String],
    categories: &[Categories],
    given: Option<&Given>,
    raw: &[RawTree],
) -> Result<(), TreeLoadError> {
    let Some(given) = given else { return Ok(()) };
    for (i, name) in names.iter().enumerate() {
        let (Some(Categories::Codes), Some(list)) = (categories.get(i), given.get(name)) else {
            continue;
        };
        let top = raw
            .iter()
            .flat_map(|t| &t.nodes)
            .filter_map(|n| match n {
                RawNode::Categorical {
                    feature,
                    categories,
                    ..
                } if *feature as usize == i => categories.iter().max().copied(),
                _ => None,
            })
            .max();
        if let Some(top) = top.filter(|&t| t as usize >= list.len()) {
            return Err(TreeLoadError::format(
                format!("categories.{name}"),
                format!(
                    "{} names for codes 0 to {}, but the trees test code {top}: name every \
                     code the model was trained on, code 0 first",
                    list.len(),
                    list.len().saturating_sub(1)
                ),
            ));
        }
    }
    Ok(())
}

/// Warns of categorical features the file stores no list for (before 3.1) that read a
/// numeric column with no list in the scorer: the number is taken as the category code, which
/// is what XGBoost does with numpy input, and not with a pandas `category` column of numbers,
/// which pandas codes 0 to n - 1 in sorted order.
pub(super) fn code_notes(
    names: &[String],
    categories: &[Categories],
    given: Option<&Given>,
    raw: &[RawTree],
    resolve: Resolve<'_, '_>,
) -> Vec<String> {
    let split_on = |i: usize| {
        raw.iter()
            .flat_map(|t| &t.nodes)
            .any(|n| matches!(n, RawNode::Categorical { feature, .. } if *feature as usize == i))
    };
    names
        .iter()
        .enumerate()
        .filter(|&(i, name)| {
            categories.get(i) == Some(&Categories::Codes)
                && given.is_none_or(|g| !g.contains_key(name))
                && matches!(resolve(name).map(|c| c.info), Some(ColumnInfo::Number))
                && split_on(i)
        })
        .map(|(_, name)| {
            format!(
                "feature `{name}`: the file stores no category list (XGBoost before 3.1), so \
                 the snapshot's numbers are read as category codes 0 to n - 1, as XGBoost reads \
                 numpy input; if the model was trained on a pandas `category` column of \
                 numbers, list them in the scorer as `df[\"{name}\"].cat.categories` listed \
                 them at training, code 0 first (pandas sorts them unless the training code \
                 set an order): \"categories\": {{\"{name}\": [...]}}"
            )
        })
        .collect()
}

/// Warns of a scorer's list for a codes-only feature that is not in sorted order: pandas codes
/// a `category` column's categories in sorted order unless the training code set one, so such
/// a list is more often a slip (the order of a README or a spreadsheet) than the training's,
/// and a list in the wrong order scores every customer as another category, silently.
pub(super) fn order_notes(
    names: &[String],
    categories: &[Categories],
    given: Option<&Given>,
) -> Vec<super::Note> {
    let Some(given) = given else {
        return Vec::new();
    };
    names
        .iter()
        .enumerate()
        .filter(|&(i, _)| categories.get(i) == Some(&Categories::Codes))
        .filter_map(|(_, name)| {
            let list = given.get(name)?;
            // Numbers as numbers (a list of them only), text by code point, as pandas sorts.
            let numbers: Option<Vec<f64>> = list.iter().map(|v| v.parse().ok()).collect();
            let sorted = match numbers {
                Some(numbers) => {
                    let mut pairs: Vec<(f64, &String)> = numbers.into_iter().zip(list).collect();
                    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
                    pairs.into_iter().map(|(_, v)| v.clone()).collect()
                }
                None => {
                    let mut sorted = list.clone();
                    sorted.sort();
                    sorted
                }
            };
            (sorted != *list).then(|| super::Note {
                at: Some(format!("categories.{name}")),
                text: format!(
                    "feature `{name}`: the categories are given in another order than sorted \
                     ({}); pandas codes a `category` column's categories in sorted order ({}) \
                     unless the training code set one, and a list in another order than the \
                     training's scores every customer as another category: give them as \
                     `df[\"{name}\"].cat.categories` listed them at training, code 0 first",
                    shown(list),
                    shown(&sorted)
                ),
            })
        })
        .collect()
}

/// A list's first names, as a warning shows them.
fn shown(list: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = list
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > SHOWN {
        text += &format!(", ... {} in all", list.len());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(names: &[&str], by_chars: bool) -> Enc {
        let text: String = names.concat();
        let mut offsets = vec![0_i64];
        for n in names {
            let len = if by_chars { n.chars().count() } else { n.len() };
            offsets.push(offsets.last().unwrap() + len as i64);
        }
        let keep = *offsets.last().unwrap() as usize;
        let values = text.as_bytes()[..keep]
            .iter()
            .map(|&b| f64::from(b as i8))
            .collect();
        Enc { offsets, values }
    }

    #[test]
    fn offsets_count_bytes_from_3_4_and_characters_before() {
        let names = ["Zürich", "east", "東京"];
        let got = decode(&enc(&names, false), &[3, 4, 1], "l").unwrap();
        assert_eq!(got, Categories::Strings(names.map(String::from).to_vec()));
        // 3.2: 12 of the 17 bytes are kept; "東京" keeps 1 of its 6.
        let Categories::Cut(cut) = decode(&enc(&names, true), &[3, 2, 0], "l").unwrap() else {
            panic!()
        };
        assert_eq!(cut[0].known, "Zürich".as_bytes());
        assert_eq!(cut[2].chars, 2);
        assert_eq!(cut[2].known, &"東京".as_bytes()[..1]);
        assert!(names.iter().zip(&cut).all(|(n, c)| c.fits(n)));
        assert!(!cut[2].fits("西京") && !cut[1].fits("eas"));
        // ASCII reads the same either way.
        let ascii = decode(&enc(&["a", "bc"], true), &[3, 1, 0], "l").unwrap();
        assert_eq!(ascii, Categories::Strings(vec!["a".into(), "bc".into()]));
    }

    #[test]
    fn an_inconsistent_table_is_refused() {
        let mut e = enc(&["Zürich", "east"], false);
        e.offsets[1] = 2; // inside "ü"
        let err = decode(&e, &[3, 4, 0], "cats.enc[1]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cats.enc[1]") && err.contains("category table is inconsistent"),
            "{err}"
        );
        e.offsets = vec![0, 3, 99];
        let err = decode(&e, &[3, 2, 0], "l").unwrap_err().to_string();
        assert!(err.contains("offsets end at 99"), "{err}");
        e.offsets = vec![0, 5, 3];
        assert!(decode(&e, &[3, 2, 0], "l").is_err());
    }
}
