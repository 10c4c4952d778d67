//! What a LightGBM file's categorical features are, and whether the snapshot's columns fit
//! them: each feature's categories from `feature_infos` and the `pandas_categorical` lists,
//! and, where the text columns do not match the lists of strings, the refusal that names the
//! columns (see the parent module's doc).

use crate::engine::trees::TreeLoadError;
use crate::model::bind::{Categories, Column, Resolve};
use crate::model::ColumnInfo;

/// Each feature's categories (see the module doc): numeric unless `feature_infos` lists
/// values. The `pandas_categorical` lists belong, in order, to the columns that were pandas
/// `category` columns at training: lists of strings to the features whose snapshot column
/// holds text, lists of numbers to categorical features on numeric columns. As LightGBM
/// refuses data whose category columns are not those it was trained on, a count of text
/// columns that differs from the lists of strings is refused, naming both.
pub(super) fn feature_categories(
    names: &[String],
    infos: &[&str],
    pandas: &[Vec<serde_json::Value>],
    resolve: Resolve<'_, '_>,
) -> Result<Vec<Categories>, TreeLoadError> {
    let columns: Vec<Option<Column<'_>>> = names.iter().map(|n| resolve(n)).collect();
    let infos_of: Vec<Option<ColumnInfo<'_>>> = columns.iter().map(|c| c.map(|c| c.info)).collect();
    let is_strings = |l: &Vec<serde_json::Value>| l.iter().all(serde_json::Value::is_string);
    // Judged against a snapshot that has every feature: a missing one is `bind`'s to name.
    let checked = infos_of
        .iter()
        .all(|i| matches!(i, Some(ColumnInfo::Number | ColumnInfo::Strings(_))));
    let string_lists = pandas.iter().filter(|l| is_strings(l)).count();
    let text: Vec<&str> = names
        .iter()
        .zip(&infos_of)
        .filter(|(_, i)| matches!(i, Some(ColumnInfo::Strings(_))))
        .map(|(n, _)| n.as_str())
        .collect();
    if checked && string_lists > 0 && string_lists != text.len() {
        return Err(TreeLoadError::format(
            "pandas_categorical",
            mismatch(names, infos, pandas, &columns, string_lists, &text),
        ));
    }
    let mut lists = pandas.iter().peekable();
    let out = infos_of
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let info = infos.get(i).copied().unwrap_or("");
            let categorical = is_categorical(info);
            let next_strings = lists.peek().map(|l| is_strings(l));
            let strings = |l: Option<&Vec<serde_json::Value>>| {
                Categories::Strings(
                    l.into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                )
            };
            let numbers = |l: Option<&Vec<serde_json::Value>>| {
                Categories::Numbers(
                    l.into_iter()
                        .flatten()
                        .filter_map(serde_json::Value::as_f64)
                        .collect(),
                )
            };
            match column {
                // A text column was a category column at training: it takes the next list
                // (a numeric feature on it is refused when bound).
                Some(ColumnInfo::Strings(_)) => match (next_strings, categorical) {
                    (Some(true), true) => strings(lists.next()),
                    (Some(true), false) => {
                        lists.next();
                        Categories::Numeric
                    }
                    (_, true) => Categories::Codes,
                    (_, false) => Categories::Numeric,
                },
                _ if !categorical => Categories::Numeric,
                // Without a snapshot, lists go to categorical features in order.
                Some(ColumnInfo::Unknown) => match next_strings {
                    Some(true) => strings(lists.next()),
                    Some(false) => numbers(lists.next()),
                    None => Categories::Codes,
                },
                _ => match next_strings {
                    Some(false) => numbers(lists.next()),
                    _ => Categories::Codes,
                },
            }
        })
        .collect();
    Ok(out)
}

/// Whether a feature's `feature_infos` entry lists category codes (`0:3:7`), not a numeric
/// range (`[0:10]`) or nothing.
fn is_categorical(info: &str) -> bool {
    !(info.starts_with('[') || info.is_empty() || info == "none")
}

