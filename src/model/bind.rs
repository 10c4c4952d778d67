//! Binds a tree model's features to snapshot columns, for both parsers: a numeric feature
//! reads its column's value; a categorical one reads the model's category code, translated
//! from the snapshot's dictionary through the category names the model file stores (or the
//! offer gives).
//!
//! Owns: [`Column`], [`Categories`], [`bind`]. Must not: read files or score.

use std::collections::BTreeMap;

use super::ColumnInfo;
use crate::engine::trees::{Codes, Feature, TreeLoadError};
use crate::features::Dictionary;

/// What the snapshot says of a model feature's column.
#[derive(Debug, Clone, Copy)]
pub struct Column<'d> {
    /// Snapshot column.
    pub index: u32,
    /// What it holds (unknown when a model is checked without a snapshot).
    pub info: ColumnInfo<'d>,
    /// The line and word that turned it from numbers to text, if one did.
    pub turned: Option<(u64, &'d str)>,
}

impl<'d> Column<'d> {
    /// A numeric column.
    pub fn number(index: u32) -> Self {
        Self {
            index,
            info: ColumnInfo::Number,
            turned: None,
        }
    }

    /// A store's column by name, as a tree model reads it (for tools and tests scoring a store).
    pub fn in_store(store: &'d crate::features::FeatureStore, name: &str) -> Option<Self> {
        use super::Schema;
        let c = Schema::column(store, name)?;
        Some(Self {
            index: c,
            info: store.info(c),
            turned: Schema::turned(store, c),
        })
    }

    /// Its dictionary when it holds strings.
    pub fn strings(&self) -> Option<&'d Dictionary> {
        match self.info {
            ColumnInfo::Strings(d) => Some(d),
            ColumnInfo::Number | ColumnInfo::Unknown => None,
        }
    }
}

/// Resolves a feature name to its snapshot column.
pub type Resolve<'r, 'd> = &'r dyn Fn(&str) -> Option<Column<'d>>;

/// What a model knows of a feature's categories.
#[derive(Debug, Clone, PartialEq)]
pub enum Categories {
    /// A numeric feature.
    Numeric,
    /// Categorical, with its categories' names in code order.
    Strings(Vec<String>),
    /// Categorical, with its categories' numeric values in code order.
    Numbers(Vec<f64>),
    /// Categorical, the value being the code (no list in the file).
    Codes,
    /// Categorical, with names the file keeps only in part, in code order (XGBoost 3.1 to 3.3
    /// with non-ASCII names, `xgboost::cats`).
    Cut(Vec<CutName>),
}

/// What a model file keeps of a category name: its length in characters and its first bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct CutName {
    /// The UTF-8 bytes the file holds (all of them unless the name was cut off).
    pub known: Vec<u8>,
    /// The name's length in characters.
    pub chars: usize,
}

impl CutName {
    /// Whether `value` is this name: it begins with the bytes kept and has as many characters.
    pub fn fits(&self, value: &str) -> bool {
        value.as_bytes().starts_with(&self.known) && value.chars().count() == self.chars
    }

    /// The name as far as the file keeps it, for messages.
    fn shown(&self) -> String {
        let kept = String::from_utf8_lossy(&self.known);
        let missing = self.chars.saturating_sub(kept.chars().count());
        if missing == 0 {
            kept.into_owned()
        } else {
            format!("{kept}…({missing} more characters)")
        }
    }
}

/// Categories the offer gives for features whose model file stores only codes, by name.
pub type Given = BTreeMap<String, Vec<String>>;

/// Binds every feature, reporting all unknown names together, and else every feature whose
/// kind or categories do not fit the snapshot (one load names them all). `unnamed` is what the
/// file's format says of a text feature whose categories it stores as codes alone (where such
/// a file should have named them), after the fault's own words.
pub fn bind(
    names: &[String],
    categories: &[Categories],
    given: Option<&Given>,
    resolve: Resolve<'_, '_>,
    unnamed: &str,
) -> Result<Vec<Feature>, TreeLoadError> {
    if let Some(stray) = given
        .into_iter()
        .flat_map(|g| g.keys())
        .find(|k| !names.contains(k))
    {
        return Err(TreeLoadError::format(
            format!("categories.{stray}"),
            format!(
                "the model has no feature of that name ({})",
                names.join(", ")
            ),
        ));
    }
    let mut unknown = Vec::new();
    let mut faults = Vec::new();
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let Some(col) = resolve(name) else {
            unknown.push(name.clone());
            continue;
        };
        let cats = categories.get(i).cloned().unwrap_or(Categories::Numeric);
        match bind_one(name, cats, given.and_then(|g| g.get(name)), col, unnamed) {
            Ok(f) => out.push(f),
            Err(e) => faults.push(e),
        }
    }
    if !unknown.is_empty() {
        return Err(TreeLoadError::UnknownFeatures(unknown));
    }
    match faults.len() {
        0 => Ok(out),
        1 => Err(faults.remove(0)),
        _ => Err(TreeLoadError::Several(faults)),
    }
}

