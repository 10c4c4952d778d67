//! How a refused command line is said: one line in the log's format, naming the environment
//! variable that gave a flag the line names, and exit 2 (clap's own refusals and the settings
//! check's alike), so a script tells a wrong call from a failed run (exit 1).

use std::process::ExitCode;

use crate::Cli;

/// A command line refused once clap has parsed it (a value out of range, flags that do not go
/// together): exit 2, as clap's own refusals, so a script tells a wrong call from a failed run.
#[derive(Debug)]
pub(crate) struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A settings check's refusal, naming the variable that gave a flag from the environment.
pub(crate) fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    let argv: Vec<String> = std::env::args().collect();
    Usage(naming_environment(e.to_string(), &argv)).into()
}

/// The `NEXTBEST_*` variables set that no command of this binary reads.
pub(crate) fn unknown_environment() -> Vec<nextbest::settings::environment::Unknown> {
    fn names(cmd: &clap::Command, out: &mut Vec<String>) {
        out.extend(
            cmd.get_arguments()
                .filter_map(|a| a.get_env()?.to_str().map(str::to_owned)),
        );
        for sub in cmd.get_subcommands() {
            names(sub, out);
        }
    }
    let mut known = vec![nextbest::logging::FILTER_ENV.to_owned()];
    names(&<Cli as clap::CommandFactory>::command(), &mut known);
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    nextbest::settings::environment::unknown(&known, std::env::vars_os())
}

/// Help and version as clap prints them; a refused command line as one line (clap's first: what
/// was wrong, naming the flag) in the log's format, and exit 2.
pub(crate) fn refused_command_line(e: &clap::Error) -> ExitCode {
    use std::io::IsTerminal as _;
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(2);
    }
    let args: Vec<String> = std::env::args().collect();
    let requested = args
        .iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--log-format") {
            Some("") => args.get(i + 1).cloned(),
            Some(v) => v.strip_prefix('=').map(str::to_owned),
            None => None,
        })
        .or_else(|| std::env::var("NEXTBEST_LOG_FORMAT").ok())
        .and_then(|f| <nextbest::logging::LogFormat as clap::ValueEnum>::from_str(&f, true).ok());
    let style = nextbest::logging::style(requested, std::io::stderr().is_terminal(), true);
    let line = naming_environment(one_line(&e.to_string()), &args);
    nextbest::logging::fatal_line(style, line);
    ExitCode::from(2)
}

/// A refusal's line, with the environment variable named for each flag it names that the
/// environment set (see [`flags_from_environment`]).
fn naming_environment(mut line: String, args: &[String]) -> String {
    for (flag, var) in flags_from_environment(&line, args) {
        line.push_str(&format!(" ({flag} was set by {var} in the environment)"));
    }
    line
}

/// The flags a refusal names (quoted, as clap does, or first, as a settings check does) that the
/// command line did not give but the environment did: a conflict with `--admin-token` when only
/// `NEXTBEST_ADMIN_TOKEN` is set is otherwise a puzzle.
fn flags_from_environment(message: &str, args: &[String]) -> Vec<(String, String)> {
    fn walk(cmd: &clap::Command, out: &mut Vec<(String, String)>) {
        for a in cmd.get_arguments() {
            if let (Some(long), Some(env)) = (a.get_long(), a.get_env().and_then(|e| e.to_str())) {
                out.push((format!("--{long}"), env.to_owned()));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut all = Vec::new();
    walk(&<Cli as clap::CommandFactory>::command(), &mut all);
    all.sort();
    all.dedup();
    all.into_iter()
        .filter(|(flag, var)| {
            let named = [' ', '\'']
                .iter()
                .any(|end| message.contains(&format!("'{flag}{end}")))
                || message.starts_with(&format!("{flag} "));
            let given = args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
            named && !given && std::env::var_os(var).is_some()
        })
        .collect()
}

/// clap's message as one line: what was wrong with what it names (the missing arguments, the
/// possible values, a similar flag), without the usage and help pointer that follow.
fn one_line(text: &str) -> String {
    let mut out = String::new();
    for line in text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
    {
        let line = line.trim_start_matches("error: ");
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') || line.starts_with('[') {
                " "
            } else {
                "; "
            });
        }
        out.push_str(line);
    }
    if out.is_empty() {
        out.push_str("the command line was refused");
    }
    out
}
