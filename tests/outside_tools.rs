//! Two tools from outside the project check the contract a real server serves, as a client
//! team would:
//! - Schemathesis (PyPI, pinned) generates requests for both listeners from each one's own
//!   `/openapi.json`, with every check (`--checks all`), a fixed seed and a bounded number of
//!   examples, and must find nothing. Where a check's default expectation does not fit a
//!   deliberate design, `tests/contract_tools/{public,admin}.toml` widens it and says why.
//! - openapi-typescript (npm, pinned in `tests/ts-client/package-lock.json`) generates types
//!   from both parts, and `tsc --strict` compiles `tests/ts-client/client.ts`, which uses them
//!   as a channel team would.
//! - openapi-python-client (PyPI, pinned) generates a Python client from the public part;
//!   `mypy --strict` checks it with `tests/py-client/check.py`, which then decides and sends
//!   events with zoned and naive `datetime`s through it against the server.
//!
//! `.ci/run` installs them (the Python tools into `target/ci-tools/venv`, where these tests
//! also look). Without them these tests fail, saying what to install: they never pass silently.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::binary::Binary;
use support::{TempDir, TempModels};

/// The Schemathesis version `.ci/run` installs.
const SCHEMATHESIS: &str = "4.32.5";
/// The openapi-python-client and mypy versions `.ci/run` installs.
const PYTHON_CLIENT: &str = "0.29.1";
const MYPY: &str = "2.4.1";
const TOKEN: &str = "outside-tools-token";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A program named by `env`, else in the virtualenv `.ci/run` makes, else found on `PATH`.
fn find(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let venv = repo().join("target/ci-tools/venv/bin").join(name);
    if venv.is_file() {
        return Some(venv);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What `program --version` prints.
fn version_of(program: &Path) -> String {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", program.display()));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tail(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(120)..].join("\n")
}

/// The real binary on a private copy of the demo folder (uploads write into it), with a token.
fn serve() -> (Binary, TempModels, TempDir) {
    let models = TempModels::new("outside-tools");
    let data = TempDir::new("outside-tools-data");
    let bin = Binary::with_models(&models.dir, &data.0).args(["--admin-token", TOKEN]);
    (bin, models, data)
}

#[test]
fn schemathesis_finds_nothing_on_either_listener() {
    let st = find("SCHEMATHESIS", "schemathesis").unwrap_or_else(|| {
        panic!(
            "Schemathesis is not installed: `pip install schemathesis=={SCHEMATHESIS}` (.ci/run does), \
             or set SCHEMATHESIS to the program"
        )
    });
    let version = version_of(&st);
    assert!(
        version.contains(SCHEMATHESIS),
        "Schemathesis {SCHEMATHESIS} is pinned, found {version:?}: `pip install schemathesis=={SCHEMATHESIS}`"
    );
    let (bin, _models, data) = serve();
    let srv = bin.spawn();
    for (addr, part) in [(srv.public, "public"), (srv.admin, "admin")] {
        let config = repo().join(format!("tests/contract_tools/{part}.toml"));
        let out = Command::new(&st)
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(format!("http://{addr}/openapi.json"))
            .args(["--checks", "all", "--seed", "1", "--max-examples", "100"])
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
            .arg("--no-color")
            // Its own files (.schemathesis/) go beside the data, not into the checkout.
            .current_dir(&data.0)
            .output()
            .expect("schemathesis runs");
        let report = tail(&out);
        assert!(
            out.status.success(),
            "Schemathesis found failures on the {part} listener:\n{report}\nserver stderr:\n{}",
            srv.stderr()
        );
        assert!(report.contains(" generated, "), "{report}");
    }
}

#[test]
fn a_typescript_client_generated_from_the_contract_compiles_strict() {
    let dir = repo().join("tests/ts-client");
    let bin_dir = dir.join("node_modules/.bin");
    let (generate, tsc) = (bin_dir.join("openapi-typescript"), bin_dir.join("tsc"));
    assert!(
        generate.is_file() && tsc.is_file(),
        "openapi-typescript and TypeScript are not installed: run `npm ci --prefix tests/ts-client` \
         (.ci/run does; the versions are pinned in its package-lock.json)"
    );
    let (bin, _models, data) = serve();
    let srv = bin.spawn();
    let generated = dir.join("generated");
    std::fs::create_dir_all(&generated).unwrap();
    for (addr, part, token) in [(srv.public, "public", false), (srv.admin, "admin", true)] {
        let spec = data.0.join(format!("{part}.json"));
        std::fs::write(&spec, get(&format!("http://{addr}/openapi.json"), token)).unwrap();
        let out = Command::new(&generate)
            .arg(&spec)
            .arg("--output")
            .arg(generated.join(format!("{part}.ts")))
            .output()
            .expect("openapi-typescript runs");
        assert!(
            out.status.success(),
            "openapi-typescript on the {part} part:\n{}",
            tail(&out)
        );
        let text = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            !text.contains("warn"),
            "openapi-typescript warned on the {part} part:\n{text}"
        );
    }
    let out = Command::new(&tsc)
        .args(["--project", "tsconfig.json", "--strict"])
        .current_dir(&dir)
        .output()
        .expect("tsc runs");
    assert!(out.status.success(), "tsc --strict:\n{}", tail(&out));
}

#[test]
fn a_python_client_generated_from_the_contract_type_checks_and_sends_zoned_times() {
    let install = format!(
        "`pip install openapi-python-client=={PYTHON_CLIENT} mypy=={MYPY}` into \
         target/ci-tools/venv (.ci/run does)"
    );
    let generate = find("OPENAPI_PYTHON_CLIENT", "openapi-python-client")
        .unwrap_or_else(|| panic!("openapi-python-client is not installed: {install}"));
    // The interpreter and mypy of the generator's own environment run the client.
    let bin_dir = generate.parent().expect("a program in a folder");
    let (python, mypy) = (bin_dir.join("python"), bin_dir.join("mypy"));
    assert!(
        python.is_file() && mypy.is_file(),
        "no python and mypy beside {}: {install}",
        generate.display()
    );
    for (program, pinned) in [(&generate, PYTHON_CLIENT), (&mypy, MYPY)] {
        let found = version_of(program);
        assert!(
            found.contains(pinned),
            "{pinned} is pinned, found {found:?}: {install}"
        );
    }
    let (bin, _models, data) = serve();
    let srv = bin.spawn();
    let work = &data.0;
    let spec = work.join("public.json");
    std::fs::write(
        &spec,
        get(&format!("http://{}/openapi.json", srv.public), false),
    )
    .unwrap();
    // No post hooks: they would format with ruff, which a client team may not have.
    let config = work.join("generator.yaml");
    std::fs::write(&config, "post_hooks: []\n").unwrap();
    let out = Command::new(&generate)
        .arg("generate")
        .arg("--path")
        .arg(&spec)
        .args(["--meta", "none", "--output-path"])
        .arg(work.join("nextbest_public"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("openapi-python-client runs");
    assert!(
        out.status.success(),
        "openapi-python-client:\n{}",
        tail(&out)
    );
    let said = tail(&out).to_lowercase();
    assert!(
        !said.contains("warn") && !said.contains("skipping"),
        "openapi-python-client warned:\n{said}"
    );
    std::fs::copy(
        repo().join("tests/py-client/check.py"),
        work.join("check.py"),
    )
    .unwrap();
    let out = Command::new(&mypy)
        .args(["--strict", "check.py", "nextbest_public"])
        .env("MYPY_CACHE_DIR", work.join(".mypy_cache"))
        .current_dir(work)
        .output()
        .expect("mypy runs");
    assert!(out.status.success(), "mypy --strict:\n{}", tail(&out));
    let out = Command::new(&python)
        .arg("check.py")
        .arg(format!("http://{}", srv.public))
        .arg("C0000001")
        .current_dir(work)
        .output()
        .expect("python runs");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("python client: ok"),
        "the generated Python client against the server:\n{}\nserver stderr:\n{}",
        tail(&out),
        srv.stderr()
    );
}

/// The body of a GET (with the admin token when asked), read with the blocking client the
/// crate already has for `campaign commit`.
fn get(url: &str, token: bool) -> Vec<u8> {
    let mut req = ureq::get(url);
    if token {
        req = req.header("authorization", &format!("Bearer {TOKEN}"));
    }
    let resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    resp.into_body().read_to_vec().expect("a body")
}