/// Binds one feature to its column: its codes, or why the column does not fit it.
fn bind_one(
    name: &str,
    mut cats: Categories,
    given: Option<&Vec<String>>,
    col: Column<'_>,
    unnamed: &str,
) -> Result<Feature, TreeLoadError> {
    if let Some(list) = given {
        let at = || format!("categories.{name}");
        let mut seen = std::collections::HashSet::with_capacity(list.len());
        if let Some(twice) = list.iter().find(|v| !seen.insert(v.as_str())) {
            return Err(TreeLoadError::format(
                at(),
                format!("{twice:?} is listed twice: each code needs its own name"),
            ));
        }
        match &cats {
            Categories::Numeric => {
                return Err(TreeLoadError::format(
                    at(),
                    "the model treats this feature as numeric",
                ))
            }
            // The file names them: a list that differs would score customers as others.
            Categories::Strings(stored) if stored != list => {
                return Err(TreeLoadError::format(
                    at(),
                    format!(
                        "the model file names this feature's categories ({}): leave this \
                         list out, or give the same names in the same order",
                        stored.join(", ")
                    ),
                ))
            }
            Categories::Numbers(stored) if numbers(list).ok().as_ref() != Some(stored) => {
                let shown: Vec<String> = stored.iter().map(f64::to_string).collect();
                return Err(TreeLoadError::format(
                    at(),
                    format!(
                        "the model file lists this feature's categories as numbers ({}): \
                         leave this list out, or give the same numbers in the same order",
                        shown.join(", ")
                    ),
                ));
            }
            Categories::Cut(stored) => {
                given_fits(stored, list).map_err(|m| TreeLoadError::format(at(), m))?
            }
            _ => {}
        }
        cats = match (&cats, col.info) {
            // A pandas category of numbers: code k is the list's k-th number.
            (Categories::Codes, ColumnInfo::Number) => {
                Categories::Numbers(numbers(list).map_err(|v| {
                    TreeLoadError::format(
                        at(),
                        format!(
                            "{v:?} is not a number, but the snapshot column holds numbers: \
                             list the numbers the model was trained on, code 0 first"
                        ),
                    )
                })?)
            }
            // The same numbers the file lists (checked above).
            (Categories::Numbers(_), _) => cats,
            _ => Categories::Strings(list.clone()),
        };
    }
    if let ColumnInfo::Unknown = col.info {
        // Checked without a snapshot: the file is judged, its binding is not.
        return Ok(Feature {
            column: col.index,
            codes: Codes::Value,
        });
    }
    let codes = match (cats, col.strings()) {
        (Categories::Numeric, None) | (Categories::Codes, None) => Codes::Value,
        (Categories::Numbers(v), None) => Codes::Listed(v.into_boxed_slice()),
        (Categories::Strings(list), Some(dict)) => Codes::Table(table(&list, dict)),
        (Categories::Cut(list), Some(dict)) => Codes::Table(
            cut_table(name, &list, dict)
                .map_err(|m| TreeLoadError::format(format!("feature '{name}'"), m))?,
        ),
        (Categories::Numeric, Some(_)) => {
            return Err(TreeLoadError::format(
                format!("feature '{name}'"),
                match col.turned {
                    Some(at) => format!(
                        "the model treats it as numeric, but the snapshot column holds \
                         strings: {}",
                        turned_advice(name, at)
                    ),
                    None => "the model treats it as numeric, but the snapshot column \
                             holds strings (train it as a categorical feature)"
                        .to_owned(),
                },
            ))
        }
        (Categories::Strings(_) | Categories::Cut(_), None) => {
            return Err(TreeLoadError::format(
                format!("feature '{name}'"),
                format!(
                    "the model's categories are strings, but the snapshot column holds \
                     numbers: export the values the model was trained on, as text (codes in \
                     place of names match none of them; `{name}:str` in a CSV header reads a \
                     column as text)"
                ),
            ))
        }
        (Categories::Numbers(_), Some(_)) => {
            return Err(TreeLoadError::format(
                format!("feature '{name}'"),
                "the model's categories are numbers, but the snapshot column holds strings",
            ))
        }
        (Categories::Codes, Some(_)) => {
            return Err(TreeLoadError::format(
                format!("categories.{name}"),
                format!(
                    "missing: the model file stores only category codes for feature '{name}': \
                     list its categories in code order in the scorer's `categories`{unnamed}"
                ),
            ))
        }
    };
    Ok(Feature {
        column: col.index,
        codes,
    })
}

