//! `NEXTBEST_*` variables that nextbest does not read. A manifest's typo (`NEXTBEST_WORKER`)
//! would otherwise leave the setting at its default with nothing said; a flag's typo is refused
//! by clap, and this gives the environment the same care. The names nextbest reads come from
//! the caller (every subcommand's, since one ConfigMap often feeds several commands).

use std::collections::HashSet;
use std::ffi::OsString;

/// Every name starting with this is nextbest's.
pub const PREFIX: &str = "NEXTBEST_";

/// A `NEXTBEST_*` variable that no command reads.
#[derive(Debug, PartialEq, Eq)]
pub struct Unknown {
    /// The variable as set.
    pub name: String,
    /// A name nextbest reads within one edit of it (three letters at least after the prefix),
    /// or two (six letters at least): almost surely what was meant.
    pub meant: Option<String>,
}

impl Unknown {
    /// A near miss is a typo; a name far from every known one may belong to another tool.
    pub fn is_typo(&self) -> bool {
        self.meant.is_some()
    }
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "environment variable {} is not one nextbest reads",
            self.name
        )?;
        match &self.meant {
            Some(m) => write!(f, "; did you mean {m}?"),
            None => write!(f, "; it is ignored"),
        }
    }
}

/// The `NEXTBEST_*` variables in `vars` that are not in `known`, in name order, each with the
/// known name it is closest to when that is a near miss.
pub fn unknown(
    known: &[&str],
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<Unknown> {
    let set: HashSet<&str> = known.iter().copied().collect();
    let mut out: Vec<Unknown> = vars
        .into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
        .filter(|(k, v)| {
            k.starts_with(PREFIX)
                && !set.contains(k.as_str())
                && !service_link(k, &v.to_string_lossy())
        })
        .map(|(name, _)| {
            // Compared without the prefix every name shares: `FOO` is not `LOG`.
            let typed = name.strip_prefix(PREFIX).unwrap_or(&name);
            let bare = known.iter().map(|&k| k.strip_prefix(PREFIX).unwrap_or(k));
            let meant = crate::near::nearest(typed, bare).map(|k| format!("{PREFIX}{k}"));
            Unknown { name, meant }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether a variable is one Kubernetes sets for a Service in the namespace (a Service named
/// `nextbest-redis` gives `NEXTBEST_REDIS_SERVICE_HOST`, `NEXTBEST_REDIS_PORT=tcp://...`,
/// `NEXTBEST_REDIS_PORT_6379_TCP_ADDR` and so on): nobody wrote it, so nothing is said of it.
fn service_link(name: &str, value: &str) -> bool {
    if name.ends_with("_SERVICE_HOST") || name.contains("_SERVICE_PORT") {
        return true;
    }
    let Some((_, after)) = name.rsplit_once("_PORT") else {
        return false;
    };
    if after.is_empty() {
        // `<SVC>_PORT=tcp://10.0.0.7:6379`, or `<SVC>_PORT_6379_TCP_PORT=6379`.
        return ["tcp://", "udp://", "sctp://"]
            .iter()
            .any(|p| value.starts_with(p))
            || is_port_link(name.strip_suffix("_PORT").unwrap_or(name));
    }
    is_port_link(name)
}

/// `<SVC>_PORT_<number>_<TCP|UDP|SCTP>`, optionally followed by `_PROTO` or `_ADDR`.
fn is_port_link(name: &str) -> bool {
    let name = name
        .strip_suffix("_PROTO")
        .or_else(|| name.strip_suffix("_ADDR"))
        .unwrap_or(name);
    let Some((head, proto)) = name.rsplit_once('_') else {
        return false;
    };
    let Some((head, port)) = head.rsplit_once('_') else {
        return false;
    };
    matches!(proto, "TCP" | "UDP" | "SCTP")
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && head.ends_with("_PORT")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(names: &[&str]) -> Vec<(OsString, OsString)> {
        names.iter().map(|n| (n.into(), "1".into())).collect()
    }

    const KNOWN: &[&str] = &["NEXTBEST_WORKERS", "NEXTBEST_LOG", "NEXTBEST_LOG_FORMAT"];

    #[test]
    fn a_near_miss_names_the_variable_meant() {
        let found = unknown(KNOWN, vars(&["NEXTBEST_WORKER", "PATH", "NEXTBEST_LOG"]));
        assert_eq!(
            found,
            vec![Unknown {
                name: "NEXTBEST_WORKER".into(),
                meant: Some("NEXTBEST_WORKERS".into()),
            }]
        );
        assert!(found[0].is_typo());
        assert_eq!(
            found[0].to_string(),
            "environment variable NEXTBEST_WORKER is not one nextbest reads; did you mean NEXTBEST_WORKERS?"
        );
    }

    #[test]
    fn a_name_far_from_every_known_one_is_only_reported() {
        let found = unknown(
            KNOWN,
            vars(&[
                "NEXTBEST_SCHEMATHESIS",
                "NEXTBEST_LOG_FORMAT",
                "NEXTBEST_FOO",
            ]),
        );
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, "NEXTBEST_FOO");
        assert!(found.iter().all(|f| !f.is_typo()), "{found:?}");
        assert!(found[0].to_string().ends_with("; it is ignored"));
    }

    #[test]
    fn what_kubernetes_sets_for_a_service_is_left_alone() {
        let set = [
            ("NEXTBEST_REDIS_SERVICE_HOST", "10.0.0.7"),
            ("NEXTBEST_REDIS_SERVICE_PORT", "6379"),
            ("NEXTBEST_REDIS_SERVICE_PORT_REDIS", "6379"),
            ("NEXTBEST_REDIS_PORT", "tcp://10.0.0.7:6379"),
            ("NEXTBEST_REDIS_PORT_6379_TCP", "tcp://10.0.0.7:6379"),
            ("NEXTBEST_REDIS_PORT_6379_TCP_PROTO", "tcp"),
            ("NEXTBEST_REDIS_PORT_6379_TCP_PORT", "6379"),
            ("NEXTBEST_REDIS_PORT_6379_TCP_ADDR", "10.0.0.7"),
            // Written by someone: said.
            ("NEXTBEST_REDIS_PORT", "6379"),
            ("NEXTBEST_PORT_TCP", "1"),
        ];
        let vars = set.iter().map(|(k, v)| (k.into(), v.into()));
        let found: Vec<String> = unknown(KNOWN, vars).into_iter().map(|u| u.name).collect();
        assert_eq!(found, ["NEXTBEST_PORT_TCP", "NEXTBEST_REDIS_PORT"]);
    }

    #[test]
    fn the_closest_known_name_wins() {
        let found = unknown(KNOWN, vars(&["NEXTBEST_LOG_FORMT"]));
        assert_eq!(found[0].meant.as_deref(), Some("NEXTBEST_LOG_FORMAT"));
    }
}
