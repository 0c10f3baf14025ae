//! The hostile-input corpus (`tests/hostile/cases.toml`): scenes, models, AnnData and
//! `.npy` files, flags and run folders a new user might hand explant, each with the exit
//! code and a fragment of the message it must give. No case may panic, hang, or exit 0
//! with a wrong result; a case that should refuse must also leave nothing behind where it
//! says so.
//!
//! A case (see the header of `cases.toml` for every key):
//!
//! ```toml
//! [[case]]
//! name = "teacher bias is nan"
//! edit = [["bias = -3.0", "bias = nan"]]   # exact replacements in tests/hostile/base.toml
//! args = ["run", "{scene}", "--out", "{out}"]
//! exit = 1
//! message = ["teacher.bias", "not a finite number"]
//! absent = ["out"]
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{EXE, TempDir, loud, read, repo};

/// Longest a case may take before it counts as a hang.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// What every case needs: where the corpus lives and where the case runs.
struct Places {
    corpus: PathBuf,
    dir: PathBuf,
}

impl Places {
    /// `{scene}`, `{dir}`, `{out}`, `{files}`, `{model}` and `{repo}` replaced.
    fn expand(&self, s: &str) -> String {
        s.replace("{scene}", &self.dir.join("scene.toml").display().to_string())
            .replace("{out}", &self.dir.join("out").display().to_string())
            .replace("{dir}", &self.dir.display().to_string())
            .replace("{files}", &self.corpus.join("files").display().to_string())
            .replace("{model}", &repo().join("models/default.pt").display().to_string())
            .replace("{repo}", &repo().display().to_string())
    }
}

/// One finished command: exit code (None when killed by a signal), the two streams, and
/// whether it ran past its time.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    hung: bool,
}

/// Run the binary with `args` in `cwd`, killing it after `timeout`.
fn run(args: &[String], cwd: &Path, timeout: Duration) -> Ran {
    let out_path = cwd.join(".stdout");
    let err_path = cwd.join(".stderr");
    let mut child = Command::new(EXE)
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start the explant binary");
    let start = Instant::now();
    let (status, hung) = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break (Some(s), false);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let ran = Ran {
        code: status.and_then(|s| s.code()),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        hung,
    };
    let _ = std::fs::remove_file(out_path);
    let _ = std::fs::remove_file(err_path);
    ran
}

fn strings(case: &toml::Table, key: &str) -> Vec<String> {
    match case.get(key) {
        None => Vec::new(),
        Some(toml::Value::String(s)) => vec![s.clone()],
        Some(toml::Value::Array(a)) => {
            a.iter().map(|v| v.as_str().unwrap_or_else(|| panic!("`{key}` must hold strings")).to_owned()).collect()
        }
        Some(other) => panic!("`{key}` must be a string or a list of strings, not {other}"),
    }
}

/// The scene of a case: `scene` (a file of the corpus, default `base.toml`) with its
/// `edit` replacements (each `from` must occur exactly once) and `append`ed text.
fn scene_text(case: &toml::Table, places: &Places, name: &str) -> String {
    let file = case.get("scene").and_then(|v| v.as_str()).unwrap_or("base.toml");
    let mut text = read(&places.corpus.join(file));
    if let Some(edits) = case.get("edit").and_then(|v| v.as_array()) {
        for e in edits {
            let pair = e.as_array().unwrap_or_else(|| panic!("{name}: each edit is [from, to]"));
            let (from, to) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            assert_eq!(text.matches(from).count(), 1, "{name}: `{from}` should occur once in {file}");
            text = text.replacen(from, &places.expand(to), 1);
        }
    }
    for a in strings(case, "append") {
        text.push('\n');
        text.push_str(&places.expand(&a));
    }
    text
}

/// Files of the case written before it runs: `write = { "name" = "text" }`, text with
/// the placeholders expanded; `bytes = { "name" = [1, 2, 3] }` raw bytes; `copy = {
/// "name" = "files/x" }` from the corpus.
fn write_files(case: &toml::Table, places: &Places) {
    let target = |name: &str| {
        let p = places.dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        p
    };
    if let Some(t) = case.get("write").and_then(|v| v.as_table()) {
        for (name, text) in t {
            std::fs::write(target(name), places.expand(text.as_str().unwrap())).unwrap();
        }
    }
    if let Some(t) = case.get("bytes").and_then(|v| v.as_table()) {
        for (name, bytes) in t {
            let b: Vec<u8> =
                bytes.as_array().unwrap().iter().map(|v| u8::try_from(v.as_integer().unwrap()).unwrap()).collect();
            std::fs::write(target(name), b).unwrap();
        }
    }
    if let Some(t) = case.get("copy").and_then(|v| v.as_table()) {
        for (name, from) in t {
            std::fs::copy(places.corpus.join(from.as_str().unwrap()), target(name)).unwrap();
        }
    }
    for d in strings(case, "mkdir") {
        std::fs::create_dir_all(places.dir.join(d)).unwrap();
    }
}