/// Where a column of numbers turned to text, and what to do: the export wrote a value (often
/// a missing one, `NA`) as a word.
pub fn turned_advice(name: &str, (line, word): (u64, &str)) -> String {
    let null = crate::features::null_flag(word).map_or_else(String::new, |flag| {
        format!("if the export writes a missing value so, give `{flag}`, else ")
    });
    format!(
        "its line {line} made it text (`{word}`); {null}export it as a number (`{name}:num` in \
         the CSV header refuses such a word with its line)"
    )
}

/// A scorer's list for a numeric column, as numbers; else the first entry that is none.
fn numbers(list: &[String]) -> Result<Vec<f64>, &str> {
    list.iter()
        .map(|v| v.trim().parse::<f64>().map_err(|_| v.as_str()))
        .collect()
}

/// Checks a scorer's list against the names a file keeps in part: same count, each fitting.
fn given_fits(stored: &[CutName], list: &[String]) -> Result<(), String> {
    let bad = list.len() != stored.len() || stored.iter().zip(list).any(|(s, v)| !s.fits(v));
    if bad {
        let shown: Vec<String> = stored.iter().map(CutName::shown).collect();
        return Err(format!(
            "the model file names this feature's categories in part ({}): give the same \
             names in the same order, or leave this list out",
            shown.join(", ")
        ));
    }
    Ok(())
}

/// [`table`] for names a file keeps in part: a snapshot value is the category it fits. Two
/// values fitting one category, or one value fitting two, is refused: the file cannot say
/// which is meant.
fn cut_table(name: &str, list: &[CutName], dict: &Dictionary) -> Result<Box<[f32]>, String> {
    let mut t = vec![f32::NAN; dict.len()];
    let mut taken: Vec<Option<&str>> = vec![None; list.len()];
    for (code, value) in (0..dict.len() as u32).filter_map(|c| Some((c as usize, dict.get(c)?))) {
        let mut fit = list.iter().enumerate().filter(|(_, n)| n.fits(value));
        let Some((k, _)) = fit.next() else { continue };
        let other = fit.next().map(|(j, _)| j);
        let shown = |i: usize| format!("{i} ({})", list[i].shown());
        let clash = match (other, taken[k]) {
            (Some(j), _) => Some(format!(
                "{value:?} fits categories {} and {}",
                shown(k),
                shown(j)
            )),
            (None, Some(first)) => Some(format!(
                "{first:?} and {value:?} both fit category {}",
                shown(k)
            )),
            (None, None) => None,
        };
        if let Some(clash) = clash {
            // The advice first: the list may be long, and a long message is cut at its end.
            const LISTED: usize = 8;
            let mut kept: Vec<String> = list.iter().take(LISTED).map(CutName::shown).collect();
            if list.len() > LISTED {
                kept.push(format!("and {} more", list.len() - LISTED));
            }
            return Err(format!(
                "the file's category table keeps these names only in part (XGBoost 3.1 to 3.3 \
                 counted non-ASCII names in characters and dropped their last bytes), and \
                 {clash}: list the categories in code order in the scorer's `categories` (the \
                 training frame's `X[\"{name}\"].cat.categories`); the file keeps {}: {}",
                list.len(),
                kept.join(", ")
            ));
        }
        taken[k] = Some(value);
        t[code] = k as f32;
    }
    Ok(t.into_boxed_slice())
}

/// Per snapshot code, the model's code of the same value (NaN when the model lacks it).
fn table(list: &[String], dict: &Dictionary) -> Box<[f32]> {
    let mut t = vec![f32::NAN; dict.len()];
    for (model_code, value) in list.iter().enumerate() {
        if let Some(code) = dict.code(value) {
            // The first of repeated names wins, as a lookup by name would.
            if t[code as usize].is_nan() {
                t[code as usize] = model_code as f32;
            }
        }
    }
    t.into_boxed_slice()
}

