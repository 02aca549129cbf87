//! Every file in config/ is a valid configuration; every file in
//! tests/data/broken/ is rejected on the line and with the reason written in
//! its first line (`# expect: LINE: TEXT`), by the library and by
//! `farmlb check-config`.

use std::path::{Path, PathBuf};
use std::process::Command;

use farmlb::config::Config;

fn toml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .toml files in {}", dir.display());
    files
}

fn expectation(path: &Path) -> (usize, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let first = text.lines().next().unwrap_or("");
    let rest = first.strip_prefix("# expect: ").unwrap_or_else(|| {
        panic!(
            "{}: first line must be '# expect: LINE: TEXT'",
            path.display()
        )
    });
    let (line, needle) = rest
        .split_once(": ")
        .unwrap_or((rest.trim_end_matches(':'), ""));
    (
        line.trim().parse().expect("expected line number"),
        needle.to_string(),
    )
}

#[test]
fn every_shipped_config_is_valid() {
    for f in toml_files("config") {
        if let Err(e) = Config::load(&f) {
            panic!("shipped config rejected: {e}");
        }
    }
}

#[test]
fn broken_configs_are_rejected_with_line_and_reason() {
    for f in toml_files("tests/data/broken") {
        let (line, needle) = expectation(&f);
        let e = Config::load(&f).expect_err(&format!("{} should be rejected", f.display()));
        assert_eq!(e.line, line, "{}: wrong line in '{e}'", f.display());
        assert!(
            e.message.contains(&needle),
            "{}: '{e}' lacks '{needle}'",
            f.display()
        );
    }
}

#[test]
fn check_config_command_reports_file_and_line() {
    let bin = env!("CARGO_BIN_EXE_farmlb");
    for f in toml_files("config") {
        let out = Command::new(bin)
            .arg("check-config")
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
    }
    for f in toml_files("tests/data/broken") {
        let (line, needle) = expectation(&f);
        let out = Command::new(bin)
            .arg("check-config")
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", f.display());
        let err = String::from_utf8_lossy(&out.stderr);
        let place = format!("{}:{line}: ", f.display());
        assert!(
            err.contains(&place) && err.contains(&needle),
            "{}: stderr was '{err}'",
            f.display()
        );
    }
}

#[test]
fn version_names_the_build() {
    let out = Command::new(env!("CARGO_BIN_EXE_farmlb"))
        .arg("--version")
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        s.starts_with(&format!("farmlb {}", env!("CARGO_PKG_VERSION"))),
        "{s}"
    );
}