/// Run one case; the problems found (empty when it behaved).
fn check_case(case: &toml::Table, corpus: &Path, root: &Path, index: usize) -> Vec<String> {
    let name = case.get("name").and_then(|v| v.as_str()).unwrap_or_else(|| panic!("case #{index} has no name"));
    let dir = root.join(format!("{index:03}"));
    std::fs::create_dir_all(&dir).unwrap();
    let places = Places { corpus: corpus.to_path_buf(), dir };
    std::fs::write(places.dir.join("scene.toml"), scene_text(case, &places, name)).unwrap();
    write_files(case, &places);
    let timeout =
        case.get("timeout").and_then(|v| v.as_integer()).map_or(DEFAULT_TIMEOUT, |s| Duration::from_secs(s as u64));

    let mut problems = Vec::new();
    // Commands that set the case up (e.g. a finished run to resume) must succeed.
    if let Some(setup) = case.get("setup").and_then(|v| v.as_array()) {
        for cmd in setup {
            let args: Vec<String> =
                cmd.as_array().unwrap().iter().map(|a| places.expand(a.as_str().unwrap())).collect();
            let r = run(&args, &places.dir, timeout);
            if r.code != Some(0) {
                problems.push(format!("setup `{}` failed ({:?}):\n{}", args.join(" "), r.code, r.stderr));
                return problems;
            }
        }
    }
    // Files put in place after the setup (e.g. a scene inside an earlier run's folder).
    if let Some(t) = case.get("copy_after").and_then(|v| v.as_table()) {
        for (name, from) in t {
            std::fs::copy(places.corpus.join(from.as_str().unwrap()), places.dir.join(name)).unwrap();
        }
    }
    let args: Vec<String> = strings(case, "args").iter().map(|a| places.expand(a)).collect();
    let want = case.get("exit").and_then(|v| v.as_integer()).unwrap_or_else(|| panic!("{name}: no `exit`"));
    let r = run(&args, &places.dir, timeout);
    let both = format!("{}\n{}", r.stdout, r.stderr);
    if r.hung {
        problems.push(format!("hung: still running after {timeout:?}"));
    } else if r.code != Some(want as i32) {
        problems.push(format!("exit code {:?}, expected {want}", r.code));
    }
    let lower = both.to_lowercase();
    for bad in ["panicked", "backtrace", "stack backtrace", "frame #", "exception raised from", "rust_begin_unwind"] {
        if lower.contains(bad) {
            problems.push(format!("output contains `{bad}`"));
        }
    }
    let error_line = case.get("error_line").and_then(|v| v.as_bool()).unwrap_or(true);
    if want != 0 && error_line && !r.hung && !r.stderr.contains("error: ") {
        problems.push("no `error:` line on stderr".into());
    }
    for m in strings(case, "message") {
        let m = places.expand(&m);
        if !both.contains(&m) {
            problems.push(format!("the output lacks `{m}`"));
        }
    }
    for m in strings(case, "not_message") {
        if both.contains(&places.expand(&m)) {
            problems.push(format!("the output should not contain `{m}`"));
        }
    }
    for p in strings(case, "absent") {
        if places.dir.join(&p).exists() {
            problems.push(format!("`{p}` exists; the case must leave nothing there"));
        }
    }
    for p in strings(case, "present") {
        if !places.dir.join(&p).exists() {
            problems.push(format!("`{p}` is missing"));
        }
    }
    for (file, fragment) in case.get("contains").and_then(|v| v.as_table()).into_iter().flatten() {
        let text = std::fs::read_to_string(places.dir.join(file)).unwrap_or_default();
        let fragment = fragment.as_str().unwrap();
        if !text.contains(fragment) {
            problems.push(format!("`{file}` lacks `{fragment}`"));
        }
    }
    if !problems.is_empty() {
        problems.push(format!("command: explant {}\n--- output ---\n{}", args.join(" "), both.trim()));
    }
    problems
}

#[test]
fn every_case_of_the_hostile_input_corpus_gives_its_exit_code_and_message() {
    let corpus = repo().join("tests/hostile");
    let doc: toml::Table = toml::from_str(&read(&corpus.join("cases.toml"))).expect("tests/hostile/cases.toml parses");
    let cases: Vec<toml::Table> = doc
        .get("case")
        .and_then(|v| v.as_array())
        .expect("[[case]] entries")
        .iter()
        .map(|c| c.as_table().expect("a case is a table").clone())
        .collect();
    let names: BTreeSet<&str> = cases.iter().filter_map(|c| c.get("name").and_then(|v| v.as_str())).collect();
    assert_eq!(names.len(), cases.len(), "case names must be unique and present");
    assert!(cases.len() >= 80, "the corpus should hold at least 80 cases, has {}", cases.len());
    let exits: BTreeSet<i64> = cases.iter().filter_map(|c| c.get("exit").and_then(|v| v.as_integer())).collect();
    assert!(exits.contains(&1) && exits.contains(&3), "the corpus should cover exit codes 1 and 3: {exits:?}");

    let dir = TempDir::new("hostile", "corpus");
    // Two workers: the cases are independent processes.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    let problems = std::panic::catch_unwind(|| check_case(case, &corpus, &dir.0, i))
                        .unwrap_or_else(|_| vec!["the case itself is malformed (see the panic above)".into()]);
                    if !problems.is_empty() {
                        let name = case.get("name").and_then(|v| v.as_str()).unwrap_or("?");
                        failures.lock().unwrap().push(format!("case {i:03} `{name}`:\n  {}", problems.join("\n  ")));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    loud(&format!("hostile-input corpus: {} cases, {} failed", cases.len(), failures.len()));
    assert!(
        failures.is_empty(),
        "{} of {} cases misbehaved:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