/// The names a tree file's features go by: the file's, or, for a file trained without names
/// (`nameless`), the scorer spec's `features`, which must then list as many as the file holds
/// (when it says how many); a file with names and a list must agree, name by name. `place` is
/// where the file keeps its names.
pub fn feature_names<'a>(
    in_file: &'a [String],
    nameless: bool,
    listed: Option<&'a [String]>,
    place: &str,
) -> Result<&'a [String], TreeLoadError> {
    let Some(listed) = listed else {
        return Ok(in_file);
    };
    if nameless && (in_file.is_empty() || in_file.len() == listed.len()) {
        return Ok(listed);
    }
    if let Some(i) = (0..in_file.len().max(listed.len())).find(|&i| in_file.get(i) != listed.get(i))
    {
        let shown = |n: Option<&String>| n.map_or("<none>", String::as_str).to_owned();
        return Err(TreeLoadError::format(
            format!("{place}[{i}]"),
            format!(
                "model says {:?}, the scorer spec says {:?} (the lists must match)",
                shown(in_file.get(i)),
                shown(listed.get(i))
            ),
        ));
    }
    Ok(in_file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::DictBuilder;

    fn dict(values: &[&str]) -> Dictionary {
        let mut b = DictBuilder::default();
        for v in values {
            b.push(v).unwrap();
        }
        b.finish().0
    }

    #[test]
    fn names_kept_in_part_that_two_values_fit_are_refused_with_the_advice_first() {
        let cut = |known: &str, chars: usize| CutName {
            known: known.as_bytes().to_vec(),
            chars,
        };
        let mut list = vec![cut("city_11", 8), cut("city_110", 8)];
        list.extend((0..10).map(|i| cut(&format!("c{i}"), 2)));
        let e = cut_table("city", &list, &dict(&["city_110", "c3"])).unwrap_err();
        assert_eq!(
            e,
            "the file's category table keeps these names only in part (XGBoost 3.1 to 3.3 \
             counted non-ASCII names in characters and dropped their last bytes), and \
             \"city_110\" fits categories 0 (city_11…(1 more characters)) and 1 (city_110): \
             list the categories in code order in the scorer's `categories` (the training \
             frame's `X[\"city\"].cat.categories`); the file keeps 12: city_11…(1 more \
             characters), city_110, c0, c1, c2, c3, c4, c5, and 4 more"
        );
        let d = dict(&["city_110", "c3"]);
        let t = cut_table("city", &list[1..], &d).unwrap();
        let code = |v: &str| t[d.code(v).unwrap() as usize];
        assert_eq!((code("city_110"), code("c3")), (0.0, 4.0));
    }

    #[test]
    fn translates_snapshot_codes_to_model_codes_by_name() {
        let d = dict(&["gold", "bronze", "diamond"]);
        // Snapshot codes: bronze 0, diamond 1, gold 2; the model's: bronze 0, silver 1, gold 2.
        let names = vec!["segment".to_string(), "n".to_string()];
        let cats = [
            Categories::Strings(vec!["bronze".into(), "silver".into(), "gold".into()]),
            Categories::Numeric,
        ];
        let resolve = |n: &str| match n {
            "segment" => Some(Column {
                index: 4,
                info: ColumnInfo::Strings(&d),
                turned: None,
            }),
            "n" => Some(Column::number(1)),
            _ => None,
        };
        let f = bind(&names, &cats, None, &resolve, "").unwrap();
        let Codes::Table(t) = &f[0].codes else {
            panic!("{f:?}")
        };
        assert_eq!(t[0], 0.0);
        assert!(t[1].is_nan(), "diamond: the model never saw it");
        assert_eq!(t[2], 2.0);
        assert_eq!(f[1].codes, Codes::Value);
        // Only codes in the file: the offer's list names them.
        let codes = [Categories::Codes, Categories::Numeric];
        let e = bind(&names, &codes, None, &resolve, "").unwrap_err();
        assert!(e.to_string().contains("scorer's `categories`"), "{e}");
        let given: Given = [("segment".to_string(), vec!["gold".to_string()])].into();
        let f = bind(&names, &codes, Some(&given), &resolve, "").unwrap();
        let Codes::Table(t) = &f[0].codes else {
            panic!()
        };
        assert_eq!(t[2], 0.0);
        // Numeric in the model on a string column, and unknown names.
        let e = bind(
            &names,
            &[Categories::Numeric, Categories::Numeric],
            None,
            &resolve,
            "",
        );
        assert!(e.unwrap_err().to_string().contains("holds strings"));
        let e = bind(&["x".into(), "y".into()], &[], None, &resolve, "").unwrap_err();
        assert_eq!(
            e,
            TreeLoadError::UnknownFeatures(vec!["x".into(), "y".into()])
        );
    }
}