/// Which features were text (pandas `category` columns of strings) at training, when the file
/// says so without doubt: the lists belong in order to some of the categorical features, each
/// to one whose codes (in `feature_infos`) it holds, and the earliest such placement is the
/// latest too.
pub(super) fn trained_as_text(
    infos: &[&str],
    pandas: &[Vec<serde_json::Value>],
) -> Option<Vec<bool>> {
    // Each categorical feature, and how many categories its codes need.
    let needs: Vec<(usize, usize)> = infos
        .iter()
        .enumerate()
        .filter(|(_, info)| is_categorical(info))
        .map(|(i, info)| {
            let top = info
                .split(':')
                .filter_map(|c| c.parse::<i64>().ok())
                .max()
                .unwrap_or(-1);
            (i, usize::try_from(top + 1).unwrap_or(0))
        })
        .collect();
    let fits = |list: &Vec<serde_json::Value>, j: usize| list.len() >= needs[j].1;
    let mut earliest = Vec::with_capacity(pandas.len());
    let mut j = 0;
    for list in pandas {
        while j < needs.len() && !fits(list, j) {
            j += 1;
        }
        if j == needs.len() {
            return None;
        }
        earliest.push(j);
        j += 1;
    }
    let mut j = needs.len();
    for (k, list) in pandas.iter().enumerate().rev() {
        loop {
            j = j.checked_sub(1)?;
            if fits(list, j) {
                break;
            }
        }
        if earliest[k] != j {
            return None;
        }
    }
    let mut text = vec![false; infos.len()];
    for (list, &j) in pandas.iter().zip(&earliest) {
        text[needs[j].0] = list.iter().all(serde_json::Value::is_string);
    }
    Some(text)
}

/// Says which columns changed kind: when more columns hold text now than were text at
/// training, a numeric feature on a text column is the one that changed (a word in a column of
/// numbers, said with its line where the snapshot knows it), or else a categorical feature on
/// a text column held numbers at training; when fewer, a categorical feature on a numeric
/// column held text.
fn mismatch(
    names: &[String],
    infos: &[&str],
    pandas: &[Vec<serde_json::Value>],
    columns: &[Option<Column<'_>>],
    string_lists: usize,
    text: &[&str],
) -> String {
    let now_text = string_lists < text.len();
    let categorical = |i: usize| is_categorical(infos.get(i).copied().unwrap_or(""));
    let holds_text = |c: &Option<Column<'_>>| matches!(c, Some(c) if c.strings().is_some());
    let trained = trained_as_text(infos, pandas);
    let exact: Vec<(usize, &String)> = match &trained {
        Some(was_text) => names
            .iter()
            .enumerate()
            .filter(|&(i, _)| {
                let now = holds_text(columns.get(i).unwrap_or(&None));
                now == now_text && was_text.get(i).copied().unwrap_or(false) != now
            })
            .collect(),
        None => Vec::new(),
    };
    let pick = |want_categorical: bool| -> Vec<(usize, &String)> {
        names
            .iter()
            .enumerate()
            .filter(|&(i, _)| {
                categorical(i) == want_categorical
                    && holds_text(columns.get(i).unwrap_or(&None)) == now_text
            })
            .collect()
    };
    let numeric_now_text = if now_text { pick(false) } else { Vec::new() };
    let suspects = if !exact.is_empty() {
        exact
    } else if numeric_now_text.is_empty() {
        pick(true)
    } else {
        numeric_now_text
    };
    let quoted: Vec<String> = suspects.iter().map(|(_, n)| format!("`{n}`")).collect();
    let (which, header, (held, holds)) = match (quoted.as_slice(), &trained) {
        ([one], _) => (
            one.clone(),
            one.trim_matches('`').to_owned(),
            ("held", "holds"),
        ),
        ([first @ .., last], Some(_)) => (
            format!("{} and {last}", first.join(", ")),
            "name".to_owned(),
            ("held", "hold"),
        ),
        _ => (
            format!("one of {}", quoted.join(", ")),
            "name".to_owned(),
            ("held", "holds"),
        ),
    };
    let (was, is, hint) = if now_text {
        (
            "numbers",
            "text",
            format!("`{header}:num` in a CSV header reads it as numbers"),
        )
    } else {
        (
            "text",
            "numbers",
            format!("`{header}:str` in a CSV header reads it as text"),
        )
    };
    let turned: String = suspects
        .iter()
        .filter_map(|&(i, n)| {
            let at = columns.get(i)?.as_ref()?.turned?;
            Some(format!(
                "; `{n}`: {}",
                crate::model::bind::turned_advice(n, at)
            ))
        })
        .collect();
    let it = if holds == "hold" { "them" } else { "it" };
    let now = match text.len() {
        0 => "none of its features holds text in the snapshot".to_owned(),
        1 => format!("1 of its features holds text in the snapshot ({})", text[0]),
        n => format!(
            "{n} of its features hold text in the snapshot ({})",
            text.join(", ")
        ),
    };
    format!(
        "{which} {held} {was} at training and {holds} {is} here; export {it} as at training \
         ({hint}; LightGBM refuses such data too): the model was trained on {string_lists} text \
         (pandas category) columns, and {now}{turned}"
    )
}
